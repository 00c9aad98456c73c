"""Loading and validating the source series: the sine, CSV/Parquet files, and the raw copy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import raw_series
from wavecast.config import SeriesSpec
from wavecast.errors import InvalidInputError
from wavecast.generate import load_each, load_series, read_table, sine_series
from wavecast.storage import DataDir
from wavecast.tables import id_groups

pytestmark = pytest.mark.unit


def write_csv(tmp_path: Path, text: str, name: str = "series.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load(source: str, **spec: object) -> np.ndarray:
    return load_series(SeriesSpec.model_validate({"source": source, **spec})).values


def test_sine_is_the_tutorials_exactly() -> None:
    """Default spec: np.sin(np.linspace(-3π, 3π, 1000)), bit for bit."""
    expected = np.sin(np.linspace(-3 * np.pi, 3 * np.pi, 1000))
    assert np.array_equal(sine_series(SeriesSpec()), expected)


def test_noise_is_seeded() -> None:
    """Same seed, same noise; another seed, other noise; noise actually changes the values."""
    a, b, c = (sine_series(SeriesSpec(noise=0.1, noise_seed=s)) for s in (1, 1, 2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, sine_series(SeriesSpec()))


def test_csv_and_parquet_files_are_read(tmp_path: Path) -> None:
    """The only numeric column is picked from both formats; string columns are ignored."""
    csv = write_csv(tmp_path, "label,value\na,1.5\nb,2.5\nc,-4\n")
    parquet = tmp_path / "series.parquet"
    pq.write_table(pa.table({"label": ["a", "b", "c"], "v": [1.5, 2.5, -4.0]}), parquet)
    for source, column in ((csv, "value"), (str(parquet), "v")):
        values, picked = load_series(SeriesSpec(source=source))[:2]
        assert picked == column
        assert np.array_equal(values, [1.5, 2.5, -4.0]) and values.dtype == np.float64


def test_named_column_among_several(tmp_path: Path) -> None:
    """--column picks one of several numeric columns, an integer time column included."""
    csv = write_csv(tmp_path, "time,a,b\n1,1,10\n2,2,20\n3,3,30\n")
    assert np.array_equal(load(csv, column="b"), [10.0, 20.0, 30.0])


def test_a_named_time_column_is_the_series_time_and_never_its_target(tmp_path: Path) -> None:
    """--time-column names a time column no guess would find (an integer 'period'); its rows
    are put in its order, and it is not a numeric column to forecast."""
    csv = write_csv(tmp_path, "period,v\n7,1.5\n9,2.5\n12,3.5\n")
    with pytest.raises(InvalidInputError, match=r"several numeric columns \(column 1, 2\)"):
        load_series(SeriesSpec(source=csv))
    loaded = load_series(SeriesSpec(source=csv, time_column="period"))
    assert (loaded.column, loaded.values.tolist()) == ("v", [1.5, 2.5, 3.5])
    assert loaded.times is not None and loaded.times.tolist() == [7, 9, 12]
    shuffled = write_csv(tmp_path, "period,v\n9,1.5\n7,2.5\n", name="shuffled.csv")
    loaded = load_series(SeriesSpec(source=shuffled, time_column="period"))
    assert loaded.times is not None and loaded.times.tolist() == [7, 9]
    assert loaded.values.tolist() == [2.5, 1.5]
    with pytest.raises(
        InvalidInputError,
        match=r"--time-column when: not in .*2 column\(s\), numeric: column 1, 2\)",
    ):
        load_series(SeriesSpec(source=csv, time_column="when"))


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("a,b\n1,2\n3,4\n", "c", r"--column c: not in .*\(2 column\(s\), numeric: column 1, 2\)"),
        ("name,v\nx,1\ny,2\n", "name", "--column name: not numeric"),
        ("a,b\n1,2\n3,4\n", None, r"several numeric columns \(column 1, 2\).*--column"),
        ("name\nx\ny\n", None, "no numeric column"),
        ("k,v\na,1\nb,\nc,3\nd,nan\ne,5\n", None, r"2 NaN/inf.* at data rows 2, 4 \(lines 3, 5 "),
        ("v\n1\ninf\n3\n-inf\n", None, r"2 NaN/infinite value\(s\) at data rows 2, 4 "),
        (
            "time,v\n2024-01-03,1\n2024-01-01,2\n2024-01-02,3\n2024-01-05,4\n",
            None,
            "time column 'time' has no row at 2024-01-04, a step of its daily series",
        ),
        (
            "date,v\n2024-01-02,1\n2024-01-01,2\n2024-01-02,3\n",
            None,
            "time column 'date' has more than one row at 2024-01-02: one row per time",
        ),
    ],
    ids=["missing", "non-numeric", "ambiguous", "no-numeric", "nan", "inf", "gap", "dup"],
)
def test_bad_files_are_refused_with_a_message(
    tmp_path: Path, text: str, column: str | None, message: str
) -> None:
    """Each problem raises InvalidInputError whose one line names it."""
    source = write_csv(tmp_path, text)
    with pytest.raises(InvalidInputError, match=message) as caught:
        load(source, column=column)
    assert "\n" not in str(caught.value)


def test_nan_message_lists_at_most_five_rows(tmp_path: Path) -> None:
    """Seven bad rows: the count is exact and the row list is elided after five."""
    source = write_csv(tmp_path, "v\n" + "nan\n" * 7 + "1\n2\n")
    with pytest.raises(
        InvalidInputError,
        match=r"7 NaN.* rows 1, 2, 3, 4, 5, \.\.\. \(lines 2, 3, 4, 5, 6, \.\.\. ",
    ):
        load(source)


def test_missing_drop_and_interpolate(tmp_path: Path) -> None:
    """drop removes non-finite points; interpolate fills them linearly between neighbours."""
    source = write_csv(tmp_path, "v\n1\nnan\n3\ninf\n5\n")
    assert np.array_equal(load(source, missing="drop"), [1.0, 3.0, 5.0])
    assert np.array_equal(load(source, missing="interpolate"), [1.0, 2.0, 3.0, 4.0, 5.0])


def test_interpolate_needs_two_finite_points(tmp_path: Path) -> None:
    """With one finite value there is nothing to interpolate between: refused, not guessed."""
    with pytest.raises(InvalidInputError, match="2 NaN"):
        load(write_csv(tmp_path, "v\nnan\n1\ninf\n"), missing="interpolate")


def test_missing_source_is_invalid_input(tmp_path: Path) -> None:
    """A path that does not exist is bad input (never retried), not an OSError."""
    with pytest.raises(InvalidInputError, match="no such file"):
        load(str(tmp_path / "nope.csv"))


def stored_id(spec: SeriesSpec, data_dir: Path) -> str:
    return raw_series(spec, DataDir(str(data_dir))).series_id


def test_a_copy_is_named_by_the_series_own_rows_not_the_file(tmp_path: Path) -> None:
    """Other bytes holding the same rows (another column, spacing, another file) keep the
    name; one value, a time, the id or the column changes it."""
    data = tmp_path / "data"
    path = tmp_path / "s.csv"
    path.write_bytes(b"time,v\n1,1\n2,2\n")
    first = stored_id(SeriesSpec(source=str(path), column="v"), data)
    path.write_bytes(b"time,v,note\n1,1.0,a\n2,2,b\n")
    assert stored_id(SeriesSpec(source=str(path), column="v"), data) == first
    other = tmp_path / "copy.csv"
    other.write_bytes(b"time,v\n1,1\n2,2\n")
    assert stored_id(SeriesSpec(source=str(other), column="v"), data) == first
    for changed in (b"time,v\n1,1\n2,3\n", b"time,v\n1,1\n3,2\n", b"time,w\n1,1\n2,2\n"):
        path.write_bytes(changed)
        assert stored_id(SeriesSpec(source=str(path)), data) != first
    panel = tmp_path / "panel.csv"
    panel.write_bytes(b"id,time,v\na,1,1\na,2,2\nb,1,5\nb,2,6\n")
    assert stored_id(SeriesSpec(source=str(panel), id_column="id", series=("a",)), data) != first
    assert stored_id(SeriesSpec(), data) == stored_id(SeriesSpec(), data)
    assert stored_id(SeriesSpec(), data) != stored_id(SeriesSpec(length=999), data)


def test_a_raw_copy_is_written_once_and_an_unchanged_one_reused(tmp_path: Path) -> None:
    """Same source: same id, the stored file untouched; one changed byte: a new id."""
    source = write_csv(tmp_path, "v\n0.5\n-1\n2\n")
    data_dir = str(tmp_path / "data")
    first = raw_series(SeriesSpec(source=source), DataDir(data_dir))
    stored = Path(first.uri)
    stamp = stored.stat().st_mtime_ns
    assert raw_series(SeriesSpec(source=source), DataDir(data_dir)) == first
    assert stored.stat().st_mtime_ns == stamp
    write_csv(tmp_path, "v\n0.5\n-1\n3\n")
    assert raw_series(SeriesSpec(source=source), DataDir(data_dir)).series_id != first.series_id


def test_a_raw_copy_is_complete(tmp_path: Path) -> None:
    """raw/<id>/series.parquet + _COMPLETE, holding the values and their content hash."""
    source = write_csv(tmp_path, "v\n0.5\n-1\n2\n")
    ref = raw_series(SeriesSpec(source=source), DataDir(str(tmp_path / "data")))
    folder = tmp_path / "data" / "raw" / ref.series_id
    assert (folder / "_COMPLETE").is_file()
    table = pq.read_table(folder / "series.parquet")
    values = table.column("value").to_numpy()
    assert np.array_equal(values, [0.5, -1.0, 2.0]) and ref.n_points == 3
    data = values.astype(np.float64).tobytes()
    digest = hashlib.sha256(len(data).to_bytes(8, "little") + data).hexdigest()[:32]
    assert ref.content_hash == digest
    assert table.schema.metadata[b"content_hash"] == digest.encode()
    assert table.schema.metadata[b"source"] == source.encode()


CSV_IDS = ["007", "7", "1e3", "1.0", "NA", "true", "null"]


@pytest.mark.parametrize("key", CSV_IDS)
def test_csv_ids_are_matched_as_the_text_they_are(tmp_path: Path, key: str) -> None:
    """No id is read as a number, a missing value or a boolean: each is its own series."""
    source = write_csv(tmp_path, "store,v\n" + "".join(f"{k},{i}\n" for i, k in enumerate(CSV_IDS)))
    values = load(source, id_column="store", series=[key])
    assert values.tolist() == [float(CSV_IDS.index(key))]


def test_an_id_column_that_is_not_text_or_numbers_is_refused_in_one_line(tmp_path: Path) -> None:
    source = tmp_path / "panel.parquet"
    pq.write_table(pa.table({"store": [[1], [2]], "v": [1.0, 2.0]}), source)
    with pytest.raises(InvalidInputError) as caught:
        load(str(source), id_column="store", series=["1"])
    assert str(caught.value) == (
        f"--id-column store: list<element: int64> in {source}, expected text or numbers"
    )


def test_a_table_without_an_id_column_is_one_series_of_id_none(tmp_path: Path) -> None:
    """A single series is a panel of one at the table level: all its rows, in file order, by
    their place in the file, under the id None, and nothing else."""
    spec = SeriesSpec(source=write_csv(tmp_path, "time,v\n3,30\n1,10\n2,20\n"))
    table = read_table(spec)

    groups = id_groups(table, [spec])

    assert list(groups) == [None]
    assert groups[None].rows.equals(table)
    assert groups[None].rows_at.tolist() == [0, 1, 2]


def test_a_panels_groups_are_the_named_ids_that_name_a_series(tmp_path: Path) -> None:
    """Only the ids the specs name, without their id column, at their file rows; an empty id
    names no series even where rows have none, and an id not in the table has no group."""
    source = write_csv(tmp_path, "store,v\na,1\n,2\nb,3\na,4\n,5\nb,6\n")
    specs = [SeriesSpec(source=source, id_column="store", series=(key,)) for key in ("a", "", "z")]
    table = read_table(specs[0])

    groups = id_groups(table, specs)

    assert list(groups) == ["a"]
    assert groups["a"].rows.to_pydict() == {"v": [1, 4]}
    assert groups["a"].rows_at.tolist() == [0, 3]


def test_a_spec_naming_no_one_series_of_a_panel_is_refused_alike_in_every_read(
    tmp_path: Path,
) -> None:
    """load_each (one read for a source's specs) fails each spec as load_series does alone."""
    source = write_csv(tmp_path, "store,v\na,1\n,2\na,3\n")
    several = (
        f"--source {source} holds several series: the retrain flow (wavecast retrain "
        "--id-column) trains each"
    )
    expected = {
        (): several,
        ("a", "b"): several,
        ("",): "--series '': an empty or missing id",
        ("z",): f"--series z: not in {source}",
    }
    specs = [SeriesSpec(source=source, id_column="store", series=keys) for keys in expected]
    for spec, message in zip(specs, expected.values(), strict=True):
        with pytest.raises(InvalidInputError) as caught:
            load_series(spec)
        assert str(caught.value) == message

    each = load_each([*specs, specs[0].model_copy(update={"series": ("a",)})])

    assert [str(result) for result in each[:-1]] == list(expected.values())
    assert not isinstance(each[-1], InvalidInputError) and each[-1].values.tolist() == [1, 3]
