"""wavecast: scheduled retraining of forecasters, from Python or the `wavecast` command.

    import wavecast
    wavecast.retrain(frame)              # a long frame of unique_id, ds, y
    forecasts = wavecast.forecast()      # unique_id, ds, step, forecaster, forecast, lo-80, ...

The core modules (wavecast.windows, wavecast.train, ...) are plain functions importable
without Prefect; the names below load the flows only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wavecast.quiet import quiet_tensorflow_start

if TYPE_CHECKING:
    from wavecast.api import (
        RetrainResult,
        forecast,
        models,
        monitor,
        promote,
        prune,
        retrain,
        rollback,
    )

__all__ = [
    "RetrainResult",
    "forecast",
    "models",
    "monitor",
    "promote",
    "prune",
    "retrain",
    "rollback",
]

# Every process that runs wavecast imports this package first (the command, the API, pool
# and Dask workers, a deployment's flow run): the one place TensorFlow's import is reached
# from, whichever module imports it first.
quiet_tensorflow_start()


def __getattr__(name: str) -> Any:
    """The public API, imported on first use: `import wavecast.config` in a worker process
    stays free of Prefect and pandas."""
    if name in __all__:
        from wavecast import api

        return getattr(api, name)
    raise AttributeError(f"module 'wavecast' has no attribute {name!r}")
