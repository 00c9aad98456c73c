"""One typed, validated configuration for a retrain; every default reproduces the tutorial."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wavecast.confinement import field_within

Cell = Literal["simple", "lstm", "gru"]
Scaling = Literal["auto", "standard", "none"]
MissingPolicy = Literal["error", "drop", "interpolate"]
Recipe = Literal["relative", "tutorial"]
NetworkChoice = Literal["auto", "per-series", "global"]
# The global network's own training defaults (measured on M3's monthly series, benchmarks/
# README): big batches of windows drawn across the panel, few passes (more overfit 100 series).
GLOBAL_TRAINING = {"epochs": 10, "batch_size": 1024}
Runner = Literal["local", "dask"]
ForecasterName = Literal[
    "network", "linear", "naive", "seasonal_naive", "ets", "theta", "arima", "combination"
]
# AutoARIMA is left out by default: ~2 s per monthly fit against ETS's 0.06 and Theta's 0.01,
# for no better accuracy on the monthly competition series measured (benchmarks/README.md).
DEFAULT_CANDIDATES: tuple[ForecasterName, ...] = (
    "network",
    "linear",
    "naive",
    "seasonal_naive",
    "ets",
    "theta",
    "combination",
)


class _Spec(BaseModel):
    """Frozen and strict about unknown keys so a typo in prefect.yaml fails loudly; no NaN or
    infinity in any number, since no setting means anything with one."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class SeriesSpec(_Spec):
    """Where the series comes from: the tutorial's sine wave or a CSV/Parquet file or URI."""

    source: str = Field("sine", min_length=1, description="'sine' or a CSV/Parquet path or URI")
    column: str | None = Field(
        None, description="numeric column to forecast (default: the only one)"
    )
    length: int = Field(1000, ge=2, description="points of the generated sine")
    start: float = Field(-3 * math.pi, description="first x of the generated sine")
    stop: float = Field(3 * math.pi, description="last x of the generated sine")
    noise: float = Field(0.0, ge=0.0, description="std of Gaussian noise added to the sine")
    noise_seed: int = Field(0, ge=0, description="seed of that noise")
    time_column: str | None = Field(
        None,
        min_length=1,
        description="column of each value's time (default: a temporal column, or one named "
        "time, timestamp, date, datetime or ds)",
    )
    missing: MissingPolicy = Field(
        "error",
        description="NaN/inf values of a file source, and the times a regular time column "
        "(monthly, daily, ...) skips: error refuses them; drop leaves them out (the series is "
        "its observed values, one after another); interpolate fills them linearly, with a row "
        "for each skipped time",
    )
    id_column: str | None = Field(
        None, min_length=1, description="column naming each series of a long (panel) source"
    )
    series: tuple[str, ...] = Field(
        (), description="with --id-column: only these series (default: every one)"
    )

    @field_validator("length")
    @classmethod
    def length_within_limit(cls, length: int, info: ValidationInfo) -> int:
        return field_within(length, "max_points", info)

    @property
    def is_generated(self) -> bool:
        return self.source == "sine"

    @model_validator(mode="after")
    def panel_needs_a_file(self) -> SeriesSpec:
        if self.id_column is not None and self.is_generated:
            raise ValueError("--id-column needs a CSV/Parquet --source holding several series")
        if self.series and self.id_column is None:
            raise ValueError("--series picks series of a panel: give --id-column too")
        return self


class WindowSpec(_Spec):
    """Window geometry; horizon 2 is the tutorial's target y[i+6] after the window y[i:i+5]."""

    input_len: int = Field(
        5, ge=1, description="inputs per window (default: two seasons of dated data, else 5)"
    )
    horizon: int = Field(
        2,
        ge=1,
        description="steps from the window's last point to its first target (default: 1 for "
        "dated data, else the tutorial's 2)",
    )
    steps: int = Field(
        1,
        ge=1,
        description="steps forecast at once, from the horizon on (h, as Nixtla's libraries call "
        "it; default: a season of dated data, else the tutorial's 1)",
    )
    train_fraction: float = Field(0.8, gt=0.0, lt=1.0, description="leading share of windows")


