"""The operator's rules (wavecast.confinement) against a run's own parameters: where it may
read and write, which schemes, what it may cost; and errors that never quote a source."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from wavecast.config import RetrainConfig, SeriesSpec
from wavecast.confinement import is_inside
from wavecast.errors import InvalidInputError
from wavecast.generate import load_series
from wavecast.home import SeriesHome
from wavecast.registry import read_record
from wavecast.storage import DataDir
from wavecast.validate import validate_inputs

pytestmark = pytest.mark.unit
SINE_CSV = "value\n" + "".join(f"{i % 7}.5\n" for i in range(60))
# Hypothesis draws strings from the constants of the code under test too: a generated line
# such as "column" is then in an error because the error's own wording says it ("no numeric
# column to forecast"), not because the file was quoted.
WAVECAST_SOURCE = "\n".join(
    path.read_text() for path in sorted((Path(__file__).parents[1] / "wavecast").rglob("*.py"))
)


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An allowed root and, beside it, a place outside every root."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    monkeypatch.setenv("WAVECAST_ALLOWED_ROOTS", f" {allowed} , s3://bucket/wavecast/")
    return allowed, outside


def test_a_data_dir_outside_the_allowed_roots_is_refused_naming_the_rule(
    roots: tuple[Path, Path],
) -> None:
    allowed, outside = roots
    with pytest.raises(InvalidInputError, match=r"outside the allowed roots.*ALLOWED_ROOTS"):
        DataDir(str(outside / "data"))
    with pytest.raises(InvalidInputError, match="outside the allowed roots"):
        DataDir(f"{allowed}/../outside/data")  # resolved before it is compared
    with pytest.raises(InvalidInputError, match="outside the allowed roots"):
        DataDir(f"{allowed}-sibling/data")  # a shared prefix is not a parent
    assert DataDir(str(allowed / "data")).root == str(allowed / "data")
    assert DataDir(f"file://{allowed}/data").root == str(allowed / "data")
    assert list(outside.iterdir()) == []


def test_a_source_outside_the_allowed_roots_is_refused_before_it_is_read(
    roots: tuple[Path, Path],
) -> None:
    allowed, outside = roots
    secret = outside / "series.csv"
    secret.write_text(SINE_CSV)
    with pytest.raises(InvalidInputError, match=rf"--source {secret}: outside the allowed"):
        load_series(SeriesSpec(source=str(secret)))
    (allowed / "link.csv").symlink_to(secret)  # a symlink in a root does not lead out of it
    with pytest.raises(InvalidInputError, match="outside the allowed roots"):
        load_series(SeriesSpec(source=str(allowed / "link.csv")))
    (allowed / "series.csv").write_text(SINE_CSV)
    assert len(load_series(SeriesSpec(source=str(allowed / "series.csv"))).values) == 60


def test_a_relative_path_is_judged_where_it_resolves(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed, outside = roots
    monkeypatch.chdir(allowed)
    assert DataDir("data").root == str(allowed / "data")
    monkeypatch.chdir(outside)
    with pytest.raises(InvalidInputError, match="--data-dir data: outside"):
        DataDir("data")


@pytest.mark.parametrize(
    ("uri", "inside"),
    [
        ("s3://bucket/wavecast", True),
        ("s3://bucket/wavecast/panel/series.parquet", True),
        ("s3://bucket/wavecast-other/x", False),
        ("s3://bucket/wavecast/../secrets/x", False),
        ("s3://other/wavecast/x", False),
        ("gs://bucket/wavecast/x", False),
    ],
)
def test_a_uri_is_inside_a_root_only_under_its_prefix(uri: str, inside: bool) -> None:
    assert is_inside(uri, "s3://bucket/wavecast/") is inside


def test_without_allowed_roots_every_place_this_user_reaches_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WAVECAST_ALLOWED_ROOTS", raising=False)
    assert DataDir(str(tmp_path / "anywhere")).root == str(tmp_path / "anywhere")


def test_the_allowed_schemes_are_the_operators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVECAST_ALLOWED_SCHEMES", "file")
    with pytest.raises(InvalidInputError, match=r"memory:// scheme is not allowed \(allowed: file"):
        DataDir("memory://wavecast-test")


@pytest.mark.parametrize(
    ("config", "limit"),
    [
        ({"train": {"epochs": 10**12}}, "WAVECAST_MAX_EPOCHS"),
        ({"model": {"units": 5000}}, "WAVECAST_MAX_UNITS"),
        ({"series": {"length": 10**8}}, "WAVECAST_MAX_POINTS"),
    ],
)
def test_sizes_that_cost_compute_have_ceilings_an_operator_can_raise(
    config: dict[str, dict[str, int]], limit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match=rf"above this machine's limit .*{limit}"):
        RetrainConfig.model_validate(config)
    monkeypatch.setenv(limit, str(10**13))
    RetrainConfig.model_validate(config)


def test_a_lowered_ceiling_refuses_new_runs_but_still_reads_what_earlier_runs_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored champion's manifest holds the config it was trained with: lowering a ceiling
    afterwards must not turn it into a "damaged" record that no forecast can read."""
    store = DataDir(str(tmp_path))
    stored = RetrainConfig.model_validate({"train": {"epochs": 50}, "model": {"units": 64}})
    store.write_bytes(stored.model_dump_json().encode(), "config.json")
    monkeypatch.setenv("WAVECAST_MAX_EPOCHS", "10")
    monkeypatch.setenv("WAVECAST_MAX_UNITS", "8")
    read_back = read_record(store, RetrainConfig, "config.json")
    assert read_back is not None
    assert (read_back.train.epochs, read_back.model.units) == (50, 64)
    with pytest.raises(ValidationError, match="above this machine's limit of 10"):
        RetrainConfig.model_validate_json(store.read_bytes("config.json"))


