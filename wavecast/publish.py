"""Publish a candidate into the registry, gate it against the champion, and report."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.backtest import block_origins
from wavecast.cache_keys import STAGE_VERSIONS
from wavecast.candidates import targets_at
from wavecast.config import RetrainConfig, WindowSpec
from wavecast.confinement import STORED_RECORD
from wavecast.evaluate import (
    ERRORS_FILE,
    METRICS_FILE,
    PLOTS,
    SPEC_FILE,
    Evaluation,
    stored_predictions,
)
from wavecast.forecasters import kinds
from wavecast.forecasters.forecaster import Located, Sources
from wavecast.gate import SAME_WINDOWS, Decision, decide_promotion
from wavecast.generate import SeriesRef, read_series
from wavecast.home import SeriesHome
from wavecast.metrics import Metrics, regression_metrics, score_split
from wavecast.model_files import MODEL_FILE, TrainedRef, training_file
from wavecast.records import ChampionRecord, CodeLineage, Manifest, RetrainSummary
from wavecast.registry import (
    DECISION_FILE,
    LOG,
    MANIFEST_FILE,
    MODELS,
    Servable,
    UnusableVersionError,
    find_version_of,
    read_champion,
    read_manifest,
    record_champion,
    registry_lock,
    servable,
    utc_now,
    version_name,
)
from wavecast.report import render_html, render_markdown
from wavecast.storage import DataDir
from wavecast.windows import DatasetInfo, DatasetRef, head_of_split

LIBRARIES = (
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "statsforecast",
    "prefect",
    "numpy",
    "pandas",
    "pyarrow",
)
UNCHANGED = "no new data: model unchanged"


def library_versions() -> dict[str, str]:
    return dict(installed_versions())


@functools.cache
def installed_versions() -> tuple[tuple[str, str], ...]:
    """Looked up once per process (~14 ms), not once per series a panel publishes."""
    versions = []
    for name in LIBRARIES:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions)


@functools.cache
def code_revision() -> str | None:
    """The git commit of this checkout when the process asked first, when there is one: the
    code a process runs is the code it imported, whatever is checked out later."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def describe_changes(previous: Manifest | None, series: SeriesRef) -> tuple[str, ...]:
    """How today's source differs from the one the champion was trained on."""
    if previous is None:
        return ("first model in this registry",)
    before = previous.series
    if before.content_hash == series.content_hash:
        return ("same source data as the champion",)
    added = series.n_points - before.n_points
    return (
        f"source changed: {added:+d} rows ({before.n_points} -> {series.n_points}), "
        f"content hash {before.content_hash} -> {series.content_hash}",
    )


def build_manifest(
    config: RetrainConfig,
    dataset: DatasetRef,
    trained: TrainedRef | None,
    evaluation: Evaluation,
    run_id: str | None,
) -> Manifest:
    """Lineage: enough to say exactly what produced this model and to reproduce it."""
    return Manifest(
        created=utc_now(),
        flow_run_id=run_id,
        code=CodeLineage(revision=code_revision(), stage_versions=dict(STAGE_VERSIONS)),
        libraries=library_versions(),
        config=config.without_run_options(),
        series=dataset.series,
        dataset=DatasetInfo.model_validate(dataset.model_dump(exclude={"series"})),
        training=trained,
        seed=config.train.seed,
        metrics=evaluation.metrics,
        baselines=evaluation.baselines,
        published=evaluation.published,
        candidates=evaluation.candidates,
    )


class Candidate(BaseModel):
    """A version in the registry that this run staged (or found already published)."""

    model_config = ConfigDict(frozen=True)

    version: str
    created: bool


def served_file(evaluation: Evaluation) -> str:
    """The file in a version directory that says what it serves (kinds.served_file)."""
    return kinds.served_file(evaluation.published.forecaster)


