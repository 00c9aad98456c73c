"""Panels: a long table split into series by id, each trained and served on its own."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from wavecast.cache_keys import STAGE_VERSIONS
from wavecast.config import FanOutSpec, NetworkChoice, RetrainConfig
from wavecast.errors import InvalidInputError
from wavecast.forecasts_store import stored_series, write_forecasts
from wavecast.generate import LoadedSeries, load_series, read_series
from wavecast.home import SeriesHome
from wavecast.panel import (
    RetrainRun,
    iter_outcomes,
    panel_keys,
    retrain_series,
    rounds,
    series_config,
    split_source,
)
from wavecast.realized import realized_rows
from wavecast.records import Forecast
from wavecast.series_dirs import ID_FILE, panel_root_of, series_slug, slug_key
from wavecast.storage import DataDir

pytestmark = pytest.mark.unit


def sine_rows(key: str, n: int, period: float, phase: float = 0.0) -> pd.DataFrame:
    t = np.arange(n)
    return pd.DataFrame(
        {
            "store": key,
            "date": pd.date_range("2026-01-01", periods=n, freq="D"),
            "sales": 10 + 3 * np.sin(2 * np.pi * t / period + phase),
        }
    )


def write_panel(path: Path, broken: bool = True, n: int = 80) -> Path:
    """Good series a, b, c (interleaved by date, as exports are); broken nan, short, flat."""
    frames = [sine_rows("a", n, 9.0), sine_rows("b", n, 13.0, 1.0), sine_rows("c", n, 17.0, 2.0)]
    if broken:
        nan = sine_rows("nan", n, 11.0)
        nan.loc[7, "sales"] = np.nan
        flat = sine_rows("flat", n, 10.0).assign(sales=4.0)
        frames += [nan, sine_rows("short", 3, 10.0), flat]
    table = pd.concat(frames).sort_values(["date", "store"], kind="stable")
    table.to_csv(path, index=False)
    return path


def panel_config(
    source: Path,
    data_dir: Path,
    selection: dict[str, object] | None = None,
    network: str = "auto",
    **series: object,
) -> RetrainConfig:
    return RetrainConfig.model_validate(
        {
            "series": {"source": str(source), "id_column": "store", "column": "sales", **series},
            "model": {"units": 4, "width": 16, "network": network},
            "train": {"epochs": 3, "batch_size": 16},
            "selection": selection or {},
            "data_dir": str(data_dir),
        }
    )


def test_each_series_is_stored_whole_and_in_time_order(tmp_path: Path) -> None:
    source = write_panel(tmp_path / "panel.csv")
    config = panel_config(source, tmp_path / "data")

    split = split_source(config.series, config.windows, DataDir(config.data_dir))

    assert [ref.key for ref in split.series] == ["a", "b", "c"]
    for ref, period, phase in zip(split.series, (9.0, 13.0, 17.0), (0.0, 1.0, 2.0), strict=True):
        assert ref.key is not None
        stored = read_series(ref, SeriesHome(config.data_dir, ref.key).store)
        expected = 10 + 3 * np.sin(2 * np.pi * np.arange(80) / period + phase)
        np.testing.assert_allclose(stored, expected, rtol=0, atol=1e-12 * 13)
    assert set(split.skipped) == {"nan", "short", "flat"}
    # The 8th row of series nan is the file's 43rd: 18 rows of 6 series, 20 of 5, then 4.
    assert "1 NaN/infinite value(s) at data row 43 (line 44 of a CSV)" in split.skipped["nan"]
    assert "3 points" in split.skipped["short"] and "at least 4 are" in split.skipped["short"]
    assert "constant at 4" in split.skipped["flat"]


def test_series_filter_keeps_the_named_and_reports_the_missing(tmp_path: Path) -> None:
    source = write_panel(tmp_path / "panel.csv")
    config = panel_config(source, tmp_path / "data", series=("b", "zzz"))

    split = split_source(config.series, config.windows, DataDir(config.data_dir))

    assert [ref.key for ref in split.series] == ["b"]
    assert split.skipped == {"zzz": f"--series zzz: not in {source}"}


def test_a_change_in_one_series_leaves_the_others_copies_alone(tmp_path: Path) -> None:
    source = write_panel(tmp_path / "panel.csv", broken=False)
    data = str(tmp_path / "data")
    config = panel_config(source, Path(data))
    before = {
        r.key: r.series_id
        for r in split_source(config.series, config.windows, DataDir(data)).series
    }
    table = pd.read_csv(source, float_precision="round_trip")  # the other series, bit for bit
    table.loc[table.store == "b", "sales"] += 1.0
    table.to_csv(source, index=False)

    after = {
        r.key: r.series_id
        for r in split_source(config.series, config.windows, DataDir(data)).series
    }

    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"]


LONG_ID = "x" * 300
CJK_ID = "北京市朝阳区建国路八十八号现代城购物中心一楼东侧店"  # 28 characters, 252 encoded


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("007", "007"),
        ("7", "7"),
        ("CA_1-x", "CA_1-x"),  # plain ids keep the names they always had
        ("a/b", "a%2Fb"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("50%", "50%25"),
        ("ümlaut key", "%C3%BCmlaut%20key"),
        ("x" * 128, "x" * 128),
        ("x" * 129, f"{'x' * 48}.{sha('x' * 129)}"),
        (LONG_ID, f"{'x' * 48}.{sha(LONG_ID)}"),
        (CJK_ID, f"{quote(CJK_ID[:5])}.{sha(CJK_ID)}"),
        ("", f"_.{sha('')}"),
    ],
)
def test_any_id_names_one_directory_inside_the_panel(tmp_path: Path, key: str, name: str) -> None:
    assert series_slug(key) == name
    assert slug_key(name) == (key if "." not in name else None)
    own = SeriesHome(str(tmp_path), key).store
    assert Path(own.uri()) == tmp_path / "series" / name
    assert panel_root_of(own, key) == str(tmp_path)  # its forecasts join the panel's dataset
    assert (
        panel_root_of(own, key + "x") is None and panel_root_of(DataDir(str(tmp_path)), key) is None
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_two_ids_never_share_a_directory_and_each_name_is_safe(first: str, second: str) -> None:
    for key in (first, second):
        name = series_slug(key)
        assert name.isascii() and "/" not in name and not name.startswith(".")
        assert 1 <= len(name) <= 128
        assert slug_key(name) in (key, None)
    assert (series_slug(first) == series_slug(second)) == (first == second)


def write_odd_ids(path: Path) -> Path:
    """Ids a careless export holds: numbers with and without zeros, a long one, a CJK one, and
    rows with no id (an empty cell); each good series a different sine, so a mix-up shows."""
    frames = [
        sine_rows(key, 40, period).assign(sales=lambda f, k=k: f.sales + k)
        for k, (key, period) in enumerate(
            [("007", 9.0), ("7", 13.0), (LONG_ID, 11.0), (CJK_ID, 17.0), ("", 10.0)]
        )
    ]
    pd.concat(frames).sort_values(["date", "store"], kind="stable").to_csv(path, index=False)
    return path


def test_ids_are_text_and_odd_ones_get_their_own_series(tmp_path: Path) -> None:
    source = write_odd_ids(tmp_path / "panel.csv")
    config = panel_config(source, tmp_path / "data")

    split = split_source(config.series, config.windows, DataDir(config.data_dir))

    assert [ref.key for ref in split.series] == ["007", "7", LONG_ID, CJK_ID]
    for k, ref in enumerate(split.series):
        assert ref.key is not None
        stored = read_series(ref, SeriesHome(config.data_dir, ref.key).store)
        period = (9.0, 13.0, 11.0, 17.0)[k]
        expected = 10 + k + 3 * np.sin(2 * np.pi * np.arange(40) / period)
        np.testing.assert_allclose(stored, expected, rtol=0, atol=1e-12 * 17)
    assert split.skipped == {
        "": f"--id-column store: 40 row(s) of {source} have an empty or missing id, "
        "the first at data row 1 (line 2 of a CSV)"
    }
    assert sorted(panel_keys(DataDir(config.data_dir))) == sorted(["007", "7", LONG_ID, CJK_ID])
    stored_id = Path(SeriesHome(config.data_dir, CJK_ID).uri(), ID_FILE).read_text()
    assert json.loads(stored_id) == {"id": CJK_ID}


def test_one_series_of_the_panel_is_read_by_its_id_as_text(tmp_path: Path) -> None:
    source = write_odd_ids(tmp_path / "panel.csv")
    spec = panel_config(source, tmp_path / "data", series=("007",)).series

    values = load_series(spec).values

    np.testing.assert_allclose(values, 10 + 3 * np.sin(2 * np.pi * np.arange(40) / 9.0))
    with pytest.raises(InvalidInputError, match=r"^--series '': an empty or missing id$"):
        load_series(spec.model_copy(update={"series": ("",)}))


def test_missing_ids_and_control_characters_skip_only_their_rows(tmp_path: Path) -> None:
    keys = ["a", None, "b\x1b[2J", "c\nd", "", "e"]
    source = tmp_path / "panel.parquet"
    pq.write_table(
        pa.table(
            {
                "store": pa.array([key for key in keys for _ in range(20)], pa.string()),
                "sales": np.sin(np.arange(120) / 3.0) + np.repeat(np.arange(6.0), 20),
            }
        ),
        source,
    )
    config = panel_config(source, tmp_path / "data")

    split = split_source(config.series, config.windows, DataDir(config.data_dir))

    assert [ref.key for ref in split.series] == ["a", "e"]
    of = f"--id-column store: {{}} row(s) of {source} have"
    assert split.skipped == {
        "": f"{of.format(40)} an empty or missing id, the first at data row 21 (line 22 "
        "of a CSV)",  # null, then ""
        "b\x1b[2J": f"{of.format(20)} a control character in the id, the first at data row 41 "
        "(line 42 of a CSV)",
        "c\nd": f"{of.format(20)} a control character in the id, the first at data row 61 "
        "(line 62 of a CSV)",
    }
    summary = RetrainRun(series={}, skipped=split.skipped, data_dir=config.data_dir)
    shown = [line.split()[0] for line in iter_outcomes(summary)]
    assert shown == ["''", "'b\\x1b[2J'", "'c\\nd'"]


def test_integer_parquet_ids_are_their_text(tmp_path: Path) -> None:
    source = tmp_path / "panel.parquet"
    ids = np.repeat([7, 70], 30)
    pq.write_table(pa.table({"store": ids, "sales": np.sin(np.arange(60) / 2.0) + ids}), source)
    config = panel_config(source, tmp_path / "data")

    split = split_source(config.series, config.windows, DataDir(config.data_dir))

    assert [ref.key for ref in split.series] == ["7", "70"] and split.skipped == {}


def test_a_series_dir_holding_another_id_is_refused_not_shared(tmp_path: Path) -> None:
    source = write_odd_ids(tmp_path / "panel.csv")
    config = panel_config(source, tmp_path / "data", series=(LONG_ID, "7"))
    split_source(config.series, config.windows, DataDir(config.data_dir))
    forged = Path(SeriesHome(config.data_dir, LONG_ID).uri(), ID_FILE)
    forged.write_text(json.dumps({"id": "someone else"}))

    split = split_source(config.series, config.windows, DataDir(config.data_dir))

    assert [ref.key for ref in split.series] == ["7"]
    refusal = f"{forged.parent}: its {ID_FILE} does not name this series: move that directory away"
    assert split.skipped == {LONG_ID: refusal}
    assert panel_keys(DataDir(config.data_dir)) == ["7"]


def test_listing_a_panel_leaves_out_directories_that_name_no_usable_id(tmp_path: Path) -> None:
    """An old empty id's %00 (which read back as a NUL byte), a hashed name without its id,
    and another id's directory renamed are no series; a plain and an encoded id are."""
    for name in ["7", "a%20b", "%00", f"zz.{sha('zz')}", f"yy.{sha('zz')}"]:
        (tmp_path / "series" / name).mkdir(parents=True)
    (tmp_path / "series" / f"yy.{sha('zz')}" / ID_FILE).write_text(json.dumps({"id": "zz"}))

    assert panel_keys(DataDir(str(tmp_path))) == ["7", "a b"]


