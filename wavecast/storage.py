"""The data directory, addressed by path or fsspec URI, where nothing is ever half-written.

Readers trust a directory only when it carries a completion marker, and writers build a
directory elsewhere and move it into place, so a crash at any moment leaves either the old
state or the new one. On a local disk the move is an atomic rename (wavecast.staging: staging
beside the target, held by its writer). On a local disk, no path under the root may lead out
of it through a symlink.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ValidationError

from wavecast.confinement import STORED_RECORD, check_inside, check_location, is_inside
from wavecast.errors import InvalidInputError
from wavecast.staging import held, retire_local, staging_path, sweep_staging, write_local

COMPLETE_MARKER = "_COMPLETE"
M = TypeVar("M", bound=BaseModel)


# fsspec protocol -> the wavecast extra that installs its backend (pyproject.toml).
EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "http": "http",
    "https": "http",
}


def open_filesystem(uri: str, flag: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec's filesystem and path for `uri`, once the operator's rules allow it; a missing
    backend or unknown scheme is bad input."""
    check_location(uri, flag)
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    try:
        filesystem, path = fsspec.core.url_to_fs(uri)
    except ImportError as exc:
        extra = EXTRAS.get(protocol)
        fix = f"pip install 'wavecast[{extra}]'" if extra else "install its fsspec backend"
        raise InvalidInputError(
            f"{flag} {uri}: {protocol}:// needs a package ({exc}): {fix}"
        ) from None
    except ValueError as exc:
        raise InvalidInputError(f"{flag} {uri}: {exc}") from None
    if isinstance(filesystem, LocalFileSystem):  # judged again as fsspec reads it: file:/x is /x
        check_inside(path, uri, flag)
    return filesystem, path


