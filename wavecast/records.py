"""The registry's records and a retrain's summary: one typed model each, shared by every reader.

The registry writes them, publishing fills them and the report renders them; none of those
modules reads another's JSON by string keys. Non-finite numbers are written as the strings
"NaN"/"Infinity" (standard JSON) and read back as floats.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from wavecast.config import RetrainConfig, WindowSpec
from wavecast.evaluate import CandidateScore, Published
from wavecast.generate import SeriesRef
from wavecast.metrics import Metrics
from wavecast.model_files import TrainedRef
from wavecast.windows import DatasetInfo

Action = Literal["promote", "manual", "rollback"]
Row = dict[str, float | int | str]


class Record(BaseModel):
    """Frozen; unknown keys from newer or older writers are ignored, not fatal."""

    model_config = ConfigDict(frozen=True, extra="ignore", ser_json_inf_nan="strings")


class CodeLineage(Record):
    revision: str | None = None
    stage_versions: dict[str, int] = Field(
        default_factory=dict, description="each cached stage's version (cache_keys.STAGE_VERSIONS)"
    )


class Manifest(Record):
    """Lineage of one version: enough to say exactly what produced it and to reproduce it."""

    created: datetime
    flow_run_id: str | None = None
    code: CodeLineage = CodeLineage()
    libraries: dict[str, str] = Field(default_factory=dict)
    config: RetrainConfig
    series: SeriesRef
    dataset: DatasetInfo
    training: TrainedRef | None = None  # None: the network did not compete
    seed: int
    metrics: Metrics
    baselines: dict[str, Metrics]
    published: Published | None = None  # None: written before a linear AR could be served
    candidates: tuple[CandidateScore, ...] = ()


class ChampionRecord(Record):
    """models/champion.json: the version that serves, since when, and its test scores."""

    version: str
    since: datetime
    metrics: Metrics


class PromotionEvent(Record):
    """One line of models/promotions.jsonl: who replaced whom, how and why."""

    when: datetime
    action: Action
    version: str
    replaced: str | None
    reason: str
    metrics: Metrics


class VersionRow(Record):
    """One line of `wavecast models list`; `problem` names a version whose files are damaged.

    Its scores are the version's own, on its own test windows (which move as the series
    grows); `gated_against` is the champion it was gated against and `champion_mase` that
    champion's MASE re-scored on this version's test windows: the comparable pair.
    """

    version: str
    champion: bool
    mase: float | None = None
    smape: float | None = None
    coverage: dict[str, float] = Field(default_factory=dict)  # level -> test coverage
    mse: float | None = None
    persistence_mse: float | None = None
    gated_against: str | None = None
    champion_mase: float | None = None
    dataset: str | None = None
    problem: str | None = None


class RetrainSummary(Record):
    """What one retrain produced and decided; the CLI prints it, the report renders it."""

    version: str
    model_dir: str
    dataset_dir: str
    dataset_id: str
    metrics: Metrics  # the published forecaster's, on the test split
    baselines: dict[str, Metrics]
    published: Published  # what the version serves and why, chosen on validation windows
    candidates: tuple[CandidateScore, ...] = ()  # every competitor's validation and test scores
    champion_rescored: Metrics | None  # on this version's test windows, when it could be
    compared_with: str | None = None  # the champion the gate compared this version with
    promoted: bool
    champion: str | None
    unchanged: bool
    reasons: tuple[str, ...]
    changes: tuple[str, ...]
    report: str


class LatestWindow(BaseModel):
    """The source as of now, cut to what a forecast needs: small enough to hand between tasks."""

    model_config = ConfigDict(frozen=True)

    version: str
    dataset_id: str
    series: str
    source: str
    forecaster: str = "network"
    spec: WindowSpec
    n_points: int
    history: tuple[float, ...]  # what the forecaster reads: the last window, or more
    history_times: tuple[str, ...] = ()  # the fan chart's last observations' times, if any
    origin: str  # the last observed point: its timestamp, or its index
    targets: tuple[str, ...]  # the forecast steps' timestamps, or indices
    note: str | None = None  # why targets are step numbers, when they are
    home: str  # the data dir whose forecasts dataset takes this series' rows


class Forecast(BaseModel):
    """A model's forecast from one origin: one row per step, with interval bounds per level."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    version: str
    dataset_id: str
    series: str
    forecaster: str = "network"
    origin: str
    levels: tuple[float, ...]
    rows: tuple[Row, ...]
    coverage: dict[str, float]  # level -> held-out empirical coverage
    note: str | None = None


class ForecastSummary(Record):
    """What `wavecast forecast --json` prints last, and the forecast flow returns."""

    version: str
    series: str
    forecaster: str = "network"
    origin: str
    forecasts: tuple[Row, ...]
    coverage: dict[str, float]
    path: str
    report: str
    note: str | None = None
