"""Forecast a data dir's series (one, or a panel's): each from its own champion, into one dataset.

The sources the champions name are read once each (a panel's series normally share one),
not once per series; each champion is loaded once, for its window and its forecast, and each
series then goes through what a single series does (window_of, forecast_with, write_forecasts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, ParamSpec, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.cache_keys import stable_hash
from wavecast.config import FanOutSpec, ForecastConfig, SeriesSpec
from wavecast.engine import model_forecast
from wavecast.errors import InvalidInputError, environment_problem, is_transient
from wavecast.forecasters.forecaster import Forecaster
from wavecast.forecasting import (
    REPORTS,
    draw_fan,
    forecast_with,
    point_forecast,
    resolve_version,
    serving,
    source_spec,
    summarize_forecast,
    window_of,
)
from wavecast.forecasts_store import FORECASTS, forecast_key, write_forecasts
from wavecast.generate import LoadedSeries, load_each
from wavecast.home import SeriesHome
from wavecast.panel import champion_keys
from wavecast.records import Forecast, ForecastSummary, LatestWindow, Manifest
from wavecast.registry import one_line, read_champion
from wavecast.storage import DataDir

P = ParamSpec("P")
T = TypeVar("T")
# Fan charts on a panel's page (~0.1 s each to draw); its table lists every series.
MAX_FAN_CHARTS = 12


class ForecastRun(BaseModel):
    """A forecast run: one summary per series, and the series that could not forecast."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    series: dict[str, ForecastSummary]
    skipped: dict[str, str]
    path: str

    def only(self) -> ForecastSummary:
        """The forecast of a run of one series; a ValueError for any other run."""
        if len(self.series) != 1 or self.skipped:
            raise ValueError(
                f"{len(self.series)} series forecast and {len(self.skipped)} skipped, not one"
            )
        return next(iter(self.series.values()))


class SeriesForecast(NamedTuple):
    """One series' forecast, the window it was made from, and the dataset it went to."""

    key: str
    window: LatestWindow
    forecast: Forecast
    path: str


class Champion(NamedTuple):
    """A series' version and the source it forecasts from (`key` None: the data dir's own
    series). Its forecaster is loaded when the series forecasts: a panel's Keras models are
    never all in memory at once."""

    key: str | None
    store: DataDir
    version: str
    manifest: Manifest
    source: SeriesSpec


def forecast_keys(config: ForecastConfig) -> list[str | None]:
    """The series a forecast covers: --series, else every series with a champion; [None],
    the data dir's own series, when its champion is at its root (a single series) or no
    series has one."""
    if config.series:
        return list(config.series)
    root = DataDir(config.data_dir)
    if read_champion(root) is not None:
        return [None]
    return list(champion_keys(root)) or [None]  # None: "no champion in <data dir>"


def forecast_parts(keys: Sequence[str | None], spec: FanOutSpec) -> list[list[str | None]]:
    """The panel's series in parts of at most FanOutSpec.forecast_part_size, one per task."""
    size = spec.forecast_part_size()
    return [list(keys[start : start + size]) for start in range(0, len(keys), size)]


class PartForecast(NamedTuple):
    """Part of a panel forecast (a mapped task's): each series' forecast, the series that
    could not forecast, and the first series' windows, which the panel's fan charts draw."""

    forecasts: dict[str, Forecast]
    skipped: dict[str, str]
    charted: dict[str, LatestWindow]
    path: str | None  # the dataset the forecasts went to


def forecast_part(
    config: ForecastConfig, keys: Sequence[str | None], run_id: str | None
) -> PartForecast:
    """Each series' champion forecasts, written into the panel's one dataset. A series that
    cannot forecast (bad input, a champion that cannot serve, a permanent storage fault) is
    skipped with its reason; a transient fault is raised. Series serving one panel network
    (--network global) are forecast in one batched call; the source is read once."""
    skipped: dict[str, str] = {}
    champions = [
        champion
        for key in keys
        if (champion := skipping(skipped, key, champion_of, config, key)) is not None
    ]
    prepared: list[Prepared] = []
    for champion, loaded in zip(champions, load_each([c.source for c in champions]), strict=True):
        one = skipping(skipped, champion.key, prepare_one, champion, loaded, config)
        if one is not None:
            prepared.append(one)
    points = batched_points(prepared)
    made: list[SeriesForecast] = []
    for number, ready in enumerate(prepared):
        key = ready.champion.key
        made_one = skipping(skipped, key, forecast_one, ready, points.get(number), config, run_id)
        if made_one is not None:
            made.append(made_one)
    return PartForecast(
        forecasts={one.key: one.forecast for one in made},
        skipped=skipped,
        charted={one.key: one.window for one in made[:MAX_FAN_CHARTS]},
        path=made[0].path if made else None,
    )


