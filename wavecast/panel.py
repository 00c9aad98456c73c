"""Sources as series: one, or many in a long table, each trained and served on its own.

<data-dir>/series/<id>/                 one complete wavecast data dir per series: its raw
                                        copy, windows, trainings, evaluations and registry
<data-dir>/forecasts/series=<id>/       every series' forecasts: one dataset for the panel

<id> is the id percent-encoded, or for an id too long for that a readable prefix and a hash,
with the id itself in the series dir's series-id.json (wavecast.series_dirs.series_slug).

A single series' data dir is the data dir itself. Each series' stages are the same stages
(series.retrain_stages) run on its own directory, so caching, gating, rollback and forecasting
need nothing panel-specific: after the split, a run of one series is a panel of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.config import FanOutSpec, RetrainConfig, SeriesSpec, WindowSpec
from wavecast.engine import EpochCallback
from wavecast.errors import InvalidInputError
from wavecast.evaluate import COVERAGE_LEVELS
from wavecast.generate import (
    LoadedSeries,
    SeriesRef,
    load_series,
    read_table,
    series_from_table,
    store_loaded,
)
from wavecast.global_network import train_panel_network
from wavecast.home import SeriesHome
from wavecast.metrics import scores_text
from wavecast.model_files import TrainedRef
from wavecast.records import RetrainSummary
from wavecast.registry import read_champion
from wavecast.series import (
    Stages,
    check_trainable,
    panel_network_of,
    prepare_series,
    retrain_stages,
)
from wavecast.series_dirs import claim_series_dir, series_dir_keys
from wavecast.storage import DataDir
from wavecast.tables import (
    SeriesRows,
    id_problem,
    panel_groups,
    panel_ids,
    pick_column,
    shown_id,
    shown_rows,
)
from wavecast.times import inferred_season, time_values
from wavecast.windows import build_windows


def series_config(config: RetrainConfig, home: SeriesHome) -> RetrainConfig:
    """The single-series config of one panel series: its id, its own data dir (its home's)."""
    assert home.key is not None, "a panel's series has a key"
    series = config.series.model_copy(update={"series": (home.key,)})
    return config.model_copy(update={"series": series, "data_dir": home.uri()})


def panel_keys(root: DataDir) -> list[str]:
    """The ids of the series this data dir holds a directory for, in their stored order."""
    return [key for key in series_dir_keys(root) if id_problem(key) is None]


def series_homes(root: DataDir, wanted: Iterable[str] = ()) -> dict[str | None, SeriesHome]:
    """Each series' home by id: a panel's series (all, or the `wanted` ones), or
    {None: its home} for a data dir that is one series' own. Readers of a data dir (models,
    monitor) go through this, so none asks whether it holds a panel."""
    keys = list(wanted) or panel_keys(root)
    panel = SeriesHome.of_root(root)
    return {key: panel.series(key) for key in keys} if keys else {None: panel}


def first_unknown(root: DataDir, wanted: Iterable[str]) -> str | None:
    """The first (in sorted order) of the `wanted` series this data dir holds none of."""
    return min(set(wanted) - set(panel_keys(root)), default=None)


def champion_keys(root: DataDir, wanted: tuple[str, ...] = ()) -> list[str]:
    """Series (all, or the wanted ones) whose registry has a champion."""
    keys, panel = wanted or tuple(panel_keys(root)), SeriesHome.of_root(root)
    return [k for k in keys if read_champion(panel.series(k).store) is not None]


class SourceSplit(BaseModel):
    """The series a run trains (stored copies) and those refused, each with its reason."""

    model_config = ConfigDict(frozen=True)

    series: tuple[SeriesRef, ...]
    skipped: dict[str, str]


def check_id(key: str, group: SeriesRows, spec: SeriesSpec) -> None:
    problem = id_problem(key)
    if problem is not None:
        raise InvalidInputError(
            f"--id-column {spec.id_column}: {len(group.rows)} row(s) of {spec.source} have "
            f"{problem}, the first at {shown_rows(group.rows_at[:1])}"
        )


class DataShape(NamedTuple):
    """What the defaults are chosen from: whether the series are dated, their season, the
    length of a typical one and how many there are."""

    dated: bool
    season: int | None
    typical_length: int
    n_series: int = 1
    lengths: tuple[int, int] = (0, 0)  # the shortest series' and the longest's


def shape_of(times: np.ndarray | None, lengths: list[int]) -> DataShape:
    dated = times is not None and np.issubdtype(times.dtype, np.datetime64)
    season = inferred_season(times) if dated else None
    typical = int(np.median(lengths)) if lengths else 0
    extremes = (min(lengths), max(lengths)) if lengths else (0, 0)
    return DataShape(dated, season, typical, len(lengths), extremes)


def check_panel(spec: SeriesSpec) -> DataShape:
    """A panel must be a table with its id and value columns; a bad series is only skipped.
    Its shape is one series' dates (a filter: no sort of the whole table) and its series'
    median length."""
    import pyarrow.compute as pc

    table = read_table(spec)
    assert spec.id_column is not None
    if table.num_rows == 0:
        raise InvalidInputError(f"--source {spec.source}: no rows")
    values = table.drop_columns([spec.id_column])
    pick_column(values, spec)
    ids = panel_ids(table, spec)
    counts = pc.value_counts(ids)
    first = values.filter(pc.equal(ids, counts.field("values")[0]))
    return shape_of(time_values(first, spec), counts.field("counts").to_pylist())


def is_panel(spec: SeriesSpec) -> bool:
    """Whether a source is a long table of series, named by an id column: asked here only,
    as a run splits its source; past the split every series is read, trained and served alike."""
    return spec.id_column is not None


def source_shape(spec: SeriesSpec) -> tuple[DataShape, LoadedSeries | None]:
    """What a source holds, read before a run splits it (split_source): a panel's shape, its
    series left to the split to check one by one, or a single series, loaded whole."""
    if not is_panel(spec):
        loaded = load_series(spec)
        return shape_of(loaded.times, [len(loaded.values)]), loaded
    return check_panel(spec), None


def split_source(spec: SeriesSpec, windows: WindowSpec, root: DataDir) -> SourceSplit:
    """The source's series, each checked and stored: a single series in the data dir itself
    (bad input fails the run, in one line), a panel's in their own data dirs (split_panel).
    The one place that asks whether a source is a panel."""
    if not is_panel(spec):
        return SourceSplit(series=(prepare_series(spec, windows, root),), skipped={})
    return split_panel(spec, windows, root)


def split_panel(spec: SeriesSpec, windows: WindowSpec, root: DataDir) -> SourceSplit:
    """Read the source once, and store each series' copy in its own data dir.

    A series that cannot be trained on (no usable id, too short, NaN under --missing error,
    constant, values out of range) is skipped with its reason; only a source that is not a panel at
    all (unreadable, no id column) is an error. Each copy is named by that series' own
    identity (generate.series_identity), so a change in one series leaves every other series'
    stages cached, and a retrain of one series alone finds the copy the panel stored.
    """
    table = read_table(spec)
    panel = SeriesHome.of_root(root)
    wanted = set(spec.series)
    refs: list[SeriesRef] = []
    skipped: dict[str, str] = {}
    for key, group in panel_groups(table, spec):
        if wanted and key not in wanted:
            continue
        try:
            check_id(key, group, spec)
            loaded = series_from_table(group.rows, spec, group.rows_at)
            check_trainable(loaded, spec.source, windows)
            own = claim_series_dir(panel.series(key).store, key)
        except InvalidInputError as exc:
            skipped[key] = str(exc)
            continue
        refs.append(store_loaded(loaded, spec.source, own, key=key))
    for key in sorted(wanted - {ref.key for ref in refs} - set(skipped)):
        skipped[key] = f"--series {shown_id(key)}: not in {spec.source}"
    if not refs and not skipped:
        raise InvalidInputError(f"--source {spec.source}: no rows")
    return SourceSplit(series=tuple(refs), skipped=skipped)


def retrain_series(
    series: SeriesRef,
    config: RetrainConfig,
    stages: Stages | None = None,
    network: TrainedRef | None = None,
) -> RetrainSummary:
    """One series through the stages, on its own data dir (a panel's series, under the
    panel's); `network` is the panel's global network, when it has one."""
    home = SeriesHome(config.data_dir, series.key)
    own = config if series.key is None else series_config(config, home)
    return retrain_stages(series, own, home, stages, network)


def panel_network(
    split: SourceSplit, config: RetrainConfig, on_epoch: EpochCallback | None = None
) -> TrainedRef | None:
    """With --network global (and the network a candidate): every series windowed in its own
    data dir (reused where complete, as its batch will find it), then one network trained on
    all their train windows, in the panel's data dir (global_network.train_panel_network).
    A run of chosen series (a drift event's one series) scores the network the panel trained,
    while it is complete: the network itself retrains only with its panel."""
    if not config.scores_panel_network or not split.series:
        return None
    panel = SeriesHome(config.data_dir)
    if config.series.series:
        chosen = split.series[0].key
        assert chosen is not None, "--network global is refused for a single series"
        trained = panel_network_of(panel.series(chosen))
        if trained is not None:
            return trained
    reuse = not config.refresh
    located = []
    for ref in split.series:
        assert ref.key is not None
        home = panel.series(ref.key)
        dataset = build_windows(ref, config.windows, home, reuse=reuse)
        if not dataset.shortened:  # a series too short for the network's windows is not in it
            located.append((dataset, home.store))
    if not located:
        return None
    return train_panel_network(
        located, config.model, config.train, panel.store, reuse=reuse, on_epoch=on_epoch
    )


def batched(items: tuple[SeriesRef, ...], size: int) -> list[tuple[SeriesRef, ...]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def loads_models_per_series(config: RetrainConfig) -> bool:
    """Whether a worker builds or loads Keras models for each series: a network of its own
    (its evaluation reloads it from its file). A --network global panel loads its one network
    once per process; the other candidates are no Keras models."""
    return config.model.network == "per-series" and "network" in config.selection.candidates


def panel_rounds(
    series: tuple[SeriesRef, ...], config: RetrainConfig, workers: int
) -> list[list[tuple[SeriesRef, ...]]]:
    """The series in batches (one mapped task each), in rounds of fresh workers (rounds)."""
    size = config.fan_out.batch_size(config.model.network, len(series), workers)
    spec = config.fan_out.model_copy(update={"series_per_task": size})
    return rounds(batched(series, size), spec, workers, loads_models_per_series(config))


def rounds(
    batches: list[tuple[SeriesRef, ...]], spec: FanOutSpec, workers: int, replace: bool = True
) -> list[list[tuple[SeriesRef, ...]]]:
    """Batches grouped so each worker process trains about `series_per_process` series; one
    round, on the same workers, when nothing needs them `replace`d (loads_models_per_series).

    TensorFlow and Keras keep memory for every model a process builds or loads (TF #61791,
    Keras #17458: ~6 MB each here, gc and clear_session free none of it), so a process that
    loaded thousands would not stay flat. Each round gets a fresh task runner, and so fresh
    workers, at ~15 s of process start and imports each.
    """
    if not replace:
        return [batches] if batches else []
    per_batch = spec.series_per_task or max(map(len, batches), default=1)
    per_worker = max(1, -(-spec.series_per_process // per_batch))
    size = per_worker * workers
    return [batches[i : i + size] for i in range(0, len(batches), size)]


class BatchResult(BaseModel):
    """What one mapped task returns: small, whatever the batch trained."""

    model_config = ConfigDict(frozen=True)

    series: dict[str, RetrainSummary] = {}
    skipped: dict[str, str] = {}


class RetrainRun(BaseModel):
    """What a retrain did: every series' outcome (a panel's without its candidates' scores,
    which its version's manifest keeps) and every skipped series' reason."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    series: dict[str, RetrainSummary]
    skipped: dict[str, str]
    data_dir: str  # as the run was given it

    def only(self) -> RetrainSummary:
        """The outcome of a run of one series; a ValueError for any other run."""
        if len(self.series) != 1 or self.skipped:
            raise ValueError(
                f"{len(self.series)} series retrained and {len(self.skipped)} skipped, not one"
            )
        return next(iter(self.series.values()))


def merge_results(
    split: SourceSplit, results: list[BatchResult], config: RetrainConfig
) -> RetrainRun:
    series: dict[str, RetrainSummary] = {}
    skipped = dict(split.skipped)
    for result in results:
        series.update(result.series)
        skipped.update(result.skipped)
    return RetrainRun(
        series=dict(sorted(series.items())),
        skipped=dict(sorted(skipped.items())),
        data_dir=config.data_dir,
    )


COVERAGE_COLUMNS = tuple(f"coverage_{level:g}" for level in COVERAGE_LEVELS)
# panel_table's columns: the scale-free scores first (they rank series of any scale), then
# the errors in the series' units.
SCORE_COLUMNS = ("mase", "smape", *COVERAGE_COLUMNS, "mse", "persistence_mse")


def coverage_columns(coverage: dict[str, float]) -> dict[str, float | None]:
    """{"coverage_80": share, ...}: a share per level of COVERAGE_LEVELS, None where unknown."""
    return {
        column: coverage.get(f"{level:g}")
        for column, level in zip(COVERAGE_COLUMNS, COVERAGE_LEVELS, strict=True)
    }


def panel_table(summary: RetrainRun) -> list[dict[str, str | float | bool | None]]:
    """One row per series, trained or skipped, for the wavecast-panel table artifact: the
    published forecaster's test MASE, sMAPE, interval coverage per level, and MSE."""
    rows: list[dict[str, str | float | bool | None]] = []
    for key, outcome in summary.series.items():
        rows.append(
            {
                "series": key,
                "status": status_of(outcome),
                "version": outcome.version,
                "serves": outcome.published.forecaster,
                "mase": outcome.metrics.mase,
                "smape": outcome.metrics.smape,
                **coverage_columns(outcome.published.coverage),
                "mse": outcome.published.mse,
                "persistence_mse": outcome.baselines["persistence"].mse,
                "reason": None,
            }
        )
    for key, reason in summary.skipped.items():
        rows.append({"series": key, "status": "skipped", "reason": reason})
    return rows


def status_of(outcome: RetrainSummary) -> str:
    return "unchanged" if outcome.unchanged else "promoted" if outcome.promoted else "kept out"


def describe_outcome(outcome: RetrainSummary) -> str:
    served = outcome.published
    scores = scores_text(outcome.metrics, served.coverage)
    return f"{outcome.version} {status_of(outcome)}: {served.forecaster}, {scores}"


def iter_outcomes(summary: RetrainRun) -> Iterator[str]:
    """Lines for the command's plain-text summary."""
    for key, outcome in summary.series.items():
        detail = f"{outcome.version} serves {outcome.published.forecaster}: " + scores_text(
            outcome.metrics, outcome.published.coverage
        )
        yield f"{shown_id(key):<15} {status_of(outcome):<11}{detail}"
    for key, reason in summary.skipped.items():
        yield f"{shown_id(key):<15} {'skipped':<11}{reason}"
