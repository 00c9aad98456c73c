"""The Forecaster interface: what a version serves, however it forecasts.

A forecaster forecasts from the origins of a series (the index of the last point it sees:
`forecasts`, as its evaluation scored it) or from the last point of a history (`forecast`, as
it serves), and says which file of a version directory holds it (`served_file`). It is saved
into a version by copying the files its evaluation and training left (`save`), and loaded
from one by kinds.load_served.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.candidates import mse_of
from wavecast.metrics import WindowForecaster
from wavecast.storage import DataDir

if TYPE_CHECKING:
    from wavecast.config import SelectionSpec, WindowSpec
    from wavecast.model_files import TrainedRef
    from wavecast.windows import DatasetRef

SPEC_FILE = "forecaster.json"  # a forecaster's ForecasterSpec, unless it is the network alone


class ForecasterSpec(BaseModel):
    """What a champion other than the network is stored as: names, a season, the forms its
    retrain chose and, for the linear AR, its weights; never a pickle. A statistical one is
    refitted on the series as of now whenever it forecasts, in its recorded form; the linear
    AR applies the weights it was scored with, with NumPy: serving it imports no TensorFlow
    (~5 s of a forecast command)."""

    model_config = ConfigDict(frozen=True)

    forecaster: str
    season: int
    members: tuple[str, ...]
    forms: dict[str, str] = {}
    # The linear AR's least-squares weights: input_len + 1 rows (the intercept last), a column
    # per step. JSON floats round-trip float64 exactly.
    weights: tuple[tuple[float, ...], ...] = ()
    # A combination's weight per member (inverse validation MSE, summing to 1); empty for an
    # equal-weighted mean (specs written before weights).
    member_weights: tuple[float, ...] = ()


class Located(NamedTuple):
    """A file: the data dir it is in and its parts there."""

    store: DataDir
    parts: tuple[str, ...]


class Sources(NamedTuple):
    """What a published forecaster is saved from: its evaluation's spec file, its training's
    network file (None without a network), and, read only when asked, the test windows with
    the forecasts its evaluation made of them (for a round-trip check)."""

    spec: Located
    network: Located | None
    evaluated: Callable[[], tuple[np.ndarray, np.ndarray]]


class Trial(NamedTuple):
    """What a candidate is backtested on: the series, its dataset, the origins of the
    validation and test windows (`blocks`), the trained network (its record and its
    forecaster of raw windows) if one was, and the selection's settings."""

    values: np.ndarray
    dataset: DatasetRef
    blocks: dict[str, np.ndarray]
    n_validation: int
    selection: SelectionSpec
    season: int
    store: DataDir
    trained: TrainedRef | None = None
    network: WindowForecaster | None = None


class Plan(NamedTuple):
    """What says, before anything is read into a data dir, whether a candidate can compete on
    a series: its length, the windows and season it is scored with, the selection, and
    whether its network is its panel's (--network global)."""

    n_points: int
    windows: WindowSpec
    season: int
    selection: SelectionSpec
    panel_network: bool = False

    def train_windows(self) -> tuple[WindowSpec, int]:
        """The windows the series is cut into (shortened when it is short) and its train
        windows' count, as the windows stage will make them."""
        from wavecast.windows import count_windows, fitted_spec, split_index

        spec = fitted_spec(self.windows, self.n_points)
        count = count_windows(self.n_points, spec.input_len, spec.horizon, spec.steps)
        return spec, split_index(count, spec.train_fraction)


@dataclass
class Backtest:
    """Every candidate's forecasts of the same targets: the validation windows (the train
    split's last ones) and, for the statistical candidates, the test windows."""

    validation_truth: np.ndarray
    test_truth: np.ndarray
    validation: dict[str, np.ndarray] = field(default_factory=dict)
    test: dict[str, np.ndarray] = field(default_factory=dict)
    forms: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    members: tuple[str, ...] = ()  # the combination's
    member_weights: tuple[float, ...] = ()
    linear_weights: np.ndarray | None = None  # the linear AR fitted on every train window

    def validation_mse(self) -> dict[str, float]:
        return {name: mse_of(f, self.validation_truth) for name, f in self.validation.items()}


class Forecaster(ABC):
    """A forecaster a version serves: the network (its own or its panel's), the linear AR, a
    statistical model or a combination of them."""

    served_file: ClassVar[str] = SPEC_FILE
    # Fitted again on the history whenever it forecasts: a forecast reads the recent history
    # (statistical.MAX_HISTORY points), not one window.
    refits: ClassVar[bool] = False

    @abstractmethod
    def forecasts(
        self,
        values: np.ndarray,
        origins: np.ndarray,
        horizon: int,
        steps: int,
        chosen_forms: bool = False,
        network_point: np.ndarray | None = None,
    ) -> np.ndarray:
        """(origins, steps) forecasts from each origin of `values`: a statistical model
        refitted there searching as its evaluation did, or in the forms its retrain chose
        (`chosen_forms`); `network_point`, the forecasts of the network it serves or combines
        from those origins, when they were made already."""

    def forecast(
        self,
        history: np.ndarray,
        horizon: int,
        steps: int,
        network_point: np.ndarray | None = None,
    ) -> np.ndarray:
        """The forecast after the last point of `history`, as the version serves it."""
        origin = np.array([len(history) - 1])
        return self.forecasts(history, origin, horizon, steps, True, network_point)[0]

    def stored_windows(self, input_len: int) -> WindowForecaster | None:
        """Its forecasts of a dataset's stored windows of `input_len` points, when it serves
        from those alone (a network of that input length): re-scored on them, it reproduces
        its evaluation's scores. None for the others, re-scored from the series' values."""
        return None

    def batched_network(self) -> Any | None:
        """The network this forecaster shares with other series (a panel's), whose forecasts
        of all their latest windows are made in one call; None when it shares none."""
        return None

    @classmethod
    @abstractmethod
    def backtest(cls, name: str, trial: Trial, scores: Backtest) -> None:
        """Fit candidate `name` of this kind as it would have been at each validation origin
        and score it there (in `scores`; and at the test origins when it forecasts from the
        series' values); one that cannot be fitted says why in `scores.notes`."""

    @classmethod
    def absence(cls, name: str, plan: Plan) -> str:
        """Why candidate `name` cannot compete on the series `plan` describes ("" when it
        can), known before a run: a run where no candidate can compete is refused."""
        return ""

    @classmethod
    def test_forecasts(cls, trial: Trial, scores: Backtest) -> np.ndarray:
        """Its forecasts of the test windows, made only when a combination holds it: the
        statistical ones made them in their backtest already."""
        raise NotImplementedError(f"{cls.__name__} forecast the test windows in its backtest")

    @classmethod
    @abstractmethod
    def save(cls, staging: Path, sources: Sources) -> None:
        """Copy what a version of this kind serves into its staging dir, and check the copy
        serves what was evaluated (RuntimeError when it does not)."""

    @classmethod
    def save_as_member(cls, staging: Path, sources: Sources) -> None:
        """What a combination holding this kind copies for it besides its own spec."""
        return None


def copy_spec(staging: Path, sources: Sources) -> ForecasterSpec:
    """Copy the evaluation's spec into a version's staging dir; it must read back."""
    store, parts = sources.spec
    store.copy_to_local(staging, *parts).rename(staging / SPEC_FILE)
    return ForecasterSpec.model_validate_json((staging / SPEC_FILE).read_text())