def sources_of(
    store: DataDir, dataset: DatasetRef, trained: TrainedRef | None, evaluation: Evaluation
) -> Sources:
    """Where a published forecaster's files are before its version exists: its evaluation's
    spec, its training's network (the series' own, or its panel's global network), and the
    test windows with the forecasts its evaluation made of them."""
    network = None
    if trained is not None:
        network = Located(*training_file(trained, store, MODEL_FILE))

    def evaluated() -> tuple[np.ndarray, np.ndarray]:
        expected = stored_predictions(evaluation, store)
        _, test_x, _ = head_of_split(dataset, "test", store, len(expected))
        return test_x, expected

    spec = Located(store, ("evaluations", evaluation.evaluation_id, SPEC_FILE))
    return Sources(spec, network, evaluated)


def stage_version(
    config: RetrainConfig,
    home: SeriesHome,
    dataset: DatasetRef,
    trained: TrainedRef | None,
    evaluation: Evaluation,
    run_id: str | None = None,
) -> Candidate:
    """Copy the candidate into models/<version>/, which appears only complete and verified."""
    store = home.store
    with registry_lock(store):  # two runs of the same evaluation publish it once
        existing = find_version_of(store, evaluation.evaluation_id)
        if existing is not None:  # an unchanged rerun: nothing to read, copy or check
            return Candidate(version=existing, created=False)
        version = version_name(utc_now(), evaluation.evaluation_id)
        manifest = build_manifest(config, dataset, trained, evaluation, run_id)
        published = evaluation.published
        sources = sources_of(store, dataset, trained, evaluation)
        with store.staged_dir(MODELS, version) as staging:
            kinds.save_published(staging, published.forecaster, published.members, sources)
            for name in (METRICS_FILE, ERRORS_FILE, *evaluation.plots):
                store.copy_to_local(staging, "evaluations", evaluation.evaluation_id, name)
            (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    return Candidate(version=version, created=True)


def unchanged_summary(
    store: DataDir, candidate: Candidate, champion: ChampionRecord | None, **common: Any
) -> RetrainSummary:
    return RetrainSummary(
        version=candidate.version,
        model_dir=store.uri(MODELS, candidate.version),
        champion_rescored=None,
        promoted=False,
        champion=champion.version if champion else None,
        unchanged=True,
        reasons=(UNCHANGED,),
        changes=(f"same source data and configuration as version {candidate.version}",),
        report=store.uri(MODELS, candidate.version, "report.html"),
        **common,
    )


class ChampionScore(NamedTuple):
    """The champion a candidate is gated against, and how it was scored: `rescored` on the
    candidate's own test windows, else `mse` is its recorded score on its own windows and
    `windows` says why; `notes` say why a champion that cannot serve was ignored."""

    version: str | None = None
    rescored: Metrics | None = None
    mse: float | None = None
    manifest: Manifest | None = None
    notes: tuple[str, ...] = ()
    windows: str = ""


def champion_score(
    store: DataDir, champion: ChampionRecord | None, dataset: DatasetRef, scale: float | None
) -> ChampionScore:
    """The champion, if one can serve, re-scored on the candidate's test windows (MASE over
    the candidate's `scale`) whenever it forecasts their targets (other_targets), else with
    its recorded test MSE. A champion that cannot serve (registry.servable) is no champion:
    the notes say so, and the candidate is judged as a first model.
    """
    if champion is None:
        return ChampionScore()
    try:
        served = servable(store, champion.version)
    except UnusableVersionError as exc:
        note = f"champion ignored: {exc}"
        LOG.warning(note)
        return ChampionScore(manifest=read_manifest(store, champion.version), notes=(note,))
    manifest = served.manifest
    other = other_targets(manifest.dataset.spec, dataset)
    if other:
        mse = manifest.published.mse if manifest.published else manifest.metrics.mse
        windows = f"measured on its own test windows, not these ({other})"
        return ChampionScore(champion.version, None, mse, manifest, windows=windows)
    rescored = rescore(served, store, dataset, scale)
    windows = f"on the same {dataset.n_test} test windows"
    return ChampionScore(champion.version, rescored, rescored.mse, manifest, windows=windows)


def other_targets(champion: WindowSpec, dataset: DatasetRef) -> str:
    """Why a champion of `champion`'s windows cannot forecast the targets of `dataset`'s test
    windows; empty when it can (the same horizon and steps, and its inputs fit before the
    first test origin, whatever its input_len or train_fraction)."""
    spec = dataset.spec
    if (champion.horizon, champion.steps) != (spec.horizon, spec.steps):
        return (
            f"it forecasts {champion.steps} step(s) from horizon {champion.horizon}, "
            f"this version {spec.steps} from horizon {spec.horizon}"
        )
    first_origin = dataset.n_train + spec.input_len - 1
    if champion.input_len > first_origin + 1:
        return f"its windows of {champion.input_len} points start before this series does"
    return ""


def rescore(
    served: Servable, store: DataDir, dataset: DatasetRef, scale: float | None = None
) -> Metrics:
    """A stored forecaster's scores on this dataset's test targets (MASE over `scale`): on
    the dataset's stored windows when it reads those alone (a network of their length, a
    panel's through its graph traced once for all its series), else from the windows of its
    own length, or its refitted statistical models, at the same origins as the candidate's."""
    spec = dataset.spec
    reader = served.forecaster.stored_windows(spec.input_len)
    if reader is not None:
        scores, _ = score_split(dataset, store, {"champion": reader}, keep=0, scale=scale)
        return scores["champion"]
    values = read_series(dataset.series, store)
    origins = block_origins(dataset, 0)["test"]
    truth = targets_at(values, origins, spec.horizon, spec.steps)
    forecasts = served.forecaster.forecasts(values, origins, spec.horizon, spec.steps)
    return regression_metrics(truth, forecasts, scale)


def promote_candidate(
    config: RetrainConfig,
    home: SeriesHome,
    dataset: DatasetRef,
    evaluation: Evaluation,
    candidate: Candidate,
) -> RetrainSummary:
    """Gate a staged version against the champion and record the outcome, one run at a time."""
    store = home.store
    common = {
        "dataset_dir": dataset.uri,
        "dataset_id": dataset.dataset_id,
        "metrics": evaluation.metrics,
        "baselines": evaluation.baselines,
        "published": evaluation.published,
        "candidates": evaluation.candidates,
    }
    with registry_lock(store):
        champion = read_champion(store)
        if not candidate.created:
            return unchanged_summary(store, candidate, champion, **common)
        scale = evaluation.published.mase_scale
        against = champion_score(store, champion, dataset, scale)
        decision = decide_promotion(
            evaluation.published.mse,
            evaluation.baselines["persistence"].mse,
            against.mse,
            config.gate,
            windows=against.windows or SAME_WINDOWS,
            mase=(
                evaluation.metrics.mase,
                against.rescored.mase if against.rescored else None,
            ),
        )
        reasons = (
            *against.notes,
            f"publishes the {evaluation.published.forecaster}: {evaluation.published.reason}",
            *decision.reasons,
        )
        decision = decision.model_copy(
            update={
                "reasons": reasons,
                "compared_with": against.version,
                "champion_rescored": against.rescored,
            }
        )
        kept = champion.version if champion and not against.notes else None
        summary = RetrainSummary(
            version=candidate.version,
            model_dir=store.uri(MODELS, candidate.version),
            champion_rescored=against.rescored,
            compared_with=against.version,
            promoted=decision.promote,
            champion=candidate.version if decision.promote else kept,
            unchanged=False,
            reasons=decision.reasons,
            changes=describe_changes(against.manifest, dataset.series),
            report=store.uri(MODELS, candidate.version, "report.html"),
            **common,
        )
        write_report(store, summary, decision)
        if decision.promote:
            reason = "; ".join(decision.reasons)
            record_champion(store, candidate.version, evaluation.metrics, "promote", reason)
    return summary


def write_report(store: DataDir, summary: RetrainSummary, decision: Decision) -> None:
    """The gate's decision and the reports, added beside the staged version's files."""
    parts = (MODELS, summary.version)
    store.write_bytes(decision.model_dump_json(indent=2).encode(), *parts, DECISION_FILE)
    manifest = Manifest.model_validate_json(
        store.read_bytes(*parts, MANIFEST_FILE), context=STORED_RECORD
    )
    images = {name: store.read_bytes(*parts, name) for name in PLOTS if store.exists(*parts, name)}
    store.write_bytes(render_markdown(summary, manifest).encode(), *parts, "report.md")
    store.write_bytes(render_html(summary, manifest, images).encode(), *parts, "report.html")
