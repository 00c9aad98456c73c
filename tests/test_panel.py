"""Panels: a long table split into series by id, each trained and served on its own."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from wavecast.config import FanOutSpec, RetrainConfig
from wavecast.generate import read_series
from wavecast.panel import retrain_series, rounds, series_config, split_panel
from wavecast.storage import panel_root_of, series_data_dir, series_slug

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
        frames += [nan, sine_rows("short", 5, 10.0), flat]
    table = pd.concat(frames).sort_values(["date", "store"], kind="stable")
    table.to_csv(path, index=False)
    return path


def panel_config(source: Path, data_dir: Path, **series: object) -> RetrainConfig:
    return RetrainConfig.model_validate(
        {
            "series": {"source": str(source), "id_column": "store", "column": "sales", **series},
            "model": {"units": 4},
            "train": {"epochs": 3, "batch_size": 16},
            "data_dir": str(data_dir),
        }
    )


def test_each_series_is_stored_whole_and_in_time_order(tmp_path: Path) -> None:
    source = write_panel(tmp_path / "panel.csv")
    config = panel_config(source, tmp_path / "data")

    split = split_panel(config.series, config.windows, config.data_dir)

    assert [ref.key for ref in split.series] == ["a", "b", "c"]
    for ref, period, phase in zip(split.series, (9.0, 13.0, 17.0), (0.0, 1.0, 2.0), strict=True):
        assert ref.key is not None
        stored = read_series(ref, series_data_dir(config.data_dir, ref.key))
        expected = 10 + 3 * np.sin(2 * np.pi * np.arange(80) / period + phase)
        np.testing.assert_allclose(stored, expected, rtol=0, atol=1e-12 * 13)
    assert set(split.skipped) == {"nan", "short", "flat"}
    assert "1 NaN/infinite value(s) at row(s) 7" in split.skipped["nan"]
    assert "5 points" in split.skipped["short"] and "need at least 8" in split.skipped["short"]
    assert "constant at 4" in split.skipped["flat"]


def test_series_filter_keeps_the_named_and_reports_the_missing(tmp_path: Path) -> None:
    source = write_panel(tmp_path / "panel.csv")
    config = panel_config(source, tmp_path / "data", series=("b", "zzz"))

    split = split_panel(config.series, config.windows, config.data_dir)

    assert [ref.key for ref in split.series] == ["b"]
    assert split.skipped == {"zzz": f"--series zzz: not in {source}"}


def test_a_change_in_one_series_leaves_the_others_copies_alone(tmp_path: Path) -> None:
    source = write_panel(tmp_path / "panel.csv", broken=False)
    data = str(tmp_path / "data")
    config = panel_config(source, Path(data))
    before = {r.key: r.series_id for r in split_panel(config.series, config.windows, data).series}
    table = pd.read_csv(source, float_precision="round_trip")  # the other series, bit for bit
    table.loc[table.store == "b", "sales"] += 1.0
    table.to_csv(source, index=False)

    after = {r.key: r.series_id for r in split_panel(config.series, config.windows, data).series}

    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"]


@pytest.mark.parametrize("key", ["a/b", "..", ".", "50%", "ümlaut key", ""])
def test_any_id_names_one_directory_inside_the_panel(tmp_path: Path, key: str) -> None:
    slug = series_slug(key)
    assert "/" not in slug and slug not in (".", "..", "") and not slug.startswith(".")
    assert unquote(slug) == key or (key == "" and slug == "%00")
    own = series_data_dir(str(tmp_path), key)
    assert Path(own).parent == tmp_path / "series"
    assert panel_root_of(own, key) == str(tmp_path)  # its forecasts join the panel's dataset
    assert panel_root_of(own, key + "x") is None and panel_root_of(str(tmp_path), key) is None


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
    (ref,) = split_panel(config.series, config.windows, config.data_dir).series

    first = retrain_series(ref, config, run_id=None)
    own = Path(series_config(config, "a").data_dir)
    # 60 points: too few windows for the network, so the evaluation is the stage that runs.
    evaluations = {p: p.stat().st_mtime_ns for p in (own / "evaluations").iterdir()}
    again = retrain_series(ref, config, run_id=None)

    assert first.promoted and not first.unchanged and first.champion == first.version
    assert again.unchanged and again.version == first.version
    assert not (own / "training").exists()
    assert {p: p.stat().st_mtime_ns for p in (own / "evaluations").iterdir()} == evaluations


def test_rounds_give_each_worker_about_series_per_process_series() -> None:
    spec = FanOutSpec(series_per_task=8, series_per_process=20)  # 3 batches per worker
    batches = [(object(),)] * 13  # only their count matters

    grouped = rounds(batches, spec, workers=2)  # type: ignore[arg-type]

    assert [len(group) for group in grouped] == [6, 6, 1]
    assert [b for group in grouped for b in group] == batches
