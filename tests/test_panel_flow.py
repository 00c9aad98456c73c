"""The panel flow under Prefect's test harness: skipped series, one champion each, reuse
across runners (process pool and a real distributed.LocalCluster), one forecasts dataset, a
cluster that does not answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest
from prefect import get_client

from tests.test_panel import panel_config, write_panel
from wavecast.config import ForecastConfig, RetrainConfig
from wavecast.flows.forecast import forecast
from wavecast.flows.retrain import retrain
from wavecast.forecasting import resolve_version
from wavecast.home import SeriesHome
from wavecast.monitoring import absolute_source, retrain_config
from wavecast.panel_forecast import ForecastRun
from wavecast.records import ForecastSummary, RetrainSummary
from wavecast.storage import DataDir

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_server")]


def on_runner(config: RetrainConfig, runner: str) -> RetrainConfig:
    fan_out = config.fan_out.model_copy(update={"runner": runner, "workers": 1})
    return config.model_copy(update={"fan_out": fan_out})


async def latest_table(key: str) -> str:
    async with get_client() as client:
        artifact = await client.read_latest_artifacts()
        found = [a for a in artifact if a.key == key]
        assert found, f"no {key} artifact"
        return str(found[0].data)


def test_bad_series_are_skipped_and_the_rest_serve_forecasts(tmp_path: Path) -> None:
    config = panel_config(write_panel(tmp_path / "panel.csv"), tmp_path / "data")

    summary = retrain(config)

    assert sorted(summary.series) == ["a", "b", "c"]
    assert all(outcome.promoted for outcome in summary.series.values())
    assert sorted(summary.skipped) == ["flat", "nan", "short"]
    table = asyncio.run(latest_table("wavecast-series"))
    assert "constant at 4" in table and '"series": "c"' in table

    forecasts = forecast(ForecastConfig(data_dir=config.data_dir))
    assert isinstance(forecasts, ForecastRun)
    assert sorted(forecasts.series) == ["a", "b", "c"] and forecasts.skipped == {}
    forecast(ForecastConfig(data_dir=config.data_dir))  # the same origins: rows replaced
    rows = ds.dataset(forecasts.path, format="parquet", partitioning="hive").to_table()
    assert sorted(rows.column("series").to_pylist()) == ["a", "b", "c"]
    versions = {key: one.version for key, one in forecasts.series.items()}
    assert versions == {key: outcome.version for key, outcome in summary.series.items()}

    # One series forecast from its own data dir (the drift loop's retrain then forecast):
    # its rows join the panel's dataset, not a dataset of its own.
    own = forecast(ForecastConfig(data_dir=SeriesHome(config.data_dir, "b").uri())).only()
    assert isinstance(own, ForecastSummary) and own.path == forecasts.path
    again = ds.dataset(forecasts.path, format="parquet", partitioning="hive").to_table()
    assert again.num_rows == rows.num_rows  # the same origin and version: replaced
    assert not (Path(SeriesHome(config.data_dir, "b").uri()) / "forecasts").exists()


def test_a_dask_cluster_trains_what_a_later_local_run_reuses(tmp_path: Path) -> None:
    config = panel_config(write_panel(tmp_path / "panel.csv", broken=False), tmp_path / "data")

    on_dask = retrain(on_runner(config, "dask"))  # a fresh distributed.LocalCluster
    local = retrain(on_runner(config, "local"))

    assert sorted(on_dask.series) == ["a", "b", "c"]
    assert all(outcome.promoted for outcome in on_dask.series.values())
    assert all(outcome.unchanged for outcome in local.series.values())
    assert {k: o.version for k, o in local.series.items()} == {
        k: o.version for k, o in on_dask.series.items()
    }


def test_an_unreachable_cluster_fails_the_run_in_one_line_before_writing(tmp_path: Path) -> None:
    """As a deployment or an event starts it: the run state says why; the data dir is untouched."""
    config = on_runner(panel_config(write_panel(tmp_path / "panel.csv"), tmp_path / "data"), "dask")
    fan_out = config.fan_out.model_copy(update={"dask_address": "tcp://127.0.0.1:1"})

    state = retrain(config.model_copy(update={"fan_out": fan_out}), return_state=True)

    assert state.is_failed()
    assert state.message == (
        "Flow run encountered an exception: InvalidInputError: --dask-address tcp://127.0.0.1:1: "
        "no Dask scheduler answered within 5 s; check that it runs and that this machine "
        "reaches its host and port"
    )
    assert not (tmp_path / "data").exists()


def training_dirs(data_dir: str, key: str) -> set[str]:
    return {p.name for p in (Path(SeriesHome(data_dir, key).uri()) / "training").iterdir()}


def drift_retrain(data_dir: str, key: str) -> RetrainSummary:
    """The retrain a drift event starts: the champion's config for its one series, on the
    panel's data dir (wavecast.monitoring.retrain_config), through the panel's own flow."""
    own = DataDir(SeriesHome(data_dir, key).uri())
    _, manifest = resolve_version(own, None)
    replayed = retrain_config(manifest, absolute_source(manifest.config.series), DataDir(own.uri()))
    assert replayed["data_dir"] == DataDir(data_dir).uri()
    return retrain(RetrainConfig.model_validate(replayed)).only()


def test_a_drift_retrain_of_a_panel_series_reuses_what_the_panel_trained(tmp_path: Path) -> None:
    source = write_panel(tmp_path / "panel.csv", broken=False)
    selection: dict[str, object] = {"network_min_windows": 0}
    config = panel_config(source, tmp_path / "data", selection, network="per-series")
    panel = retrain(config)
    trained_before = {key: training_dirs(config.data_dir, key) for key in panel.series}

    unchanged = drift_retrain(config.data_dir, "b")

    assert unchanged.unchanged and unchanged.version == panel.series["b"].version
    assert training_dirs(config.data_dir, "b") == trained_before["b"]  # nothing trained
    table = pd.read_csv(source, float_precision="round_trip")
    table.loc[table.store == "b", "sales"] *= 1.5
    table.to_csv(source, index=False)

    changed = drift_retrain(config.data_dir, "b")

    assert not changed.unchanged and changed.version != panel.series["b"].version
    assert len(training_dirs(config.data_dir, "b") - trained_before["b"]) == 1
    assert all(training_dirs(config.data_dir, k) == trained_before[k] for k in ("a", "c"))
    rerun = retrain(config)  # the panel finds b's new training, and a and c's own
    assert all(outcome.unchanged for outcome in rerun.series.values())
    assert {key: training_dirs(config.data_dir, key) for key in panel.series} == {
        **trained_before,
        "b": training_dirs(config.data_dir, "b"),
    }