class DataDir:
    """A root on any fsspec filesystem, with atomic publishing of files and directories."""

    def __init__(self, uri: str) -> None:
        self.fs, root = open_filesystem(uri, "--data-dir")
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = str(Path(root).resolve()) if self.is_local else root.rstrip("/")

    def __repr__(self) -> str:
        return f"DataDir({self.uri()!r})"

    def path(self, *parts: str) -> str:
        """Where `parts` are; on a local disk, refused when that is outside the root."""
        joined = "/".join([self.root, *parts])
        if self.is_local and (escape := self.escape_of(parts)):
            raise InvalidInputError(
                f"{escape}: leads out of the data dir {self.root}; nothing under a data dir "
                "may lead outside it (a symlink or '..'): make it a plain directory"
            )
        return joined

    def escape_of(self, parts: tuple[str, ...]) -> str | None:
        """The first path under the root that leads outside it, or None.

        One lstat per name, a full resolution only of a link or '..': it runs on every path.
        """
        prefix, exists = self.root, True
        for name in (name for part in parts for name in part.split("/")):
            prefix = f"{prefix}/{name}"
            leads = name == ".."
            if exists and not leads:
                try:
                    leads = stat.S_ISLNK(os.lstat(prefix).st_mode)
                except (FileNotFoundError, NotADirectoryError):
                    exists = False  # nothing below a missing name can be a link
            if leads and not is_inside(prefix, self.root):
                return prefix
        return None

    def uri(self, *parts: str) -> str:
        """A location a person or another tool can open: a plain path when local."""
        path = self.path(*parts)
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def url(self, *parts: str) -> str:
        """Like uri(), but always a URL (file:// when local), for links in Prefect's UI."""
        return Path(self.path(*parts)).as_uri() if self.is_local else self.uri(*parts)

    def exists(self, *parts: str) -> bool:
        return bool(self.fs.exists(self.path(*parts)))

    def is_complete(self, *parts: str) -> bool:
        return self.exists(*parts, COMPLETE_MARKER)

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open(self.path(*parts), "rb") as handle:
            return bytes(handle.read())

    def completed_record(self, kind: type[M], *parts: str) -> M | None:
        """A record file of a complete directory, or None: what a stage reuses instead of
        recomputing when its content-addressed output is already there."""
        if not self.is_complete(*parts[:-1]) or not self.exists(*parts):
            return None
        try:
            return kind.model_validate_json(self.read_bytes(*parts), context=STORED_RECORD)
        except ValidationError:
            return None

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_bytes(*parts))

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Replace a file atomically: readers see the old bytes or the new, never a mix."""
        target = self.path(*parts)
        staging = staging_path(target)
        parent = self.fs._parent(target)
        self.fs.makedirs(parent, exist_ok=True)
        try:
            if self.is_local:
                sweep_staging(parent)
                write_local(data, staging, target)
            else:
                with self.fs.open(staging, "wb") as handle:
                    handle.write(data)
                self.fs.mv(staging, target)
        except BaseException:
            with contextlib.suppress(OSError):  # best effort: the original error matters
                self.fs.rm(staging)
            raise

    @contextlib.contextmanager
    def staged_dir(self, *parts: str) -> Iterator[Path]:
        """Yield a local directory to fill; on success it replaces `parts` as one complete unit."""
        target = self.path(*parts)
        parent = self.fs._parent(target)
        self.fs.makedirs(parent, exist_ok=True)
        with contextlib.ExitStack() as stack:
            if self.is_local:
                sweep_staging(parent)
                local = Path(staging_path(target))
                local.mkdir()
                stack.enter_context(held(str(local)))
            else:
                local = Path(tempfile.mkdtemp(prefix="wavecast-"))
            try:
                yield local
                (local / COMPLETE_MARKER).write_text("complete\n")
                self._move_into_place(local, target)
            finally:
                shutil.rmtree(local, ignore_errors=True)

    def _move_into_place(self, local: Path, target: str) -> None:
        if self.is_local:
            retire_local(local, target)
            return
        # Object stores have no atomic rename: the marker, uploaded last, is the commit point.
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)
        marker = local / COMPLETE_MARKER
        marker_bytes = marker.read_bytes()
        marker.unlink()
        self.fs.put(str(local), target, recursive=True)
        self.write_bytes(marker_bytes, *self._relative(target), COMPLETE_MARKER)

    def check_listed(self, paths: list[str]) -> None:
        """Refuse files a reader listed under the root (pyarrow's dataset discovery) when one
        leads outside it: a symlink planted among them would be followed when it is read."""
        if self.is_local:
            for path in paths:
                self.path(*self._relative(path))

    def _relative(self, path: str) -> tuple[str, ...]:
        return tuple(path[len(self.root) :].strip("/").split("/"))

    def copy_to_local(self, local_dir: Path, *parts: str) -> Path:
        """Copy one stored file into a local directory (a staging area), keeping its name."""
        target = local_dir / parts[-1]
        if self.is_local:
            shutil.copy2(self.path(*parts), target)
        else:
            self.fs.get(self.path(*parts), str(target))
        return target

    def link_to_local(self, local_dir: Path, *parts: str) -> Path:
        """Like copy_to_local, but a hard link where the file and `local_dir` share a local
        filesystem: a panel's versions of its one global network (~3 MB each, 20,000 of them)
        then share its bytes instead of writing ~60 GB of copies. Files here are replaced by
        rename, never rewritten in place, so a linked copy never changes under a version."""
        if self.is_local:
            try:
                target = local_dir / parts[-1]
                os.link(self.path(*parts), target)
                return target
            except OSError:  # another filesystem, or one without hard links
                pass
        return self.copy_to_local(local_dir, *parts)

    def list_dir(self, *parts: str) -> list[str]:
        """Names directly under `parts`; empty when it does not exist."""
        if not self.exists(*parts):
            return []
        return sorted(
            p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.path(*parts), detail=False)
        )

    @contextlib.contextmanager
    def local_file(self, *parts: str) -> Iterator[Path]:
        """A local path to read a file from, downloading it first when the store is remote."""
        if self.is_local:
            yield Path(self.path(*parts))
            return
        with tempfile.TemporaryDirectory(prefix="wavecast-") as tmp:
            local = Path(tmp) / parts[-1]
            self.fs.get(self.path(*parts), str(local))
            yield local
