"""Retrain settings as the command line and wavecast.retrain take them, flat (`--epochs`,
`epochs=`), nested where RetrainConfig holds them. Imports nothing heavy: `wavecast --help`
builds its flags from this before anything else loads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Each retrain setting (a `wavecast retrain` flag, a keyword of wavecast.retrain) -> where it
# lives in RetrainConfig; the flags' help comes from the config's own fields.
RETRAIN_SETTINGS: dict[str, tuple[str, ...]] = {
    "source": ("series", "source"),
    "column": ("series", "column"),
    "time_column": ("series", "time_column"),
    "length": ("series", "length"),
    "noise": ("series", "noise"),
    "noise_seed": ("series", "noise_seed"),
    "missing": ("series", "missing"),
    "id_column": ("series", "id_column"),
    "input_len": ("windows", "input_len"),
    "horizon": ("windows", "horizon"),
    "steps": ("windows", "steps"),
    "h": ("windows", "steps"),
    "train_fraction": ("windows", "train_fraction"),
    "network": ("model", "network"),
    "recipe": ("model", "recipe"),
    "cell": ("model", "cell"),
    "units": ("model", "units"),
    "width": ("model", "width"),
    "members": ("model", "members"),
    "scaling": ("model", "scaling"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "learning_rate": ("train", "learning_rate"),
    "seed": ("train", "seed"),
    "candidates": ("selection", "candidates"),
    "season": ("selection", "season"),
    "network_min_windows": ("selection", "network_min_windows"),
    "plots": ("selection", "plots"),
    "tolerance": ("gate", "tolerance"),
    "runner": ("fan_out", "runner"),
    "dask_address": ("fan_out", "dask_address"),
    "workers": ("fan_out", "workers"),
    "series_per_task": ("fan_out", "series_per_task"),
    "series_per_process": ("fan_out", "series_per_process"),
    "pool_from": ("fan_out", "pool_from"),
    "keep_versions": ("retention", "keep_versions"),
    "data_dir": ("data_dir",),
}


def nested_settings(
    given: Mapping[str, object], paths: Mapping[str, tuple[str, ...]]
) -> dict[str, Any]:
    """The settings given (None is "not given"), nested where their config fields sit."""
    nested: dict[str, Any] = {}
    for name, path in paths.items():
        value = given.get(name)
        if value is None:
            continue
        target = nested
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return nested
