"""Monitoring's arithmetic: which forecasts realized, their errors, and the drift verdict."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavecast.config import MonitorConfig, SeriesSpec, WindowSpec
from wavecast.flows.embedded_server import free_port
from wavecast.forecasting import target_labels
from wavecast.forecasts_store import (
    FORECASTS,
    forecast_table,
    series_partition,
    time_key,
    write_parquet,
)
from wavecast.generate import LoadedSeries, load_series
from wavecast.home import SeriesHome
from wavecast.monitoring import chance_ratio, judge, rolling_ratio
from wavecast.realized import (
    MONITORING,
    Watched,
    actual_positions,
    champion_rows,
    join_stored_forecasts,
    realized_rows,
    unmatched_note,
)
from wavecast.records import Forecast
from wavecast.staging import staging_path
from wavecast.storage import DataDir

pytestmark = pytest.mark.unit

CREATED = datetime(2026, 11, 30, tzinfo=timezone.utc)


def forecasts(
    origin: str, targets: list[str], points: list[float], version: str, sep: str = "-"
) -> pa.Table:
    """A stored forecast file: one row per step, 95 % bounds at the point +-1 (`lo-95`, or
    `lo_95` with sep="_", as files were written before the spelling was Nixtla's)."""
    return pa.Table.from_pylist(
        [
            {
                "origin": origin,
                "step": step,
                "target": target,
                "forecast": point,
                f"lo{sep}95": point - 1.0,
                f"hi{sep}95": point + 1.0,
                "model_version": version,
                "created": CREATED,
            }
            for step, (target, point) in enumerate(zip(targets, points, strict=True), start=1)
        ]
    )


def test_only_observed_targets_realize_with_their_actual_error_and_flags() -> None:
    """Values 0, 10, ..., 70 (indices as labels): targets 6 and 7 realized, 8 not yet."""
    loaded = LoadedSeries(np.arange(8, dtype=np.float64) * 10, "y")
    stored = forecasts("5", ["6", "7", "8"], [59.5, 72.0, 80.0], "v1")
    rows = realized_rows(stored, "y", loaded, actual_positions(loaded)).to_pylist()
    assert [(r["target"], r["target_index"], r["actual"]) for r in rows] == [
        ("6", 6, 60.0),
        ("7", 7, 70.0),
    ]
    assert [r["error"] for r in rows] == [0.5, -2.0]  # actual - forecast
    assert [r["inside_95"] for r in rows] == [True, False]  # |0.5| <= 1 < |-2|
    assert {r["model_version"] for r in rows} == {"v1"} and rows[0]["series"] == "y"


def test_timestamped_targets_meet_the_actuals_they_name() -> None:
    """A forecast's labels (target_labels) and the actuals' labels are the same strings."""
    times = np.arange("2026-01-01", "2026-01-11", dtype="datetime64[D]").astype("datetime64[ns]")
    _, targets, _ = target_labels(times[:6], 6, WindowSpec(horizon=2, steps=3))
    loaded = LoadedSeries(np.arange(10, dtype=np.float64), "y", times)
    positions = actual_positions(loaded)
    keys = [time_key(target) for target in targets]
    assert [positions.get(key) if key is not None else None for key in keys] == [7, 8, 9]


def test_forecasts_made_in_one_zone_meet_actuals_written_in_another(tmp_path: Path) -> None:
    """Forecasts of a Tokyo-zoned series name their targets in +09:00 and store them as
    zoned timestamps; actuals that arrive as UTC text ("...Z") are the same instants."""
    tokyo = pd.date_range("2026-01-01 09:00", periods=6, freq="D", tz="Asia/Tokyo")
    history = tmp_path / "history.parquet"
    pq.write_table(pa.table({"ds": tokyo, "y": np.arange(6.0)}), history)
    loaded = load_series(SeriesSpec(source=str(history)))
    assert loaded.timezone == "Asia/Tokyo"
    origin, targets, _ = target_labels(
        loaded.times, 6, WindowSpec(horizon=2, steps=3), loaded.timezone
    )
    assert (origin, targets[0]) == ("2026-01-06T09:00:00+09:00", "2026-01-08T09:00:00+09:00")
    rows = tuple(
        {"step": k + 1, "target": t, "forecast": 7.0 + k, "lo-95": 6.0 + k, "hi-95": 8.0 + k}
        for k, t in enumerate(targets)
    )
    made = Forecast(version="v1", dataset_id="d", series="y", origin=origin, levels=(95.0,),
                    rows=rows, coverage={"95": 1.0})  # fmt: skip
    stored = forecast_table(made, None, CREATED)
    assert stored.schema.field("target").type == pa.timestamp("ns", tz="+09:00")
    assert stored.column("origin")[0].as_py() == tokyo[-1]

    utc_text = "ds,y\n" + "".join(
        f"2026-01-{day:02d}T00:00:00Z,{day - 1}.0\n" for day in range(1, 11)
    )
    (tmp_path / "actuals.csv").write_text(utc_text)
    actuals = load_series(SeriesSpec(source=str(tmp_path / "actuals.csv")))
    realized = realized_rows(stored, "y", actuals, actual_positions(actuals)).to_pylist()

    assert [(r["target_index"], r["actual"]) for r in realized] == [(7, 7.0), (8, 8.0), (9, 9.0)]
    assert [r["error"] for r in realized] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("17", 17),
        (17, 17),
        ("+2", None),
        (None, None),
        ("2026-01-01T09:00:00+09:00", 1767225600 * 10**9),
        ("2026-01-01T00:00:00Z", 1767225600 * 10**9),
        ("2026-01-01 00:00:00.000000", 1767225600 * 10**9),
        (np.datetime64("2026-01-01T00:00:00", "ns"), 1767225600 * 10**9),
    ],
)
def test_a_time_is_joined_by_its_instant_whatever_its_spelling(value: object, key: int) -> None:
    assert time_key(value) == key


