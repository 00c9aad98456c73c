"""TensorFlow's start-up lines are dropped; every other line on stderr still shows."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from wavecast.quiet import start_up_lines_dropped

START_UP = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1796478148.771275   16253 port.cc:153] oneDNN custom operations are on.\n"
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild.\n"
)


@pytest.mark.unit
def test_start_up_lines_are_dropped_and_the_rest_kept_in_order(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with start_up_lines_dropped():
        os.write(2, START_UP + b"E0000 00:00 cuda.cc:1] a real error\n")
        print("a Python warning", file=sys.stderr)
        os.write(2, b"W0000 00:00 a native warning\n")

    err = capfd.readouterr().err
    native = [line for line in err.splitlines() if line.startswith(("E0000", "W0000"))]
    assert native == ["E0000 00:00 cuda.cc:1] a real error", "W0000 00:00 a native warning"]
    assert "a Python warning" in err and "0000 00:00:" not in err and "absl" not in err


def tensorflow_import_stderr(**environment: str) -> str:
    code = "import wavecast, tensorflow, keras; print(tensorflow.__version__)"
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(environment)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip()  # the import happened
    return done.stderr


@pytest.mark.flow
def test_importing_tensorflow_after_wavecast_prints_nothing_unless_asked() -> None:
    assert "I0000" not in tensorflow_import_stderr()
    assert tensorflow_import_stderr() == ""
    assert "oneDNN custom operations" in tensorflow_import_stderr(TF_CPP_MIN_LOG_LEVEL="0")