def test_forecasts_of_any_id_are_read_back_by_name(tmp_path: Path) -> None:
    names = ["007", "7", "a/b", LONG_ID, CJK_ID]
    for name in names:
        row = {"step": 1, "target": "10", "forecast": 1.0, "lo-80": 0.5, "hi-80": 1.5}
        forecast = Forecast(
            version="v1", dataset_id="d", series=name, origin="9", levels=(80.0,),
            rows=(row,), coverage={"80": 0.8},
        )  # fmt: skip
        write_forecasts(forecast, DataDir(str(tmp_path)))
    damaged = tmp_path / "forecasts" / f"series=zz.{sha('zz')}"
    damaged.mkdir()
    (damaged / "v1-0.parquet").write_bytes(b"PAR1 cut short")

    found = stored_series(DataDir(str(tmp_path)))

    assert found == {name: f"series={series_slug(name)}" for name in names}
    as_text = ds.partitioning(pa.schema([("series", pa.string())]), flavor="hive")
    table = ds.dataset(tmp_path / "forecasts", partitioning=as_text, exclude_invalid_files=True)
    read = table.to_table(columns=["series", "series_name"]).to_pydict()
    rows = sorted(zip(read["series"], read["series_name"], strict=True))
    shortened = {LONG_ID: f"{'x' * 48}.{sha(LONG_ID)}", CJK_ID: f"{CJK_ID[:5]}.{sha(CJK_ID)}"}
    assert rows == sorted((shortened.get(name, name), name) for name in names)
    cjk_rows = pq.read_table(tmp_path / "forecasts" / found[CJK_ID])
    realized = realized_rows(cjk_rows, CJK_ID, LoadedSeries(np.arange(11.0), "v"), {10: 10})
    assert realized.column("series_name").to_pylist() == [CJK_ID]  # monitoring keeps it too


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"series": {"id_column": "store"}}, "needs a CSV/Parquet --source"),
        ({"series": {"source": "x.csv", "series": ["a"]}}, "give --id-column too"),
        ({"fan_out": {"dask_address": "tcp://h:8786"}}, "needs --runner dask"),
        ({"fan_out": {"runner": "dask", "dask_address": "h:8786"}}, "should match pattern"),
        ({"fan_out": {"series_per_task": 0}}, "greater than or equal to 1"),
    ],
)
def test_panel_settings_that_cannot_work_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RetrainConfig.model_validate(fields)


