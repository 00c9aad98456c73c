"""The model registry under <data-dir>/models: versions, the champion, and its promotion log.

models/<version>/          complete version directories (model.keras, metrics.json, plots,
                           manifest.json); a version appears only whole
models/champion.json       the serving model, replaced atomically
models/promotions.jsonl    one JSON line per champion change, never edited
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec

from wavecast.errors import InvalidInputError
from wavecast.storage import DataDir, code_fingerprint

if TYPE_CHECKING:
    from wavecast.config import RetrainConfig, SeriesSpec

MODELS = "models"
CHAMPION_FILE = "champion.json"
MANIFEST_FILE = "manifest.json"
PROMOTIONS_FILE = "promotions.jsonl"
LOCK_FILE = ".lock"
VERSION_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def version_name(when: datetime, train_id: str) -> str:
    """Sortable by time, and naming the training it came from."""
    return f"{when.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{train_id[:8]}"


def list_versions(store: DataDir) -> list[str]:
    """Complete versions, oldest first; staging leftovers and stray files are ignored."""
    names = [n for n in store.list_dir(MODELS) if VERSION_PATTERN.match(n)]
    return [n for n in names if store.is_complete(MODELS, n)]


def find_version_of(store: DataDir, train_id: str) -> str | None:
    """The version already published from this training, if any."""
    matches = [v for v in list_versions(store) if v.endswith(f"-{train_id[:8]}")]
    return matches[-1] if matches else None


def checked_version(store: DataDir, version: str) -> str:
    """A user-supplied version name, only if it names a complete version (no path tricks)."""
    if not VERSION_PATTERN.match(version) or version not in list_versions(store):
        raise InvalidInputError(f"no model version {version!r} in {store.uri(MODELS)}")
    return version


def read_champion(store: DataDir) -> dict[str, Any] | None:
    if not store.exists(MODELS, CHAMPION_FILE):
        return None
    champion: dict[str, Any] = store.read_json(MODELS, CHAMPION_FILE)
    return champion


def read_promotions(store: DataDir) -> list[dict[str, Any]]:
    if not store.exists(MODELS, PROMOTIONS_FILE):
        return []
    lines = store.read_bytes(MODELS, PROMOTIONS_FILE).decode().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def record_champion(
    store: DataDir, version: str, metrics: dict[str, Any], action: str, reason: str
) -> dict[str, Any]:
    """Make `version` the champion and log why; both files are replaced atomically."""
    previous = read_champion(store)
    when = utc_now().isoformat()
    event = {
        "when": when,
        "action": action,
        "version": version,
        "replaced": previous["version"] if previous else None,
        "reason": reason,
        "metrics": metrics,
    }
    log = (
        store.read_bytes(MODELS, PROMOTIONS_FILE) if store.exists(MODELS, PROMOTIONS_FILE) else b""
    )
    store.write_bytes(
        log + json.dumps(event, sort_keys=True).encode() + b"\n", MODELS, PROMOTIONS_FILE
    )
    champion = {"version": version, "since": when, "metrics": metrics}
    store.write_json(champion, MODELS, CHAMPION_FILE)
    return champion


@contextlib.contextmanager
def registry_lock(store: DataDir) -> Iterator[None]:
    """Serialize champion decisions between concurrent runs on one data directory.

    A local registry takes an exclusive flock; object stores have no locks, so there the
    deployment's concurrency limit of 1 is what keeps runs apart.
    """
    if not store.is_local:
        yield
        return
    store.fs.makedirs(store.path(MODELS), exist_ok=True)
    with Path(store.path(MODELS, LOCK_FILE)).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_version(store: DataDir, version: str) -> bool:
    """Delete a version that never became champion (a rolled-back publish); never the champion."""
    champion = read_champion(store)
    if champion and champion["version"] == version:
        return False
    if store.exists(MODELS, version):
        store.fs.rm(store.path(MODELS, version), recursive=True)
    return True


def champion_stack(events: list[dict[str, Any]]) -> list[str]:
    """Replay the log: promotions push a champion, rollbacks pop back to the one before."""
    stack: list[str] = []
    for event in events:
        if event["action"] == "rollback":
            stack.pop()
        else:
            stack.append(event["version"])
    return stack


def version_rows(store: DataDir) -> list[dict[str, Any]]:
    """One row per complete version, oldest first, with its test scores and champion mark."""
    champion = read_champion(store)
    rows = []
    for version in list_versions(store):
        manifest = store.read_json(MODELS, version, MANIFEST_FILE)
        rows.append(
            {
                "version": version,
                "champion": bool(champion and champion["version"] == version),
                "mse": manifest["metrics"]["mse"],
                "persistence_mse": manifest["baselines"]["persistence"]["mse"],
                "dataset": manifest["dataset"]["dataset_id"],
                "created": manifest["created"],
            }
        )
    return rows


def describe_version(store: DataDir, version: str) -> dict[str, Any]:
    """Everything recorded about one version: lineage, scores and the gate's decision."""
    version = checked_version(store, version)
    details: dict[str, Any] = {"version": version, "path": store.uri(MODELS, version)}
    details["manifest"] = store.read_json(MODELS, version, MANIFEST_FILE)
    if store.exists(MODELS, version, "decision.json"):
        details["decision"] = store.read_json(MODELS, version, "decision.json")
    champion = read_champion(store)
    details["champion"] = bool(champion and champion["version"] == version)
    return details


def promote_manually(store: DataDir, version: str, reason: str) -> dict[str, Any]:
    """A person overrides the gate; the log keeps who replaced whom and why."""
    with registry_lock(store):
        version = checked_version(store, version)
        metrics = store.read_json(MODELS, version, MANIFEST_FILE)["metrics"]
        return record_champion(store, version, metrics, "manual", reason)


def roll_back(store: DataDir, reason: str = "rollback requested") -> dict[str, Any]:
    """Return to the champion before the current one."""
    with registry_lock(store):
        stack = champion_stack(read_promotions(store))
        if len(stack) < 2:
            raise InvalidInputError(f"no earlier champion to roll back to in {store.uri(MODELS)}")
        version = checked_version(store, stack[-2])
        metrics = store.read_json(MODELS, version, MANIFEST_FILE)["metrics"]
        return record_champion(store, version, metrics, "rollback", reason)
