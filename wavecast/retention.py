"""Retention: what a data dir keeps of its registry and its stored files; the rest is swept.

Each registry (a data dir's models/, and each panel series' own under series/<id>/) keeps
- its champion, and the champion before it (what `wavecast models rollback` returns to);
- its newest `keep_versions` versions;
- every version a stored forecast names (forecasts/series=<id>/<version>-<origin>.parquet,
  in the data dir or in its panel's): the monitor scores forecasts against actuals later.

The content-addressed stage outputs are caches any run can rebuild; a data dir keeps
- raw/<id> of every kept version: the values its model was trained on (small);
- windows/<id>, training/<id> and evaluations/<id> of its newest version only: what an
  unchanged rerun reuses (a version holds its own copy of everything it serves);
- a panel's global/<id> of each series' newest version and champion: a retrain of one series
  (a drift event) scores its champion's network again;
- sources/frame-*.parquet (frames given to the Python API) a kept version was trained on.

Everything else goes once it is `min_age_s` old, with the Prefect cache records of outputs
that are gone and the staging entries killed writers left (staging.sweep_staging's rule on
a local disk; by age alone on an object store, where nothing can be held). Nothing younger
is touched: a retrain running beside the sweep may be writing it or about to publish it.
Versions go under the registry lock that publishing takes. A registry whose champion cannot
be read keeps every version; a data dir holding a kept version whose manifest cannot be read
keeps its outputs, and then no frame or panel network is swept. This module decides what is
kept; wavecast.sweep removes the rest and reports it.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field

from wavecast.api import SOURCES
from wavecast.cache_keys import CACHE_RECORD, RESULTS_DIR, cache_record_name
from wavecast.config import RetentionSpec
from wavecast.errors import InvalidInputError
from wavecast.forecasts_store import FORECASTS, PARTITION
from wavecast.home import SeriesHome
from wavecast.registry import (
    CHAMPION_FILE,
    MODELS,
    VERSION_PATTERN,
    champion_stack,
    list_versions,
    one_line,
    read_champion,
    read_manifest,
    read_promotions,
    registry_lock,
)
from wavecast.series_dirs import SERIES_DIR, slug_key, stored_key
from wavecast.staging import STAGING_TAG, is_hidden
from wavecast.storage import DataDir
from wavecast.sweep import PruneReport, Sweep

RAW, GLOBAL = "raw", "global"
CACHED_STAGES = ("windows", "training", "evaluations")  # kept for the newest version only
FRAME = re.compile(r"frame-[0-9a-f]{16}\.parquet")
FORECAST_FILE = re.compile(r"(\d{8}T\d{6}Z-[0-9a-f]{8})-[0-9a-f]{12}\.parquet")
NOT_KEPT = "not the champion or the one before it, not among the newest {keep}, in no forecast"


def kept_versions(
    versions: list[str], champion: str | None, stack: list[str], named: set[str], keep: int
) -> set[str]:
    """The versions a registry keeps (the module's rules), of its complete `versions`, oldest
    first; `stack`: its champion stack (registry.champion_stack), `named`: every version a
    stored forecast names."""
    kept = set(versions[-keep:]) | (set(versions) & named)
    if champion is not None:
        kept.add(champion)
    if len(stack) >= 2:
        kept.add(stack[-2])
    return kept


@dataclass
class References:
    """What a data dir's kept versions still use of its stored files."""

    raw: set[str] = field(default_factory=set)
    cached: set[str] = field(default_factory=set)  # windows and training ids
    evaluations: set[str] = field(default_factory=set)  # the 8 hex digits a version ends with
    networks: set[str] = field(default_factory=set)  # a panel's global/<id>
    frames: set[str] = field(default_factory=set)  # sources/frame-*.parquet
    complete: bool = True  # False: a kept version's manifest cannot be read

    def keeps(self, stage: str, name: str) -> bool:
        """Whether a content-addressed output, `stage`/`name`, is still used."""
        if stage == RAW:
            return name in self.raw
        if stage == "evaluations":
            return name[:8] in self.evaluations
        return name in self.cached


def prune(
    root: DataDir, policy: RetentionSpec, dry_run: bool = False, now: float | None = None
) -> PruneReport:
    """Apply the retention rules to a data dir: a single series' or a panel's (with every
    series under it); `dry_run` removes nothing and reports what would go."""
    sweep = Sweep(root, policy, dry_run, time.time() if now is None else now)
    stores = data_dirs(sweep)
    named = set().union(*(forecast_versions(store) for store in stores))
    total = References()
    kept = 0
    for store in stores:
        if store.exists(MODELS):
            with contextlib.nullcontext() if dry_run else registry_lock(store):
                count, refs = prune_registry(sweep, store, named)
                sweep_outputs(sweep, store, refs)
        else:
            count, refs = 0, References()
            sweep_outputs(sweep, store, refs)
        kept += count
        merge(total, refs)
    for store in stores:
        sweep_shared(sweep, store, total)
        sweep_cache(sweep, store)
        sweep_staging_left(sweep, store)
    return sweep.report(kept)


def data_dirs(sweep: Sweep) -> list[DataDir]:
    """The root and, for a panel, each series' own data dir under it."""
    stores = [sweep.root]
    for name in sweep.root.list_dir(SERIES_DIR):
        if is_hidden(name):
            continue
        try:
            stores.append(DataDir(sweep.root.uri(SERIES_DIR, name)))
        except InvalidInputError as exc:
            sweep.problems.append(f"{SERIES_DIR}/{name}: left alone: {one_line(exc)}")
    return stores


def forecast_versions(store: DataDir) -> set[str]:
    """Versions its stored forecasts name: in its forecasts/, and for a panel series' own
    data dir, in its panel's partition of it (forecasting.forecasts_home)."""
    partitions = [
        (store, (FORECASTS, name))
        for name in store.list_dir(FORECASTS)
        if name.startswith(PARTITION)
    ]
    panel = panel_of(store)
    if panel is not None:
        slug = store.root.rstrip("/").rsplit("/", 1)[-1]
        partitions.append((panel, (FORECASTS, f"{PARTITION}{slug}")))
    named = set()
    for owner, parts in partitions:
        for name in owner.list_dir(*parts):
            match = FORECAST_FILE.fullmatch(name)
            if match:
                named.add(match[1])
    return named


def panel_of(store: DataDir) -> DataDir | None:
    """The panel data dir whose series this one is, if it is one."""
    slug = store.root.rstrip("/").rsplit("/", 1)[-1]
    key = slug_key(slug)
    key = key if key is not None else stored_key(store)
    home = SeriesHome.of_dir(store, key)
    return home.root_store if home.key is not None else None


def prune_registry(sweep: Sweep, store: DataDir, named: set[str]) -> tuple[int, References]:
    """Remove the versions the rules do not keep (under the registry lock); how many are
    kept and what they use."""
    versions = list_versions(store)
    champion = read_champion(store)
    keep = set(versions)
    if champion is None and store.exists(MODELS, CHAMPION_FILE):
        problem = f"{sweep.relative(store.path(MODELS, CHAMPION_FILE))} cannot be read"
        sweep.problems.append(f"{problem}: every version of that registry is kept")
    else:
        stack = champion_stack(read_promotions(store))
        current = champion.version if champion else None
        keep = kept_versions(versions, current, stack, named, sweep.policy.keep_versions)
    why = NOT_KEPT.format(keep=sweep.policy.keep_versions)
    for name in store.list_dir(MODELS):
        if VERSION_PATTERN.match(name) and name not in keep:
            sweep.drop(store, (MODELS, name), why, sweep.policy.min_age_s)
    kept = [v for v in versions if v in keep]
    return len(kept), references(store, kept, champion.version if champion else None)


def references(store: DataDir, kept: list[str], champion: str | None) -> References:
    """What the kept versions (oldest first) use: every one its raw copy and source frame,
    the newest its windows, training and evaluation, the newest and the champion their
    panel network."""
    refs = References()
    for version in kept:
        manifest = read_manifest(store, version)
        if manifest is None:
            refs.complete = False
            continue
        refs.raw.add(manifest.series.series_id)
        for source in (manifest.config.series.source, manifest.series.source):
            name = source.rstrip("/").rsplit("/", 1)[-1]
            if f"/{SOURCES}/" in source and FRAME.fullmatch(name):
                refs.frames.add(name)
        training = manifest.training
        newest = version == kept[-1]
        if training is not None and training.shared and (newest or version == champion):
            refs.networks.add(training.train_id)
        if newest:
            refs.cached.add(manifest.dataset.dataset_id)
            refs.evaluations.add(version[-8:])
            if training is not None and not training.shared:
                refs.cached.add(training.train_id)
    return refs


def merge(total: References, refs: References) -> None:
    total.networks |= refs.networks
    total.frames |= refs.frames
    total.complete = total.complete and refs.complete


def sweep_outputs(sweep: Sweep, store: DataDir, refs: References) -> None:
    """Remove the stage outputs no kept version uses; all kept when some are unknown."""
    if not refs.complete:
        sweep.problems.append(
            f"{sweep.relative(store.path(MODELS))}: a kept version's manifest cannot be read: "
            "the stage outputs of that data dir are kept"
        )
        return
    for stage in (RAW, *CACHED_STAGES):
        why = "no kept version was trained on it" if stage == RAW else "not the newest version's"
        for name in store.list_dir(stage):
            if not is_hidden(name) and not refs.keeps(stage, name):
                sweep.drop(store, (stage, name), why, sweep.policy.min_age_s)


def sweep_shared(sweep: Sweep, store: DataDir, total: References) -> None:
    """Remove the source frames and panel networks no kept version of any series uses."""
    if not total.complete:
        return
    for name in store.list_dir(SOURCES):
        if FRAME.fullmatch(name) and name not in total.frames:
            why = "no kept version was trained on this frame"
            sweep.drop(store, (SOURCES, name), why, sweep.policy.min_age_s)
    for name in store.list_dir(GLOBAL):
        if not is_hidden(name) and name not in total.networks:
            why = "no series' newest version or champion scored this network"
            sweep.drop(store, (GLOBAL, name), why, sweep.policy.min_age_s)


def sweep_cache(sweep: Sweep, store: DataDir) -> None:
    """Remove the cache records (tasks.prefect_support) of outputs that are gone: each is
    named by where its output lives, so a record no output here is named by is never read."""
    matches = [CACHE_RECORD.fullmatch(name) for name in store.list_dir(RESULTS_DIR)]
    records = [match for match in matches if match is not None]
    live = {
        cache_record_name(store, stage, name)
        for stage in {record[1] for record in records}
        for name in store.list_dir(stage)
        if store.path(stage, name) not in sweep.gone
    }
    for name in (record[0] for record in records):
        if name not in live:
            why = "a cache record of an output that is gone"
            sweep.drop(store, (RESULTS_DIR, name), why, sweep.policy.min_age_s)


def sweep_staging_left(sweep: Sweep, store: DataDir) -> None:
    """Remove what killed writers left (staging names), where writers stage: the data dir,
    the directories in it, its versions' and its forecasts' partitions."""
    places: list[tuple[str, ...]] = [()]
    places += [(name,) for name in store.list_dir() if not is_hidden(name)]
    for parent in (MODELS, FORECASTS, "monitoring"):
        places += [(parent, name) for name in store.list_dir(parent) if not is_hidden(name)]
    for parts in places:
        for name in store.list_dir(*parts):
            if STAGING_TAG in name:
                sweep.drop_staging(store, (*parts, name))