def test_a_series_retrains_once_then_is_reused_unchanged(tmp_path: Path) -> None:
    source = write_panel(tmp_path / "panel.csv", broken=False, n=60)
    config = panel_config(source, tmp_path / "data", series=("a",))
    (ref,) = split_source(config.series, config.windows, DataDir(config.data_dir)).series

    first = retrain_series(ref, config)
    own = Path(series_config(config, SeriesHome(config.data_dir, "a")).data_dir)
    # 60 points: too few windows for the network, so the evaluation is the stage that runs.
    evaluations = {p: p.stat().st_mtime_ns for p in (own / "evaluations").iterdir()}
    again = retrain_series(ref, config)

    assert first.promoted and not first.unchanged and first.champion == first.version
    assert again.unchanged and again.version == first.version
    assert not (own / "training").exists()
    assert {p: p.stat().st_mtime_ns for p in (own / "evaluations").iterdir()} == evaluations


def test_bumping_a_stage_version_reruns_that_stage_and_what_reads_it_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cache keys hold explicit stage versions, not the code's text: the next run reuses
    every stage but the bumped one and those after it."""
    source = write_panel(tmp_path / "panel.csv", broken=False, n=60)
    config = panel_config(source, tmp_path / "data", series=("a",))
    (ref,) = split_source(config.series, config.windows, DataDir(config.data_dir)).series
    own = Path(series_config(config, SeriesHome(config.data_dir, "a")).data_dir)

    def stage_dirs() -> tuple[set[str], set[str]]:
        return {p.name for p in (own / "windows").iterdir()}, {
            p.name for p in (own / "evaluations").iterdir()
        }

    retrain_series(ref, config)
    windows, evaluations = stage_dirs()
    monkeypatch.setitem(STAGE_VERSIONS, "evaluate", STAGE_VERSIONS["evaluate"] + 1)
    retrain_series(ref, config)
    assert stage_dirs()[0] == windows and len(stage_dirs()[1] - evaluations) == 1

    windows, evaluations = stage_dirs()
    monkeypatch.setitem(STAGE_VERSIONS, "windows", STAGE_VERSIONS["windows"] + 1)
    retrain_series(ref, config)
    assert len(stage_dirs()[0] - windows) == 1 and len(stage_dirs()[1] - evaluations) == 1


def test_rounds_give_each_worker_about_series_per_process_series() -> None:
    spec = FanOutSpec(series_per_task=8, series_per_process=20)  # 3 batches per worker
    batches = [(object(),)] * 13  # only their count matters

    grouped = rounds(batches, spec, workers=2)  # type: ignore[arg-type]

    assert [len(group) for group in grouped] == [6, 6, 1]
    assert [b for group in grouped for b in group] == batches


@pytest.mark.parametrize(
    ("network", "n_series", "expected"),
    [("global", 100, 50), ("global", 1000, 128), ("per-series", 100, 8), ("per-series", 9, 5)],
)
def test_default_batches_give_every_worker_a_share(
    network: NetworkChoice, n_series: int, expected: int
) -> None:
    """The network's default size, cut to an even share of 2 workers; a set size stays."""
    assert FanOutSpec().batch_size(network, n_series, workers=2) == expected
    assert FanOutSpec(series_per_task=7).batch_size(network, n_series, workers=2) == 7


def test_a_panel_gets_the_global_network_with_its_own_training_defaults(tmp_path: Path) -> None:
    """--network auto: global for a panel (batches of 1024, 10 epochs), per-series (the
    tutorial's 100 epochs of 32) for one series; a given value is kept."""
    source = write_panel(tmp_path / "panel.csv")
    panel = panel_config(source, tmp_path / "data")
    assert panel.model.network == "global"
    assert (panel.train.epochs, panel.train.batch_size) == (3, 16)
    defaults = RetrainConfig.model_validate(
        {"series": {"source": str(source), "id_column": "store", "column": "sales"}}
    )
    assert defaults.model.network == "global"
    assert (defaults.train.epochs, defaults.train.batch_size) == (10, 1024)
    single = RetrainConfig()
    assert single.model.network == "per-series"
    assert (single.train.epochs, single.train.batch_size) == (100, 32)
    explicit = RetrainConfig.model_validate(
        {
            "series": {"source": str(source), "id_column": "store"},
            "model": {"network": "per-series"},
        }
    )
    assert explicit.model.network == "per-series" and explicit.train.epochs == 100
    assert RetrainConfig.model_validate(defaults.model_dump()) == defaults  # stored, replayed
