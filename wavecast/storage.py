"""The data directory, addressed by path or fsspec URI, where nothing is ever half-written.

Readers trust a directory only when it carries a completion marker, and writers build a
directory elsewhere and move it into place, so a crash at any moment leaves either the old
state or the new one. On a local disk the move is an atomic rename.

A writer stages beside its target (one filesystem, so the rename stays atomic) under a hidden
name, `.<name>.staging-<uuid>`, which dataset readers skip (pyarrow ignores names starting
with "." or "_"), and holds a shared flock on it while it lives: a later writer into the same
directory removes the staging entries that are old and that nobody holds, what `kill -9` left.
On a local disk, no path under the root may lead out of it through a symlink.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import fsspec
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ValidationError

from wavecast.confinement import STORED_RECORD, check_inside, check_location, is_inside
from wavecast.errors import InvalidInputError

# The version of what each cached stage writes. Bump a stage's number when a change alters
# its output for the same inputs (a new candidate or rule, another architecture, a file
# layout): its cache keys change, and so do those of the stages reading its output by id.
# Editing a docstring or help text, or moving code between modules, changes no key, so no
# scheduled run retrains every series because of a refactor.
STAGE_VERSIONS = {"raw": 1, "windows": 1, "train": 1, "global_network": 2, "evaluate": 2}
COMPLETE_MARKER = "_COMPLETE"
STAGING_TAG = ".staging-"  # in every staging name: hidden ones, and earlier versions' visible ones
HIDDEN_PREFIXES = (".", "_")  # names pyarrow's dataset discovery skips
# A staging entry older than this that no live writer holds was left by a killed one. Writers
# of earlier versions held no lock: this long without a write, they are gone too.
STALE_AFTER_S = 600.0
RESULTS_DIR = "cache"  # a local data dir's Prefect results of its cached stages
WRITE_CHUNK = 1 << 20  # os.write may take less than it is given, and at most ~2 GiB
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


def stable_hash(*parts: str | bytes, length: int = 16) -> str:
    """Hex digest of the parts, each length-prefixed so ("ab", "c") differs from ("a", "bc")."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:length]


def cache_record_name(data_dir: DataDir, *parts: str) -> str:
    """The cache key, and the name of the result file under RESULTS_DIR, of the cached stage
    whose output is at `parts`: named by where the output lives (tasks.prefect_support)."""
    return f"wavecast-{parts[0]}-{stable_hash(data_dir.uri(*parts), length=32)}"


def cache_version(stage: str) -> str:
    """A cached stage's explicit version, part of every cache key the stage computes."""
    return f"{stage}-v{STAGE_VERSIONS[stage]}"


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


SERIES_DIR = "series"  # a panel's data dir holds each series' own data dir under it
ID_FILE = "series-id.json"  # beside a hashed directory name: the id it stands for
MAX_NAME = 128  # characters of a directory name that is the id itself, percent-encoded
HASHED_PREFIX = 48  # characters of the id kept, encoded, before a hashed name's hash


def encoded_id(key: str) -> str:
    """The id percent-encoded, dots too, so it is never a path trick: ASCII, no `/`, no `.`."""
    return quote(key, safe="", errors="surrogatepass").replace(".", "%2E")


def series_slug(key: str) -> str:
    """A directory name for any id, the same in every series dir and hive partition.

    An id whose encoding is 1-128 characters is named by it, as it always was, so existing
    data dirs keep their names. A longer (or empty) one would exceed what file systems allow
    (255 bytes, a CJK character encodes to 9): it is named by its first characters, a dot and
    32 hex digits of its SHA-256. An encoding never holds a dot, so the two kinds never meet.
    """
    encoded = encoded_id(key)
    if 0 < len(encoded) <= MAX_NAME:
        return encoded
    prefix = ""
    for char in key:  # whole characters: a partition's decoded value stays valid UTF-8
        piece = encoded_id(char)
        if len(prefix) + len(piece) > HASHED_PREFIX:
            break
        prefix += piece
    digest = hashlib.sha256(key.encode(errors="surrogatepass")).hexdigest()[:32]
    return f"{prefix or '_'}.{digest}"


def slug_key(slug: str) -> str | None:
    """The id a directory name spells, or None for a hashed name (its id is stored beside)."""
    return None if "." in slug else unquote(slug, errors="surrogatepass")


def claim_series_dir(own: DataDir, key: str) -> DataDir:
    """Series `key`'s own data dir, with its id stored beside a hashed name so listing the
    panel gives the ids back; refused when that directory is another id's."""
    if slug_key(series_slug(key)) is None:
        if not own.exists(ID_FILE):
            own.write_bytes(json.dumps({"id": key}).encode(), ID_FILE)
        elif stored_key(own) != key:
            raise InvalidInputError(
                f"{own.uri()}: its {ID_FILE} does not name this series: move that directory away"
            )
    return own


def stored_key(series_dir: DataDir) -> str | None:
    """The id in a series dir's ID_FILE; None when it is missing or damaged."""
    try:
        key = series_dir.read_json(ID_FILE).get("id")
    except (OSError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) else None


def series_dir_keys(store: DataDir) -> list[str]:
    """The ids of the series a panel data dir holds, in their directories' order; a hashed
    directory without its id (a series stored while this ran, or damaged) is left out."""
    keys = []
    for name in store.list_dir(SERIES_DIR):
        key = slug_key(name)
        if key is None:
            key = stored_key(DataDir(store.uri(SERIES_DIR, name)))
        if key is not None and series_slug(key) == name:
            keys.append(key)
    return keys


def panel_root_of(own: DataDir, key: str) -> str | None:
    """The panel data dir in which `own` is series `key`'s own data dir, if it is one. Told
    from the path's last two names alone: opening the candidate root would be refused when it
    lies outside the operator's allowed roots (any data dir directly inside one, such as a
    worker's data/), and every caller asks about a data dir that may not be a series'."""
    root, *names = own.uri().rsplit("/", 2)
    return root if root and names == [SERIES_DIR, series_slug(key)] else None
