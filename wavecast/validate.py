"""Input checks that run before any work, so bad data fails in seconds and writes nothing.

Beyond the schema (config.py), they check what the arithmetic and this machine can take: a
series and a model that fit in memory, values whose squares stay finite in float32.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from wavecast.config import RetrainConfig, SelectionSpec, WindowSpec
from wavecast.errors import InvalidInputError
from wavecast.forecasters.forecaster import Plan
from wavecast.forecasters.kinds import nothing_competes
from wavecast.generate import LoadedSeries
from wavecast.panel import DataShape, source_shape
from wavecast.series import check_trainable
from wavecast.storage import DataDir
from wavecast.windows import count_windows, split_index

# A season's length -> what data of that season is called.
FREQUENCY_NAMES = {
    48: "half-hourly",
    24: "hourly",
    7: "daily",
    52: "weekly",
    12: "monthly",
    4: "quarterly",
}
TUTORIAL_INPUT_LEN = 5
PLOTTED_SERIES_MAX = 1000  # panels above this many series draw no per-series plots by default


def dated_windows(
    windows: WindowSpec, season: int | None, typical_length: int
) -> tuple[WindowSpec, str]:
    """Window settings for a dated series where none were given, and a sentence saying so:
    one season ahead in one go (steps; 1 without a season), from the next step on (horizon
    1), from two seasons of inputs, at most a third of a typical series. What the user set
    stays; the tutorial's settings stay for series without dates (the caller's choice)."""
    unset = {"input_len", "horizon", "steps"} - windows.model_fields_set
    if not unset:
        return windows, ""
    steps = windows.steps if "steps" not in unset else (season or 1)
    wanted = 2 * steps if steps > 1 else TUTORIAL_INPUT_LEN
    chosen = {
        "horizon": 1,
        "steps": steps,
        "input_len": max(1, min(wanted, typical_length // 3)),
    }
    resolved = windows.model_copy(update={name: chosen[name] for name in unset})
    kind = FREQUENCY_NAMES.get(season or 0, "dated")
    told = {
        "steps": f"{resolved.steps} step(s) ahead",
        "input_len": f"{resolved.input_len} past values",
        "horizon": f"from horizon {resolved.horizon}",
    }
    said = ", ".join(told[name] for name in ("steps", "input_len", "horizon") if name in unset)
    return (
        resolved,
        f"{kind} data: forecasting {said} (defaults from its dates; set them to change)",
    )


def panel_plots(selection: SelectionSpec, n_series: int) -> tuple[SelectionSpec, str]:
    """Evaluation plots off by default above PLOTTED_SERIES_MAX series (each costs ~70 ms and
    memory: most of a series' cost in a panel of thousands), and a sentence saying so."""
    if "plots" in selection.model_fields_set or n_series <= PLOTTED_SERIES_MAX:
        return selection, ""
    note = (
        f"{n_series} series: each series' evaluation plots are left out (~70 ms a series); "
        "plots=True (--plots true) draws them"
    )
    return selection.model_copy(update={"plots": False}), note


GATES = {"simple": 1, "lstm": 4, "gru": 3}
FLOAT32 = 4
# Weights, their gradients and Adam's two moments; and per unit of a batch's recurrent work,
# the activations backpropagation keeps plus the temporaries around them.
WEIGHT_COPIES = 4
ACTIVATION_COPIES = 4
SERIES_COPIES = 3  # the values, a stored copy and one chunk being written, as float64


def available_memory() -> int:
    """Bytes this machine can still hand out (Linux MemAvailable; else free physical pages)."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def training_bytes(config: RetrainConfig, n_train: int) -> int:
    """A floor on what training holds: the model's state plus one batch's activations."""
    units, gates = config.model.units, GATES[config.model.cell]
    parameters = gates * units * (units + 2) + units + 1  # kernels, biases, dense head
    batch = min(config.train.batch_size, max(n_train, 1))
    activations = batch * config.windows.input_len * units * gates
    return FLOAT32 * (WEIGHT_COPIES * parameters + ACTIVATION_COPIES * activations)


def gib(size: float) -> str:
    return f"{size / 2**30:.3g} GiB"


def check_fits_in_memory(needed: int, what: str, available: int) -> None:
    if needed > available:
        raise InvalidInputError(
            f"{what} need(s) about {gib(needed)}, more than the {gib(available)} this machine "
            "has available"
        )


def check_data_dir(uri: str) -> None:
    """A local data dir must be (or be creatable as) a directory this user may write."""
    store = DataDir(uri)  # an unknown scheme or a missing fsspec backend is refused here
    if not store.is_local:
        return
    root = Path(store.root)
    existing = next(path for path in (root, *root.parents) if path.exists())
    if not existing.is_dir():
        raise InvalidInputError(f"--data-dir {uri}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInputError(f"--data-dir {uri}: {existing} is not writable by this user")


class Validated(NamedTuple):
    """The config to run, its settings that depend on the data completed where none were
    given (dated_windows, panel_plots), and the sentence saying so ("" when
    nothing was chosen)."""

    config: RetrainConfig
    chosen: str


def with_data_defaults(config: RetrainConfig, shape: DataShape) -> Validated:
    """The settings not given that depend on the data: windows from its dates, plots from
    its number of series; each choice said in a sentence."""
    windows, dated = config.windows, ""
    if shape.dated:
        windows, dated = dated_windows(config.windows, shape.season, shape.typical_length)
    selection, plotted = panel_plots(config.selection, shape.n_series)
    chosen = "; ".join(note for note in (dated, plotted) if note)
    return Validated(config.model_copy(update={"windows": windows, "selection": selection}), chosen)


def check_something_competes(config: RetrainConfig, shape: DataShape) -> None:
    """Refuse a run none of whose candidates can compete on any of its series (a panel's
    shortest or longest), before it writes anything: naive would stand in for all of them.
    So is a season no series is long enough to repeat: it would be read as no season."""
    longest = shape.lengths[1]
    if config.selection.season and longest and config.selection.season >= longest:
        raise InvalidInputError(
            f"--season {config.selection.season}: no series is longer than one season (the "
            f"longest has {longest} points); give the season in steps of the data, or leave "
            "it unset for the one its dates imply"
        )
    season = config.selection.season or shape.season or 1
    plans = [
        Plan(n, config.windows, season, config.selection, config.scores_panel_network)
        for n in shape.lengths
    ]
    why = nothing_competes(plans)
    if why:
        asked = ",".join(config.selection.candidates)
        raise InvalidInputError(
            f"--candidates {asked}: none can compete on this source ({why}); add naive, ets "
            "or theta"
        )


def validate_inputs(config: RetrainConfig, available: int | None = None) -> Validated:
    """The config to run; InvalidInputError with one actionable line if it cannot be trained
    on."""
    check_data_dir(config.data_dir)
    available = available_memory() if available is None else available
    if config.series.is_generated:
        needed = config.series.length * 8 * SERIES_COPIES
        check_fits_in_memory(needed, f"--length {config.series.length}", available)
    shape, single = source_shape(config.series)
    validated = with_data_defaults(config, shape)
    check_something_competes(validated.config, shape)
    if single is not None:
        check_single_series(validated.config, single, available)
    return validated


def check_single_series(config: RetrainConfig, loaded: LoadedSeries, available: int) -> None:
    """A single series fails the run on what would only skip a panel's series (split_source):
    not trainable; and its network must fit in memory."""
    check_trainable(loaded, config.series.source, config.windows)
    spec = config.windows
    n_windows = count_windows(len(loaded.values), spec.input_len, spec.horizon, spec.steps)
    n_train = split_index(n_windows, spec.train_fraction)
    model = config.model
    what = (
        f"--units {model.units} ({model.cell}) with --batch-size {config.train.batch_size} "
        f"and --input-len {spec.input_len}"
    )
    check_fits_in_memory(training_bytes(config, n_train), what, available)
