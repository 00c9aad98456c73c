"""The model registry under <data-dir>/models: versions, the champion, and its promotion log.

models/<version>/          complete version directories (model.keras, metrics.json, plots,
                           manifest.json); a version appears only whole
models/champion.json       the serving model, replaced atomically
models/promotions.jsonl    one JSON line per champion change, never edited

A version serves only if `servable` loads it: champion decisions, forecasts, promote and
rollback all ask it, so a damaged version is "no usable champion" everywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError

from wavecast.confinement import STORED_RECORD
from wavecast.errors import InvalidInputError, UnusableVersionError, unusable
from wavecast.forecasters.forecaster import Forecaster
from wavecast.forecasters.kinds import load_served
from wavecast.gate import Decision
from wavecast.metrics import Metrics
from wavecast.records import Action, ChampionRecord, Manifest, PromotionEvent, VersionRow
from wavecast.storage import DataDir

R = TypeVar("R", bound=BaseModel)
LOG = logging.getLogger(__name__)

MODELS = "models"
CHAMPION_FILE = "champion.json"
MANIFEST_FILE = "manifest.json"
PROMOTIONS_FILE = "promotions.jsonl"
DECISION_FILE = "decision.json"
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


def read_record(store: DataDir, kind: type[R], *parts: str) -> R | None:
    """A record file, or None when it is missing or damaged (logged): readers carry on."""
    if not store.exists(*parts):
        return None
    try:
        return kind.model_validate_json(store.read_bytes(*parts), context=STORED_RECORD)
    except (ValidationError, UnicodeDecodeError, OSError) as exc:
        LOG.warning("ignoring damaged %s: %s", store.uri(*parts), one_line(exc))
        return None


def one_line(error: Exception) -> str:
    """An error's first line as a sentence: one without a message (StopIteration, a bare
    assert) is named as the unexpected fault it is, never as a class name alone."""
    if str(error).strip():
        return str(error).strip().splitlines()[0]
    return (
        f"an unexpected {type(error).__name__} with no message (a wavecast bug: please report it)"
    )


def read_manifest(store: DataDir, version: str) -> Manifest | None:
    return read_record(store, Manifest, MODELS, version, MANIFEST_FILE)


class Servable(NamedTuple):
    """A version that can serve: its manifest and its forecaster, loaded."""

    manifest: Manifest
    forecaster: Forecaster


def servable(store: DataDir, version: str, manifest: Manifest | None = None) -> Servable:
    """The version's forecaster, loaded and tried the way it serves, or UnusableVersionError
    saying why: the one test of "usable" that retrain, forecast, promote and rollback share.

    The reason names the file and what was expected, never what the file holds. `manifest`:
    the version's, when the caller has just read it.
    """
    manifest = manifest or read_manifest(store, version)
    if manifest is None:
        raise unusable(version, f"{MANIFEST_FILE} missing or damaged")
    return Servable(manifest, load_served(store, (MODELS, version), manifest))


def read_champion(store: DataDir) -> ChampionRecord | None:
    """champion.json; if it is damaged, the last champion the promotion log names instead."""
    champion = read_record(store, ChampionRecord, MODELS, CHAMPION_FILE)
    if champion is not None or not store.exists(MODELS, CHAMPION_FILE):
        return champion
    events = read_promotions(store)
    stack = champion_stack(events)
    if not stack:
        return None
    last = next(e for e in reversed(events) if e.version == stack[-1])
    LOG.warning("champion taken from %s: %s", PROMOTIONS_FILE, last.version)
    return ChampionRecord(version=last.version, since=last.when, metrics=last.metrics)


def read_promotions(store: DataDir) -> list[PromotionEvent]:
    """The promotion log; a damaged line (a torn write, an edit) is skipped and logged."""
    if not store.exists(MODELS, PROMOTIONS_FILE):
        return []
    events = []
    lines = store.read_bytes(MODELS, PROMOTIONS_FILE).decode(errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(PromotionEvent.model_validate_json(line))
        except ValidationError as exc:
            LOG.warning("ignoring line %d of %s: %s", number, PROMOTIONS_FILE, one_line(exc))
    return events


def record_champion(
    store: DataDir, version: str, metrics: Metrics, action: Action, reason: str
) -> ChampionRecord:
    """Make `version` the champion and log why; both files are replaced atomically.

    The log is rewritten from its readable lines, so a damaged line is dropped, not kept.
    """
    previous = read_champion(store)
    when = utc_now()
    event = PromotionEvent(
        when=when,
        action=action,
        version=version,
        replaced=previous.version if previous else None,
        reason=reason,
        metrics=metrics,
    )
    lines = [e.model_dump_json() for e in (*read_promotions(store), event)]
    store.write_bytes("".join(f"{line}\n" for line in lines).encode(), MODELS, PROMOTIONS_FILE)
    champion = ChampionRecord(version=version, since=when, metrics=metrics)
    store.write_bytes(champion.model_dump_json(indent=2).encode(), MODELS, CHAMPION_FILE)
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
    if champion and champion.version == version:
        return False
    if store.exists(MODELS, version):
        store.fs.rm(store.path(MODELS, version), recursive=True)
    return True


def champion_stack(events: list[PromotionEvent]) -> list[str]:
    """Replay the log: promotions push a champion, rollbacks pop back to the one before."""
    stack: list[str] = []
    for event in events:
        if event.action == "rollback" and stack:
            stack.pop()
        if event.action != "rollback" or not stack or stack[-1] != event.version:
            stack.append(event.version)
    return stack


def version_rows(store: DataDir) -> list[VersionRow]:
    """One row per complete version, oldest first; a damaged one is listed with its problem."""
    champion = read_champion(store)
    return [
        version_row(store, version, bool(champion and champion.version == version))
        for version in list_versions(store)
    ]


def champion_row(store: DataDir) -> VersionRow | None:
    """The champion's row of version_rows, None without a champion."""
    champion = read_champion(store)
    return version_row(store, champion.version, True) if champion else None


