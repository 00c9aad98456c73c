"""Imports that cost seconds, started on a thread while the process waits on other work.

statsforecast brings statsmodels, scipy.stats and dask.dataframe (~1.5 s on 2 cores): the
evaluate stage imported it only after the network trained, though training leaves a core
idle (an epoch is one compiled graph call, holding no GIL).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Sequence


def import_in_background(modules: Sequence[str]) -> threading.Thread | None:
    """Import `modules` on a daemon thread (None when all are imported already). A failure
    is left to the code that needs the module, which then raises it in its own stage; a
    stage importing a module this thread is still importing waits for it (Python's
    per-module import lock)."""
    missing = [name for name in modules if name not in sys.modules]
    if not missing:
        return None
    thread = threading.Thread(
        target=import_each, args=(missing,), name="wavecast-preload", daemon=True
    )
    thread.start()
    return thread


def import_each(modules: Sequence[str]) -> None:
    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