def test_a_malformed_operator_setting_stops_every_run_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVECAST_MAX_EPOCHS", "lots")
    with pytest.raises(InvalidInputError, match=r"^WAVECAST_MAX_EPOCHS: Input should be"):
        DataDir(str(tmp_path))
    with pytest.raises(ValidationError, match="WAVECAST_MAX_EPOCHS: Input should be"):
        RetrainConfig.model_validate({"train": {"epochs": 5}})


def test_a_series_longer_or_a_panel_wider_than_the_ceilings_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "panel.csv"
    source.write_text("id,value\n" + "".join(f"{i % 3},{i}.0\n" for i in range(30)))
    monkeypatch.setenv("WAVECAST_MAX_SERIES", "2")
    panel = RetrainConfig.model_validate(
        {"series": {"source": str(source), "id_column": "id"}, "data_dir": str(tmp_path / "d")}
    )
    with pytest.raises(InvalidInputError, match=r"number of series is 3, above .*MAX_SERIES"):
        validate_inputs(panel)
    monkeypatch.setenv("WAVECAST_MAX_POINTS", "20")
    with pytest.raises(InvalidInputError, match=r"series' length is 30, above .*MAX_POINTS"):
        load_series(SeriesSpec(source=str(source), column="value"))


SECRET_FILES = {
    "passwd": "root:x:0:0:root:/root:/bin/bash\nsvc:x:101:104:Service user,,,:/var/svc:/bin/sh\n",
    "credentials": "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s3cr3t\n",
    "one comma": "token,Bearer abc.def\nmore,lines,than,the,header\n",
    "binary": "\x00\x01PK\x03\x04 not a table at all \xff\n",
}


