"""--network global: one network trained on every series of a panel, scored by each series as
its network candidate, copied into the versions it wins, found again by a drift retrain."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import forecast_here
from tests.test_panel import panel_config, write_panel
from tests.test_panel_flow import drift_retrain
from wavecast.candidates import validation_size
from wavecast.config import FanOutSpec, ForecastConfig, RetrainConfig
from wavecast.engine import model_forecast
from wavecast.flows.forecast import forecast
from wavecast.flows.retrain import retrain
from wavecast.forecasters.network import check_same_file
from wavecast.forecasting import latest_window, point_forecast
from wavecast.global_network import pooled_windows, train_pooled
from wavecast.home import SeriesHome
from wavecast.model_files import MODEL_FILE, VALIDATION_MODEL_FILE, load_model, shared_network
from wavecast.panel import (
    batched,
    loads_models_per_series,
    panel_network,
    retrain_series,
    rounds,
    split_source,
)
from wavecast.panel_forecast import ForecastRun
from wavecast.publish import rescore
from wavecast.records import ForecastSummary
from wavecast.registry import MODELS, read_champion, servable
from wavecast.storage import DataDir
from wavecast.windows import build_windows, read_split


def global_config(
    tmp_path: Path, candidates: str = "network,naive", plots: bool = True
) -> RetrainConfig:
    config = panel_config(
        write_panel(tmp_path / "panel.csv", broken=False, n=60),
        tmp_path / "data",
        selection={"candidates": candidates, "plots": plots},
    )
    model = config.model.model_copy(update={"network": "global"})
    return config.model_copy(update={"model": model})


def global_dirs(config: RetrainConfig) -> list[str]:
    return sorted(p.name for p in (Path(config.data_dir) / "global").iterdir())


@pytest.mark.fit
def test_the_twin_each_series_is_scored_by_never_saw_a_validation_window(tmp_path: Path) -> None:
    config = global_config(tmp_path, candidates="network", plots=False)
    split = split_source(config.series, config.windows, DataDir(config.data_dir))

    network = panel_network(split, config)

    assert network is not None and network.shared and global_dirs(config) == [network.train_id]
    splits = []
    for ref in split.series:
        home = SeriesHome(config.data_dir, str(ref.key))
        dataset = build_windows(ref, config.windows, home, reuse=True)
        _, x, y = read_split(dataset, "train", home.store)
        splits.append((x, y, validation_size(len(x))))
    alone, _ = train_pooled(
        *pooled_windows((x[: len(x) - held], y[: len(x) - held]) for x, y, held in splits),
        config.model,
        config.train,
    )
    twin = load_model(DataDir(network.uri), VALIDATION_MODEL_FILE)
    held_out = np.concatenate([x[len(x) - held :] for x, _, held in splits])
    expected = model_forecast(alone, held_out)
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(model_forecast(twin, held_out) - expected)) <= 1e-5 * scale
    assert panel_network(split, config) == network  # unchanged series: nothing trained

    for ref in split.series:  # the only candidate: each series serves the panel's network
        outcome = retrain_series(ref, config, network=network)
        assert outcome.published.forecaster == "network" and outcome.promoted
        own_dir = Path(SeriesHome(config.data_dir, str(ref.key)).uri())
        served = own_dir / "models" / outcome.version / MODEL_FILE
        assert filecmp.cmp(served, Path(network.uri) / MODEL_FILE, shallow=False)
        assert not list(served.parent.glob("*.png"))  # --plots false: the report has none
        assert "network" in (served.parent / "report.html").read_text()
        assert not (own_dir / "training").exists()  # no network of its own
    keys = [str(ref.key) for ref in split.series]
    loaded = [servable(series_store(config, key), champion(config, key)) for key in keys]
    shared = loaded[0].forecaster.batched_network()
    assert shared is not None
    assert all(one.forecaster.batched_network() is shared for one in loaded)  # loaded once

    made = forecast_here(ForecastConfig(data_dir=config.data_dir), list(keys))

    for key in keys:  # the batched call forecasts what each series' own call would
        store = series_store(config, key)
        window = latest_window(ForecastConfig(data_dir=store.uri()))
        alone = point_forecast(servable(store, window.version).forecaster, window)
        batched = [row["forecast"] for row in made.series[key].forecasts]
        assert np.allclose(batched, alone, rtol=1e-5, atol=1e-6 * np.max(np.abs(alone)))

    other = series_store(config, keys[1])  # a version whose copy is not the panel's bytes
    copy = Path(other.path(MODELS, champion(config, keys[1]), MODEL_FILE))
    assert copy.samefile(Path(network.uri) / MODEL_FILE)  # a hard link, not 3 MB more
    replaced = copy.with_name("replaced")  # replaced as wavecast writes: never in place
    replaced.write_bytes((Path(network.uri) / VALIDATION_MODEL_FILE).read_bytes())
    replaced.rename(copy)
    assert servable(other, champion(config, keys[1])).forecaster.batched_network() is None

    shutil.rmtree(network.uri)  # this process loaded it from the same bytes as the copies
    still = servable(series_store(config, keys[0]), champion(config, keys[0]))
    assert still.forecaster.batched_network() is shared
    shared_network.cache_clear()  # a new process: the panel's file is gone, each serves its own
    after = servable(series_store(config, keys[0]), champion(config, keys[0]))
    assert after.forecaster.batched_network() is None


def points(summary: ForecastSummary) -> list[float]:
    return [float(row["forecast"]) for row in summary.forecasts]


def series_store(config: RetrainConfig, key: str) -> DataDir:
    return DataDir(SeriesHome(config.data_dir, key).uri())


def champion(config: RetrainConfig, key: str) -> str:
    record = read_champion(series_store(config, key))
    assert record is not None
    return record.version


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_a_global_panel_reruns_forecasts_and_drift_retrains_without_training(
    tmp_path: Path,
) -> None:
    config = global_config(tmp_path)

    first = retrain(config)

    assert sorted(first.series) == ["a", "b", "c"]
    trained = global_dirs(config)
    assert len(trained) == 1
    rerun = retrain(config)
    assert all(outcome.unchanged for outcome in rerun.series.values())
    assert global_dirs(config) == trained
    forecasts = forecast(ForecastConfig(data_dir=config.data_dir))
    assert isinstance(forecasts, ForecastRun) and sorted(forecasts.series) == ["a", "b", "c"]
    in_parts = forecast(  # parts of 2 series mapped on the process pool, as a large panel is
        ForecastConfig(data_dir=config.data_dir, fan_out=FanOutSpec(series_per_task=2))
    )
    assert isinstance(in_parts, ForecastRun) and list(in_parts.series) == list(forecasts.series)
    for key, one in in_parts.series.items():
        assert np.allclose(points(one), points(forecasts.series[key]), rtol=1e-5, atol=1e-6)
    written = list((Path(config.data_dir) / "forecasts").rglob("*.parquet"))
    assert len(written) == 3  # the same origins again: each series' rows replaced, not added

    unchanged = drift_retrain(config.data_dir, "b")  # scores the panel's network again

    assert unchanged.unchanged and unchanged.version == first.series["b"].version
    table = pd.read_csv(config.series.source, float_precision="round_trip")
    table.loc[table.store == "b", "sales"] *= 1.5
    table.to_csv(config.series.source, index=False)
    changed = drift_retrain(config.data_dir, "b")
    assert not changed.unchanged
    network = next(c for c in changed.candidates if c.forecaster == "network")
    assert np.isfinite(network.validation_mse)  # the panel's network, on b's new windows
    assert global_dirs(config) == trained  # and only the panel trains it
    assert not (Path(SeriesHome(config.data_dir, "b").uri()) / "training").exists()


@pytest.mark.unit
def test_a_version_copy_that_differs_from_the_panels_network_is_refused(tmp_path: Path) -> None:
    (tmp_path / "panel").mkdir()
    (tmp_path / "panel" / MODEL_FILE).write_bytes(b"network bytes")
    copy = tmp_path / "copy.keras"
    copy.write_bytes(b"network bytes")
    check_same_file(copy, DataDir(str(tmp_path / "panel")), MODEL_FILE)  # the same file

    copy.write_bytes(b"network byte")  # a short copy
    with pytest.raises(RuntimeError, match="not a complete copy"):
        check_same_file(copy, DataDir(str(tmp_path / "panel")), MODEL_FILE)


@pytest.mark.unit
def test_workers_are_replaced_only_where_a_series_loads_models_of_its_own(tmp_path: Path) -> None:
    only_global = global_config(tmp_path, candidates="network,naive,ets")
    with_linear = global_config(tmp_path, candidates="network,linear")
    own = only_global.model.model_copy(update={"network": "per-series"})
    per_series = only_global.model_copy(update={"model": own})
    assert not loads_models_per_series(only_global) and not loads_models_per_series(with_linear)
    assert loads_models_per_series(per_series)
    split = split_source(only_global.series, only_global.windows, DataDir(only_global.data_dir))
    batches = batched(split.series, 1)
    spec = only_global.fan_out.model_copy(update={"series_per_process": 1, "series_per_task": 1})

    assert rounds(batches, spec, 1, replace=False) == [batches]  # one runner, the same workers
    assert rounds(batches, spec, 1) == [[batch] for batch in batches]


@pytest.mark.fit
def test_the_panel_network_joins_a_combination_that_serves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Network, ETS and Theta combined (no single one clearly better: a margin of 100 %):
    the version holds the network's bytes and the spec with its weights; the panel's batched
    forecast, a series' own forecast and the members' weighted mean by hand agree."""
    from wavecast import candidates
    from wavecast.forecasters.forecaster import ForecasterSpec
    from wavecast.forecasters.statistical import statistical_forecasts

    monkeypatch.setattr(candidates, "CLEAR_MARGIN", 1.0)
    config = global_config(tmp_path, candidates="network,ets,theta,combination", plots=False)
    split = split_source(config.series, config.windows, DataDir(config.data_dir))
    network = panel_network(split, config)
    assert network is not None
    refs = {str(ref.key): ref for ref in split.series}
    keys = list(refs)
    for ref in split.series:
        outcome = retrain_series(ref, config, network=network)
        assert outcome.published.forecaster == "combination"
        assert set(outcome.published.members) == {"network", "ets", "theta"}
    made = forecast_here(ForecastConfig(data_dir=config.data_dir), list(keys))

    for key in keys:
        store = series_store(config, key)
        version = champion(config, key)
        version_dir = Path(store.path(MODELS, version))
        assert filecmp.cmp(version_dir / MODEL_FILE, Path(network.uri) / MODEL_FILE, False)
        spec = ForecasterSpec.model_validate_json((version_dir / "forecaster.json").read_text())
        served = servable(store, version)
        network_model = served.forecaster.batched_network()
        assert network_model is not None
        window = latest_window(ForecastConfig(data_dir=store.uri()))
        values = np.asarray(window.history)
        ahead, steps = window.spec.horizon, window.spec.steps
        origin = np.array([len(values) - 1])
        members = {
            "network": model_forecast(network_model, values[-window.spec.input_len :][None])[0],
            **{
                name: statistical_forecasts(
                    name, values, origin, ahead, steps, spec.season, spec.forms.get(name, "")
                )[0][0]
                for name in ("ets", "theta")  # refitted in the form the retrain chose
            },
        }
        shares = zip(spec.members, spec.member_weights, strict=True)
        by_hand = sum(share * members[name] for name, share in shares)
        alone = point_forecast(served.forecaster, window)
        batched = [row["forecast"] for row in made.series[key].forecasts]
        scale = np.max(np.abs(by_hand))
        assert np.allclose(alone, by_hand, rtol=0, atol=1e-5 * scale)
        assert np.allclose(batched, by_hand, rtol=0, atol=1e-5 * scale)
        dataset = build_windows(refs[key], config.windows, SeriesHome(store.uri()), reuse=True)
        published = served.manifest.published
        assert published is not None
        # How the next retrain's gate judges it: the scores it was published with, MASE too.
        rescored = rescore(served, store, dataset, published.mase_scale)
        assert rescored.mse == pytest.approx(published.mse, rel=1e-4)
        assert rescored.mase == pytest.approx(served.manifest.metrics.mase, rel=1e-4)
