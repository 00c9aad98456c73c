"""The real `wavecast` command, whose write of a forecast file stops at one point for a kill.

`python tests/stalled_wavecast.py forecast ...` with WAVECAST_STALL_AT=write stops with half
the file's bytes in its staging file; with WAVECAST_STALL_AT=rename, with the staging file
complete and not yet renamed. Either way it prints one line saying so and sleeps, so a test
can `kill -9` it exactly there. Everything else runs as the command does.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from wavecast.flows.cli import main
from wavecast.staging import STAGING_TAG

STALL_AT = os.environ["WAVECAST_STALL_AT"]
real_write, real_replace = os.write, os.replace
AnyPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]


def is_forecast_staging(path: str) -> bool:
    return STAGING_TAG in Path(path).name and "/forecasts/" in path


def stall(path: str) -> None:
    print(f"stalled at the {STALL_AT} of {path}", flush=True)
    time.sleep(600)


def path_of(descriptor: int) -> str:
    try:
        return str(Path(f"/proc/self/fd/{descriptor}").readlink())
    except OSError:
        return ""


def stalling_write(descriptor: int, data: Any) -> int:
    if STALL_AT == "write" and is_forecast_staging(path_of(descriptor)):
        real_write(descriptor, bytes(data[: len(data) // 2]))
        stall(path_of(descriptor))
    return real_write(descriptor, data)


def stalling_replace(
    src: AnyPath,
    dst: AnyPath,
    *,
    src_dir_fd: int | None = None,
    dst_dir_fd: int | None = None,
) -> None:
    if STALL_AT == "rename" and is_forecast_staging(os.fsdecode(src)):
        stall(os.fsdecode(src))
    real_replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


if __name__ == "__main__":
    os.write, os.replace = stalling_write, stalling_replace
    sys.argv[0] = "wavecast"
    main()