def test_the_window_ratio_is_the_rms_of_errors_in_held_out_rmses() -> None:
    """Held-out RMSE 0.5 at step 1; errors 0.5, 1.5, 2.5 -> 1, 3, 5 RMSEs; window of 2."""
    rows = pa.table(
        {"step": [1, 1, 1], "error": [0.5, -1.5, 2.5], "inside_95": [True, True, False]}
    )
    config = MonitorConfig(window=2, threshold=4.0, min_realized=1)
    health, relative = judge(rows, np.array([0.5]), config, "v1")
    assert relative.tolist() == [1.0, 3.0, 5.0]
    assert health.error_ratio == pytest.approx(math.sqrt((9 + 25) / 2))  # 4.12 > 4
    assert health.coverage_95 == 0.5  # of the last two: one inside
    assert health.drift and health.realized == 3 and "4.12x" in health.reason
    on_track, _ = judge(rows, np.array([0.5]), config.model_copy(update={"threshold": 5.0}), "v")
    assert not on_track.drift and on_track.error_ratio == health.error_ratio


def test_collapsed_coverage_is_drift_even_with_a_small_ratio() -> None:
    rows = pa.table({"step": [1, 2], "error": [0.1, 0.1], "inside_95": [False, False]})
    health, _ = judge(rows, np.array([1.0, 1.0]), MonitorConfig(), "v1")
    assert health.error_ratio == pytest.approx(0.1)
    assert health.coverage_95 == 0.0 and health.drift and "coverage" in health.reason


def test_one_or_two_targets_must_pass_what_chance_would_explain() -> None:
    """At 1 %: sqrt(chi2 quantile / n) = sqrt(6.635) = 2.576 for one target, sqrt(9.210 / 2) =
    2.146 for two (tables); from three on the threshold of 2 is the stricter."""
    assert chance_ratio(1) == pytest.approx(2.576, rel=0.01)
    assert chance_ratio(2) == pytest.approx(2.146, rel=0.01)
    assert chance_ratio(3) < 2.0
    rmse = np.array([1.0])
    near = pa.table({"step": [1], "error": [2.3], "inside_95": [True]})
    health, _ = judge(near, rmse, MonitorConfig(), "v1")
    assert not health.drift and "by chance (drift needs 2.57x)" in health.reason
    far = pa.table({"step": [1], "error": [-3.0], "inside_95": [True]})
    assert judge(far, rmse, MonitorConfig(), "v1")[0].drift
    missed_once = pa.table({"step": [1], "error": [0.1], "inside_95": [False]})
    assert not judge(missed_once, rmse, MonitorConfig(), "v1")[0].drift  # 5 %: no evidence


def test_too_few_realized_targets_are_not_judged() -> None:
    rows = pa.table({"step": [1], "error": [100.0], "inside_95": [False]})
    health, _ = judge(rows, np.array([1.0]), MonitorConfig(min_realized=2), "v1")
    assert not health.drift and health.error_ratio is None
    assert health.reason == "too few realized targets to judge: 1 of 2"


def test_rolling_ratio_by_hand() -> None:
    ratio = rolling_ratio(np.array([3.0, 4.0, 0.0]), window=2)
    assert ratio.tolist() == pytest.approx([3.0, math.sqrt(12.5), math.sqrt(8.0)])
    assert rolling_ratio(np.zeros(0), 5).size == 0


