"""TensorFlow's start-up lines, dropped without changing what TensorFlow does.

Importing TensorFlow 2.19+ writes INFO lines (oneDNN is on, the CPU's instructions) straight
to the process's stderr before its logging is set up, so TF_CPP_MIN_LOG_LEVEL does not hide
them (tensorflow/tensorflow#100442), and TF_ENABLE_ONEDNN_OPTS=0 would change the numerics.
While TensorFlow's module runs, stderr is a temporary file; afterwards every line but those
INFO lines is written back, so warnings and errors still show. TF_CPP_MIN_LOG_LEVEL=0, set
by the user, keeps them all.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType

# Lines TensorFlow's import writes that say nothing a user can act on.
START_UP_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 ",  # absl's INFO prefix before logging is initialized
    "To enable the following instructions:",  # the second line of cpu_feature_guard's INFO
)


def is_start_up_line(line: str) -> bool:
    return line.startswith(START_UP_LINES)


@contextlib.contextmanager
def start_up_lines_dropped() -> Iterator[None]:
    """Capture file descriptor 2 for the block, then write back what is not a start-up line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not is_start_up_line(line))
            if kept:
                os.write(2, kept.encode())


class QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as Python would, and runs its module with start-up lines dropped."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_module = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            with start_up_lines_dropped():
                run_module(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def quiet_tensorflow_start() -> None:
    """Drop TensorFlow's start-up lines in this process (once), unless the user asked for
    every log line with TF_CPP_MIN_LOG_LEVEL=0 or TensorFlow is already imported."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlowImport())