def leaked_lines(text: str, message: str) -> list[str]:
    """Lines of a file (at least 6 characters: shorter ones are words, not content) that an
    error message repeats."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if len(line) >= 6 and line in message]


def error_of(spec: SeriesSpec) -> str:
    try:
        load_series(spec)
    except InvalidInputError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize("name", SECRET_FILES)
@pytest.mark.parametrize("column", [None, "value"])
def test_an_error_never_quotes_a_line_of_the_source(
    tmp_path: Path, name: str, column: str | None
) -> None:
    source = tmp_path / "source.csv"
    source.write_bytes(SECRET_FILES[name].encode("utf-8", errors="surrogateescape"))
    message = error_of(SeriesSpec(source=str(source), column=column))
    assert message.startswith(f"--source {source}") or message.startswith("--column value")
    assert leaked_lines(SECRET_FILES[name], message) == [], message


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
        min_size=1,
        max_size=6,
    )
)
def test_no_file_whatever_its_lines_has_one_quoted_in_an_error(
    tmp_path: Path, lines: list[str]
) -> None:
    text = "\n".join(lines) + "\n"
    source = tmp_path / "generated.csv"
    source.write_text(text, encoding="utf-8")
    for spec in (
        SeriesSpec(source=str(source)),
        SeriesSpec(source=str(source), column="value"),
        SeriesSpec(source=str(source), id_column="series", series=("a",)),
    ):
        message = error_of(spec)
        # A line that is only a column name the spec itself asked for is the user's own word,
        # and one that wavecast's code spells out may be the message's own wording.
        asked = {"value", "series", str(source), os.fspath(source)}
        leaked = [line for line in leaked_lines(text, message) if line not in asked]
        assert [line for line in leaked if line not in WAVECAST_SOURCE] == [], message


def test_a_source_that_is_not_a_regular_file_is_refused_before_it_is_read(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # reading it would wait forever for a writer
    for source in ("/dev/zero", str(fifo)):
        with pytest.raises(InvalidInputError, match=f"--source {source}: not a regular file"):
            load_series(SeriesSpec(source=source))


@pytest.mark.parametrize(
    ("header", "shown"),
    [
        ("date,value,region", "3 column(s), numeric: column 1, 2, 3"),
        ("date,aws_key=AKIAXYZ,value", "3 column(s), numeric: column 1, 2, 3"),
        ("user:pass@host,other", "2 column(s), numeric: column 1, 2"),
        ("just one name", "1 column(s), numeric: column 1"),
        ("alice-login,hunter2-pass", "2 column(s), numeric: column 1, 2"),  # no header at all
    ],
)
def test_column_names_are_never_shown_only_how_many_and_where_the_numbers_are(
    tmp_path: Path, header: str, shown: str
) -> None:
    """A CSV without a header has its first line taken for one: any line looks like names."""
    source = tmp_path / "table.csv"
    source.write_text(f"{header}\n" + ",".join(["1"] * len(header.split(","))) + "\n")
    message = error_of(SeriesSpec(source=str(source), column="missing"))
    assert message == f"--column missing: not in {source} ({shown})"


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("alice-login,hunter2-pass\n1,2\n3,4\n", {}),  # several numeric columns
        ("alice-login,hunter2-pass\n1,2\n", {"id_column": "id", "series": ("x",)}),
        ("2021-01-01,5.5\n2021-01-02,6\n2021-01-02,7\n", {}),  # its time column's name
        ("2021-01-01,5.5\n2021-01-03,6\n2021-01-02,7\n", {"time_column": "t"}),
    ],
)
def test_a_headerless_csvs_first_line_is_in_no_error(
    tmp_path: Path, text: str, spec: dict[str, Any]
) -> None:
    source = tmp_path / "headerless.csv"
    source.write_text(text)
    message = error_of(SeriesSpec(source=str(source), **spec))
    assert message.startswith("--")
    first = text.splitlines()[0]
    assert not any(field in message for field in first.split(",")), message


@pytest.mark.parametrize("scheme", ["file://", ""])
@pytest.mark.parametrize("chained", ["zip://x", "file://x", "simplecache::file://x"])
def test_a_chained_url_is_refused_before_its_symlinked_head_is_followed(
    roots: tuple[Path, Path], scheme: str, chained: str
) -> None:
    """realpath of the whole string resolves no symlink in it (no such file), and fsspec then
    opened the link: a source read and a data dir written outside the roots."""
    allowed, outside = roots
    (outside / "series.csv").write_text(SINE_CSV)
    (allowed / "link.csv").symlink_to(outside / "series.csv")
    (allowed / "linkdir").symlink_to(outside)
    source = f"{scheme}{allowed}/link.csv::{chained}"
    with pytest.raises(InvalidInputError, match=r"^--source .*: a chained URL \(::\) is not"):
        load_series(SeriesSpec(source=source))
    with pytest.raises(InvalidInputError, match=r"^--data-dir .*: a chained URL \(::\) is not"):
        DataDir(f"{scheme}{allowed}/linkdir::{chained}")
    assert sorted(p.name for p in outside.iterdir()) == ["series.csv"]


def test_a_file_uri_is_judged_as_the_path_fsspec_opens(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`file:/x` has no '://': it was judged as the relative path 'file:/x' under the working
    directory (inside a root), while fsspec opens /x."""
    allowed, outside = roots
    (outside / "series.csv").write_text(SINE_CSV)
    monkeypatch.chdir(allowed)
    with pytest.raises(InvalidInputError, match=r"^--source file:/.*: outside the allowed"):
        load_series(SeriesSpec(source=f"file:{outside}/series.csv"))
    with pytest.raises(InvalidInputError, match=r"^--data-dir file:/.*: outside the allowed"):
        DataDir(f"file:{outside}/data")
    assert DataDir(f"file:{allowed}/data").root == str(allowed / "data")


@pytest.mark.parametrize(
    "uri",
    [
        "https://host/data/%2e%2e/secret",
        "https://host/data/%2E%2E/secret",
        "https://host/data/.%2e/secret",
        "https://host/data/%252e%252e/secret",  # decoded twice (a proxy, then the server)
        "https://host/data/x/..%2fsecret",
        "https://host/data/..%5csecret",  # a backslash some servers take for a slash
    ],
)
def test_percent_encoded_dot_segments_do_not_lead_out_of_a_remote_root(uri: str) -> None:
    assert not is_inside(uri, "https://host/data")
    assert is_inside("https://host/data/%61.csv", "https://host/data")  # what a server reads


def test_a_symlink_planted_among_a_datasets_files_is_refused_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow lists a dataset's directory itself: a link planted in split=train/ was read by
    training, whatever file it pointed to."""
    from tests.conftest import raw_series
    from wavecast.config import WindowSpec
    from wavecast.windows import build_windows, read_split

    data_dir, secret = str(tmp_path / "data"), tmp_path / "secret.parquet"
    dataset = build_windows(
        raw_series(SeriesSpec(), DataDir(data_dir)), WindowSpec(), SeriesHome(data_dir)
    )
    train = tmp_path / "data" / "windows" / dataset.dataset_id / "split=train"
    secret.write_bytes((next(train.iterdir())).read_bytes())
    (train / "planted.parquet").symlink_to(secret)
    with pytest.raises(InvalidInputError, match=r"planted.parquet: leads out of the data dir"):
        read_split(dataset, "train", DataDir(data_dir))