def test_the_champions_rows_come_oldest_target_first() -> None:
    """Two files, two versions: only the champion's rows, by target, older origin first."""
    later = pa.table(
        {"target_index": [9, 8], "step": [2, 1], "model_version": ["v2", "v2"], "error": [1.0, 2.0]}
    )
    earlier = pa.table(
        {"target_index": [8, 7], "step": [2, 1], "model_version": ["v2", "v1"], "error": [3.0, 4.0]}
    )
    rows = champion_rows([later, earlier], "v2")
    assert rows["error"].to_pylist() == [3.0, 2.0, 1.0]
    assert champion_rows([], "v2").num_rows == 0


def test_an_event_the_server_cannot_take_fails_loudly() -> None:
    """No server at the API URL: posting the drift event raises, it is not queued and lost."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from wavecast.tasks.monitor import send_events

    event: dict[str, object] = {
        "event": "wavecast.forecast.drift",
        "resource": {"prefect.resource.id": "x"},
    }
    with (
        temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}),
        pytest.raises(httpx.ConnectError),
    ):
        send_events([event])


LOADED = LoadedSeries(np.arange(8, dtype=np.float64) * 10, "y")  # 0, 10, ..., 70


def stored_good_forecast(root: Path) -> tuple[DataDir, Watched, bytes]:
    """A data dir whose series y has one good forecast file, whose targets 6 and 7 realized."""
    store = DataDir(str(root))
    watched = Watched(name="y", partition=series_partition("y"), home=SeriesHome(store.uri()))
    good = forecasts("5", ["6", "7", "8"], [59.5, 72.0, 80.0], "v1")
    write_parquet(store, good, FORECASTS, watched.partition, "v1-good.parquet")
    return store, watched, store.read_bytes(FORECASTS, watched.partition, "v1-good.parquet")


def realized_targets(tables: list[pa.Table]) -> list[str]:
    return sorted(target for table in tables for target in table["target"].to_pylist())


def test_damaged_forecast_files_are_skipped_with_a_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Empty, truncated, text and foreign Parquet files are each named in a warning (never
    quoted); a staging file is skipped silently; the good file's targets still realize."""
    store, watched, good = stored_good_forecast(tmp_path / "data")
    damaged = {
        "v1-empty.parquet": b"",
        "v1-truncated.parquet": good[: len(good) // 2],
        "v1-text.parquet": b"aws_secret_access_key = abc\n",
    }
    for name, content in damaged.items():
        store.write_bytes(content, FORECASTS, watched.partition, name)
    write_parquet(store, pa.table({"x": [1]}), FORECASTS, watched.partition, "v1-other.parquet")
    partition = store.path(FORECASTS, watched.partition)
    Path(staging_path(f"{partition}/v1-good.parquet")).write_bytes(good)  # killed at the rename

    with caplog.at_level(logging.WARNING, logger="wavecast.realized"):
        realized = join_stored_forecasts(store, watched, LOADED).realized

    assert realized_targets(realized) == ["6", "7"]
    assert store.list_dir(MONITORING, watched.partition) == ["v1-good.parquet"]
    warned = sorted(record.getMessage() for record in caplog.records)
    assert len(warned) == 4 and "aws_secret" not in "".join(warned)
    for message, name in zip(warned, sorted([*damaged, "v1-other.parquet"]), strict=True):
        assert message.startswith(f"skipping {partition}/{name}: ")
    assert warned[1].endswith("not a forecast file, it has no origin column")
    assert "not a readable Parquet file (" in warned[0]


def test_forecasts_stored_as_lo_95_before_the_spelling_was_nixtlas_still_monitor(
    tmp_path: Path,
) -> None:
    """An old file (`lo_95`/`hi_95`) beside a new one (`lo-95`/`hi-95`) in one series'
    partition: both realize with their coverage flag, and the verdict reads coverage."""
    store = DataDir(str(tmp_path / "data"))
    watched = Watched(name="y", partition=series_partition("y"), home=SeriesHome(store.uri()))
    old = forecasts("4", ["5", "6"], [50.5, 63.0], "v1", sep="_")
    new = forecasts("5", ["6", "7"], [59.5, 72.0], "v1")
    write_parquet(store, old, FORECASTS, watched.partition, "v1-old.parquet")
    write_parquet(store, new, FORECASTS, watched.partition, "v1-new.parquet")

    realized = join_stored_forecasts(store, watched, LOADED)
    rows = champion_rows(realized.realized, "v1")

    inside = sorted(zip(rows["origin"].to_pylist(), rows["target"].to_pylist(),
                        rows["inside_95"].to_pylist(), strict=True))  # fmt: skip
    assert inside == [("4", "5", True), ("4", "6", False), ("5", "6", True), ("5", "7", False)]
    config = MonitorConfig(data_dir=store.uri(), min_realized=1)
    health, _ = judge(rows, np.ones(2), config, "v1")
    assert health.coverage_95 == 0.5


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.one_of(st.binary(max_size=200), st.integers(min_value=0, max_value=10**6)))
def test_no_damage_to_a_forecast_file_stops_the_others(
    tmp_path_factory: pytest.TempPathFactory, damage: bytes | int
) -> None:
    """Any bytes, or the good file cut anywhere, beside the good file: only the good realizes."""
    store, watched, good = stored_good_forecast(tmp_path_factory.mktemp("data"))
    content = damage if isinstance(damage, bytes) else good[: damage % len(good)]
    store.write_bytes(content, FORECASTS, watched.partition, "v1-damaged.parquet")
    assert realized_targets(join_stored_forecasts(store, watched, LOADED).realized) == ["6", "7"]