def version_row(store: DataDir, version: str, is_champion: bool) -> VersionRow:
    """A version's scores on its own test windows, and the champion it was gated against with
    that champion's MASE on the same windows (from its decision.json, when re-scored)."""
    manifest = read_manifest(store, version)
    if manifest is None:
        problem = f"{MANIFEST_FILE} missing or damaged"
        return VersionRow(version=version, champion=is_champion, problem=problem)
    decision = read_record(store, Decision, MODELS, version, DECISION_FILE)
    rescored = decision.champion_rescored if decision else None
    return VersionRow(
        version=version,
        champion=is_champion,
        mase=manifest.metrics.mase,
        smape=manifest.metrics.smape,
        coverage=manifest.published.coverage if manifest.published else {},
        mse=manifest.metrics.mse,
        persistence_mse=manifest.baselines["persistence"].mse,
        gated_against=decision.compared_with if decision else None,
        champion_mase=rescored.mase if rescored else None,
        dataset=manifest.dataset.dataset_id,
    )


def describe_version(store: DataDir, version: str) -> dict[str, Any]:
    """Everything recorded about one version: lineage, scores and the gate's decision."""
    version = checked_version(store, version)
    champion = read_champion(store)
    details: dict[str, Any] = {"version": version, "path": store.uri(MODELS, version)}
    details["champion"] = bool(champion and champion.version == version)
    for name, kind in ((MANIFEST_FILE, Manifest), (DECISION_FILE, Decision)):
        record = read_record(store, kind, MODELS, version, name)
        key = name.removesuffix(".json")
        details[key] = record.model_dump(mode="json") if record else f"{name} missing or damaged"
    return details


def version_metrics(store: DataDir, version: str) -> Metrics:
    """A version's test scores, for the promotion log: NaN when its manifest is damaged."""
    manifest = read_manifest(store, version)
    nan = float("nan")
    return manifest.metrics if manifest else Metrics(mse=nan, rmse=nan, mae=nan)


def promote_manually(store: DataDir, version: str, reason: str) -> ChampionRecord:
    """A person overrides the gate, never with a version that cannot serve; the log keeps who
    replaced whom and why."""
    with registry_lock(store):
        version = checked_version(store, version)
        try:
            servable(store, version)
        except UnusableVersionError as exc:
            raise UnusableVersionError(f"not promoted: {exc}") from None
        return record_champion(store, version, version_metrics(store, version), "manual", reason)


def roll_back(store: DataDir, reason: str = "rollback requested") -> ChampionRecord:
    """Return to the champion before the current one, if it can still serve."""
    with registry_lock(store):
        stack = champion_stack(read_promotions(store))
        if len(stack) < 2:
            raise InvalidInputError(f"no earlier champion to roll back to in {store.uri(MODELS)}")
        version = checked_version(store, stack[-2])
        try:
            servable(store, version)
        except UnusableVersionError as exc:
            raise UnusableVersionError(
                f"not rolled back: {exc}; promote a version that can (wavecast models list)"
            ) from None
        return record_champion(store, version, version_metrics(store, version), "rollback", reason)
