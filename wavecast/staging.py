"""Atomic local writes: stage beside the target, rename into place, sweep what killed writers left.

A writer stages beside its target (one filesystem, so the rename stays atomic) under a hidden
name, `.<name>.staging-<uuid>`, which dataset readers skip (pyarrow ignores names starting
with "." or "_"), and holds a shared flock on it while it lives: a later writer into the same
directory removes the staging entries that are old and that nobody holds, what `kill -9` left.
storage.DataDir uses these on a local disk; on an object store, which has neither atomic
renames nor locks, a directory's completion marker, uploaded last, is the commit point.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

STAGING_TAG = ".staging-"  # in every staging name: hidden ones, and earlier versions' visible ones
HIDDEN_PREFIXES = (".", "_")  # names pyarrow's dataset discovery skips
# A staging entry older than this that no live writer holds was left by a killed one. Writers
# of earlier versions held no lock: this long without a write, they are gone too.
STALE_AFTER_S = 600.0
WRITE_CHUNK = 1 << 20  # os.write may take less than it is given, and at most ~2 GiB


def is_hidden(name: str) -> bool:
    """A name dataset readers skip: staging entries, and anything a person hid."""
    return name.startswith(HIDDEN_PREFIXES)


def staging_path(target: str, kind: str = "") -> str:
    """A hidden, unique sibling of `target`: same directory, so renaming it is atomic."""
    parent, name = target.rsplit("/", 1)
    return f"{parent}/.{name}{STAGING_TAG}{kind}{uuid.uuid4().hex}"


def hold(descriptor: int) -> None:
    """Mark an open staging entry as a live writer's with a shared flock, which the kernel
    drops when the writer dies, even by SIGKILL. On a filesystem without locks nothing is
    marked, and remove_if_abandoned, unable to lock either, removes nothing there."""
    with contextlib.suppress(OSError):
        fcntl.flock(descriptor, fcntl.LOCK_SH)


@contextlib.contextmanager
def held(path: str) -> Iterator[None]:
    """Hold a local file or directory (see hold) while the block runs."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        hold(descriptor)
        yield
    finally:
        os.close(descriptor)


def sweep_staging(directory: str) -> None:
    """Remove the staging entries of killed writers from a local directory: those older than
    STALE_AFTER_S that no live writer holds. One listing; only tagged names are looked at."""
    cutoff = time.time() - STALE_AFTER_S
    try:
        entries = [e for e in os.scandir(directory) if STAGING_TAG in e.name]
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                remove_if_abandoned(entry.path)


def remove_if_abandoned(path: str) -> None:
    """Delete a staging file or directory unless a live writer holds it (or it is a link)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return  # gone already, a symlink, or unreadable: not ours to judge
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # a live writer holds it, or this filesystem cannot tell: keep it
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            Path(path).unlink(missing_ok=True)
    finally:
        os.close(descriptor)


def write_local(data: bytes, staging: str, target: str) -> None:
    """Write a new staging file, held until it is renamed over `target`."""
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        hold(descriptor)
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view[:WRITE_CHUNK]) :]
        Path(staging).replace(target)
    finally:
        os.close(descriptor)


def retire_local(staged: Path, target: str) -> None:
    """Rename a staged directory to `target`; a previous `target` is moved aside (held, so no
    sweep takes it) and deleted after, or put back if the rename fails."""
    retired = Path(staging_path(target, "retired-"))
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(FileNotFoundError):
            stack.enter_context(held(target))
            Path(target).rename(retired)
        try:
            staged.rename(target)
        except OSError:
            if retired.exists():
                retired.rename(target)  # put the previous complete version back
            raise
        shutil.rmtree(retired, ignore_errors=True)