class ModelSpec(_Spec):
    recipe: Recipe = Field(
        "relative",
        description="relative: forecast the change from the window's last value with the "
        "recurrent net plus a linear path; tutorial: the tutorial's net on the window as is",
    )
    network: NetworkChoice = Field(
        "auto",
        description="per-series: a recurrent network for each series (the tutorial's); "
        "global: one N-BEATS network trained on the windows of every series of a panel, "
        "scored by each series as its network; auto (the default): global for a panel "
        "(--id-column), per-series otherwise",
    )
    cell: Cell = Field(
        "simple",
        description="a per-series network's recurrent cell: simple (the tutorial's), lstm or gru",
    )
    units: int = Field(100, ge=1, description="recurrent units of a per-series network")
    width: int = Field(
        256, ge=1, le=4096, description="units per layer of the global network's N-BEATS blocks"
    )
    members: int = Field(
        3, ge=1, le=16, description="global networks trained side by side, their median served"
    )
    scaling: Scaling = Field(
        "auto",
        description="input standardization inside the model; auto = only when the train "
        "inputs leave [-5, 5] (the tutorial's sine is left as is)",
    )

    @field_validator("units")
    @classmethod
    def units_within_limit(cls, units: int, info: ValidationInfo) -> int:
        return field_within(units, "max_units", info)


class SelectionSpec(_Spec):
    """Which forecasters compete for a series, chosen on a rolling-origin backtest inside the
    train split, never on the test split that is reported."""

    candidates: tuple[ForecasterName, ...] = Field(
        DEFAULT_CANDIDATES, min_length=1, description="forecasters that compete, comma-separated"
    )
    season: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="season length in steps (default: from the time column's frequency, else 1)",
    )
    network_min_windows: int = Field(
        80,
        ge=0,
        description="train windows below which the network does not compete: a recurrent net "
        "on a few dozen windows costs seconds and loses to the statistical models",
    )

    plots: bool = Field(
        True,
        description="draw each evaluation's plots (test forecasts, loss): ~70 ms a series, "
        "most of a series' cost in a panel of thousands (default: true up to 1000 series)",
    )

    @field_validator("candidates", mode="before")
    @classmethod
    def comma_separated(cls, value: object) -> object:
        return (
            tuple(v.strip() for v in value.split(",") if v.strip())
            if isinstance(value, str)
            else value
        )

    @field_validator("candidates")
    @classmethod
    def unique(cls, candidates: tuple[ForecasterName, ...]) -> tuple[ForecasterName, ...]:
        if set(candidates) == {"combination"}:
            raise ValueError(
                "combination weighs other candidates: name some beside it, e.g. ets,theta,"
                "combination"
            )
        return tuple(dict.fromkeys(candidates))

    def trains_network(self, n_train: int) -> bool:
        return "network" in self.candidates and n_train >= self.network_min_windows


class TrainSpec(_Spec):
    epochs: int = Field(
        100, ge=1, description="passes over the windows; a global network's default is 10"
    )
    batch_size: int = Field(
        32,
        ge=1,
        description="windows per step; a global network's default is 1024, or an eighth of "
        "a small panel's windows",
    )
    learning_rate: float = Field(1e-3, gt=0.0, description="Adam's (initial) learning rate")
    # NumPy's legacy seeding, which keras.utils.set_random_seed calls, takes 0 .. 2**32 - 1.
    seed: int = Field(0, ge=0, lt=2**32, description="seeds Python, NumPy and TensorFlow")

    @field_validator("epochs")
    @classmethod
    def epochs_within_limit(cls, epochs: int, info: ValidationInfo) -> int:
        return field_within(epochs, "max_epochs", info)