def panel_forecast(parts: list[PartForecast], root: DataDir) -> ForecastRun:
    """The parts as one run's forecasts, in their order, and one page for the run."""
    forecasts = {key: one for part in parts for key, one in part.forecasts.items()}
    skipped = {key: why for part in parts for key, why in part.skipped.items()}
    charted = {key: one for part in parts for key, one in part.charted.items()}
    fans = [(forecasts[key], window) for key, window in charted.items()][:MAX_FAN_CHARTS]
    page = write_panel_report(list(forecasts.values()), fans, root) if forecasts else ""
    path = next((part.path for part in parts if part.path), root.uri(FORECASTS))
    return ForecastRun(
        series={key: summarize_forecast(one, path, page) for key, one in forecasts.items()},
        skipped=skipped,
        path=path,
    )


def champion_of(config: ForecastConfig, key: str | None) -> Champion:
    store = SeriesHome(config.data_dir, key).store
    version, manifest = resolve_version(store, config.version)
    return Champion(key, store, version, manifest, source_spec(manifest, config))


class Prepared(NamedTuple):
    """A series ready to forecast: its window, and either its point forecast already or the
    forecaster whose network is a panel's, batched with the other series that serve it
    (Forecaster.batched_network), which makes it then."""

    champion: Champion
    window: LatestWindow
    point: np.ndarray | None
    forecaster: Forecaster | None = None


def prepare_one(
    champion: Champion, loaded: LoadedSeries | InvalidInputError, config: ForecastConfig
) -> Prepared:
    """One series' window; its own forecaster forecasts at once (and is let go), a panel
    network later, batched. As for a single series, a champion that cannot serve is the
    reason given before its source's."""
    served = serving(champion.store, champion.version, config.version, champion.manifest)
    if isinstance(loaded, InvalidInputError):
        raise loaded
    window = window_of(champion.store, champion.version, served, champion.source, loaded)
    if served.forecaster.batched_network() is not None:
        return Prepared(champion, window, None, served.forecaster)
    return Prepared(champion, window, point_forecast(served.forecaster, window))


def batched_points(prepared: list[Prepared]) -> dict[int, np.ndarray]:
    """The forecasts of the panel networks the series serve (by the series' place in
    `prepared`): one call per network."""
    groups: dict[int, tuple[Any, list[int]]] = {}
    for number, one in enumerate(prepared):
        network = one.forecaster.batched_network() if one.forecaster else None
        if network is not None:
            groups.setdefault(id(network), (network, []))[1].append(number)
    points: dict[int, np.ndarray] = {}
    for network, group in groups.values():
        windows = np.stack(
            [prepared[n].window.history[-prepared[n].window.spec.input_len :] for n in group]
        )
        points.update(zip(group, model_forecast(network, windows), strict=True))
    return points


def forecast_one(
    ready: Prepared, batched: np.ndarray | None, config: ForecastConfig, run_id: str | None
) -> SeriesForecast:
    """One series' forecast rows, written into the data dir's dataset; `batched`, its point
    forecast when a panel network made it with its siblings' (batched_points)."""
    champion = ready.champion
    point = ready.point
    if ready.forecaster is not None:
        point = point_forecast(ready.forecaster, ready.window, batched)
    assert point is not None, "a series was prepared with neither a forecast nor a forecaster"
    forecast = forecast_with(ready.window, champion.store, config.levels, point)
    # A panel series' window names its panel's dataset (forecasting.forecasts_home).
    path = write_forecasts(forecast, DataDir(ready.window.home), run_id)
    return SeriesForecast(forecast.series, ready.window, forecast, path)


def skipping(
    skipped: dict[str, str],
    key: str | None,
    work: Callable[P, T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T | None:
    """`work`'s result, or None with the series' reason in `skipped`: bad input, a storage
    fault no retry heals, or any other failure of a panel's series is the series' own, and
    the panel's other series go on. A fault that may heal is raised (for a retry), and so is
    any failure of a data dir's own series (key None): the run's."""
    try:
        return work(*args, **kwargs)
    except Exception as exc:
        if is_transient(exc) or key is None:
            raise
        if isinstance(exc, InvalidInputError):
            skipped[key] = str(exc)
        else:
            skipped[key] = environment_problem(exc) or f"could not be forecast: {one_line(exc)}"
        return None


def write_panel_report(
    made: list[Forecast], fans: list[tuple[Forecast, LatestWindow]], store: DataDir
) -> str:
    """One page for the panel: every series' forecasts, and the fan charts of `fans`. Named
    by what it shows, so forecasting the same origins again replaces it."""
    from wavecast.report import panel_forecast_html

    name = stable_hash(*(f"{one.series}\0{forecast_key(one)}" for one in made))
    parts = (REPORTS, f"panel-{name}")
    images: dict[str, bytes] = {}
    with store.staged_dir(*parts) as staging:
        for number, (forecast, window) in enumerate(fans):
            png = draw_fan(forecast, window, staging / f"fan-{number}.png")
            images[forecast.series] = png.read_bytes()
        page = panel_forecast_html(made, images)
        (staging / "index.html").write_text(page)
    return store.url(*parts, "index.html")