def test_a_drift_retrain_replays_how_the_model_was_trained_not_how_its_run_was_run() -> None:
    """A champion trained with --refresh on a Dask cluster: the drift retrain of its series
    takes its model settings, never that run's forced refresh or fan-out."""
    from tests.test_registry import manifest_for
    from wavecast.config import FanOutSpec, RetrainConfig, SeriesSpec, TrainSpec
    from wavecast.monitoring import retrain_config

    series = SeriesSpec(source="/data/sales.csv", column="sales")
    manifest = manifest_for(WindowSpec(input_len=8), series, "network")
    run = RetrainConfig(
        series=series,
        windows=WindowSpec(input_len=8),
        train=TrainSpec(epochs=7),
        refresh=True,
        fan_out=FanOutSpec(runner="dask", workers=3),
    )
    old_manifest = manifest.model_copy(update={"config": run})  # as written before the fix

    replayed = RetrainConfig.model_validate(
        retrain_config(old_manifest, series, DataDir("/data/d"))
    )

    assert replayed.refresh is False and replayed.fan_out == FanOutSpec()
    assert replayed.train.epochs == 7 and replayed.windows.input_len == 8
    assert replayed.data_dir == "/data/d"
    assert run.without_run_options().model_dump(exclude={"refresh", "fan_out"}) == run.model_dump(
        exclude={"refresh", "fan_out"}
    )


def test_coverage_is_judged_at_the_level_the_forecasts_have() -> None:
    """Forecasts at --level 50 only: ten targets outside their 50 % interval (a chance of
    0.5^10 = 0.1 %) are drift, judged against min_coverage's share of 50 %: 0.5 * 50 / 95."""
    rows = pa.table({"step": [1] * 10, "error": [0.1] * 10, "inside_50": [False] * 10})
    health, _ = judge(rows, np.array([1.0]), MonitorConfig(), "v1")
    assert health.drift and "50 % coverage 0% < 26%" in health.reason
    assert health.coverage_95 is None
    by_chance = rows.set_column(2, "inside_50", pa.array([False, True] * 5))
    assert not judge(by_chance, np.array([1.0]), MonitorConfig(), "v1")[0].drift


def test_actuals_that_reach_a_forecast_but_match_none_of_its_times_are_said(
    tmp_path: Path,
) -> None:
    """Daily actuals 1-10 January rewritten day-first (01/02/2026 read as 1 February) reach
    past the forecast's targets of 7-9 January, yet match none: said, not silently empty."""
    store = DataDir(str(tmp_path / "data"))
    watched = Watched(name="y", partition=series_partition("y"), home=SeriesHome(store.uri()))
    targets = ["2026-01-07T00:00:00", "2026-01-08T00:00:00", "2026-01-09T00:00:00"]
    stored = forecasts("2026-01-05T00:00:00", targets, [6.0, 7.0, 8.0], "v1")
    write_parquet(store, stored, FORECASTS, watched.partition, "v1-a.parquet")
    values = np.arange(10, dtype=np.float64)
    as_written = pd.date_range("2026-01-01", periods=10, freq="D").to_numpy()
    day_first = pd.date_range("2026-01-01", periods=10, freq="MS").to_numpy()

    right = join_stored_forecasts(store, watched, LoadedSeries(values, "y", as_written))
    misread = join_stored_forecasts(store, watched, LoadedSeries(values, "y", day_first))

    assert (len(right.realized), right.missed) == (1, 0)
    assert (misread.realized, misread.missed) == ([], 1)
    assert unmatched_note(1).startswith(
        "the actuals reach 1 stored forecast(s) but match none of their target times"
    )