class GatePolicy(_Spec):
    """Promote a candidate that does not regress on the champion on the same test windows."""

    require_skill: bool = Field(
        False,
        description="also require skill over persistence: serve nothing rather than a naive "
        "forecaster (by default the best candidate serves, naive included)",
    )
    tolerance: float = Field(
        0.10, ge=0.0, description="allowed relative MSE increase over the re-scored champion"
    )


class FanOutSpec(_Spec):
    """How a panel's series are spread over cores or machines: Prefect task runners only."""

    runner: Runner = Field(
        "local", description="local: processes on this machine; dask: a Dask cluster (prefect-dask)"
    )
    dask_address: str | None = Field(
        None,
        pattern=r"^[a-z]+://\S+$",
        description="scheduler of an existing Dask cluster, e.g. tcp://host:8786 (default: "
        "a LocalCluster for the run)",
    )
    workers: int | None = Field(
        None, ge=1, le=1024, description="worker processes on this machine (default: its cores)"
    )
    series_per_process: int = Field(
        40,
        ge=1,
        description="worker processes are replaced after about this many series: TensorFlow "
        "keeps a few MB per trained model for the life of its process",
    )
    series_per_task: int | None = Field(
        None,
        ge=1,
        description="series per mapped task: a task run costs ~0.5 s of orchestration, so "
        "fewer, larger tasks cost less (default: 8 with a network per series, 128 with "
        "--network global, whose series cost ~40 ms each, or an even share of the workers when "
        "that is fewer; 1000 to forecast)",
    )

    pool_from: int | None = Field(
        None,
        ge=1,
        description="a panel of fewer series runs in the flow's own process: starting worker "
        "processes costs ~15 s (default: 32, or 4 with a network per series)",
    )

    def runs_in_process(self, per_series_networks: bool, n_series: int) -> bool:
        """Whether a panel is small enough that a pool of worker processes costs more than it
        saves (benchmarks/first_use.py). A script or notebook then needs no __main__ guard."""
        if self.runner != "local":
            return False
        return n_series < (self.pool_from or (4 if per_series_networks else 32))

    def batch_size(self, network: NetworkChoice, n_series: int, workers: int) -> int:
        """As set, or the network's default cut to an even share of the workers: 100 series
        of a global panel in one batch of 128 left one of two workers idle."""
        if self.series_per_task:
            return self.series_per_task
        default = 128 if network == "global" else 8
        return max(1, min(default, -(-n_series // workers)))

    def forecast_part_size(self) -> int:
        """Series per mapped forecast task: one costs ~5 ms, and each task reads its part
        of the source (a panel of up to this many runs in the flow's own process)."""
        return self.series_per_task or 1000

    @model_validator(mode="after")
    def address_means_dask(self) -> FanOutSpec:
        if self.dask_address and self.runner != "dask":
            raise ValueError("--dask-address needs --runner dask")
        return self


class RetentionSpec(_Spec):
    """What a data dir keeps when a retrain (or `wavecast models prune`) sweeps it; the rules
    are wavecast.retention's."""

    keep_versions: int = Field(
        3,
        ge=1,
        le=100_000,
        description="newest versions each registry keeps, besides its champion, the champion "
        "before it and any version a stored forecast names",
    )
    min_age_s: float = Field(
        3600.0,
        ge=0.0,
        description="seconds before an unreferenced version or file may be swept: a retrain "
        "running beside the sweep may still be writing or publishing it",
    )


class RetrainConfig(_Spec):
    """The flow's single parameter; the CLI and prefect.yaml both fill it."""

    series: SeriesSpec = SeriesSpec()
    windows: WindowSpec = WindowSpec()
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    selection: SelectionSpec = SelectionSpec()
    gate: GatePolicy = GatePolicy()
    fan_out: FanOutSpec = FanOutSpec()
    retention: RetentionSpec = RetentionSpec()
    data_dir: str = Field("data", min_length=1, description="local path or fsspec URI")
    refresh: bool = Field(False, description="recompute every cached stage")

    @model_validator(mode="before")
    @classmethod
    def network_defaults(cls, data: Any) -> Any:
        """--network auto (or unset) is global for a panel, per-series otherwise; a global
        network trains with its own defaults (GLOBAL_TRAINING) where none are given."""
        if not isinstance(data, Mapping):
            return data
        model, series, train = (given(data.get(key)) for key in ("model", "series", "train"))
        if model.get("network", "auto") == "auto":
            model["network"] = "global" if series.get("id_column") else "per-series"
        data = {**data, "model": model}
        if model["network"] == "global":
            data["train"] = GLOBAL_TRAINING | train
        return data

    @model_validator(mode="after")
    def global_needs_a_panel(self) -> RetrainConfig:
        if self.model.network == "global" and self.series.id_column is None:
            raise ValueError("--network global trains one network for a panel: give --id-column")
        return self

    @property
    def scores_panel_network(self) -> bool:
        """Whether the network competes as the panel's one network (--network global)."""
        return self.model.network == "global" and "network" in self.selection.candidates

    def without_run_options(self) -> RetrainConfig:
        """What a model is trained by, without how one run was carried out (--refresh, the
        fan-out): stored with a version and replayed by drift retrains, a run's options
        would make every later retrain of that series a forced refresh."""
        return self.model_copy(update={"refresh": False, "fan_out": FanOutSpec()})


class ForecastConfig(_Spec):
    """The forecast flow's single parameter; `wavecast forecast` and prefect.yaml fill it."""

    data_dir: str = Field("data", min_length=1, description="local path or fsspec URI")
    source: str | None = Field(
        None, min_length=1, description="source to read as of now (default: the champion's)"
    )
    column: str | None = Field(None, description="its column (default: the champion's)")
    version: str | None = Field(None, description="model version (default: the champion)")
    series: tuple[str, ...] = Field(
        (), description="in a panel's data dir: only these series (default: every champion)"
    )
    levels: tuple[float, ...] = Field(
        (80.0, 95.0), min_length=1, description="interval levels in percent, each in (0, 100)"
    )
    fan_out: FanOutSpec = Field(
        default_factory=FanOutSpec, description="how a panel's series are spread over cores"
    )

    @field_validator("levels")
    @classmethod
    def levels_are_percentages(cls, levels: tuple[float, ...]) -> tuple[float, ...]:
        if not all(0 < level < 100 for level in levels):
            raise ValueError("every level must be a percentage between 0 and 100, e.g. 80")
        return tuple(sorted(set(levels)))


class MonitorConfig(_Spec):
    """The monitor flow's single parameter; `wavecast monitor` and prefect.yaml fill it."""

    data_dir: str = Field("data", min_length=1, description="local path or fsspec URI")
    source: str | None = Field(
        None,
        min_length=1,
        description="where the actuals are now, with the champion's columns (default: the "
        "source each champion was trained on)",
    )
    series: tuple[str, ...] = Field(
        (), description="in a panel's data dir: only these series (default: every one forecast)"
    )
    threshold: float = Field(
        2.0,
        gt=1.0,
        le=1e6,
        description="drift when the recent RMSE exceeds this multiple of the held-out RMSE",
    )
    window: int = Field(
        12, ge=1, le=100_000, description="most recent realized targets the judgement uses"
    )
    min_realized: int = Field(
        1, ge=1, le=100_000, description="realized targets needed before anything is judged"
    )
    min_coverage: float = Field(
        0.5,
        ge=0.0,
        lt=0.95,
        description="drift when fewer of the recent targets fall inside their 95 % interval",
    )


def given(value: object) -> dict[str, Any]:
    """The fields set in a nested spec, as a dict (a spec object, a mapping, or nothing)."""
    if isinstance(value, BaseModel):
        return value.model_dump(include=value.model_fields_set)
    return dict(value) if isinstance(value, Mapping) else {}
