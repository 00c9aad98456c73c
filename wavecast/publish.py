"""Publish a candidate into the registry, gate it against the champion, and report."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.config import RetrainConfig
from wavecast.evaluate import (
    METRICS_FILE,
    PLOTS,
    Evaluation,
    Metrics,
    keras_forecaster,
    score_split,
    stored_predictions,
)
from wavecast.gate import Decision, decide_promotion
from wavecast.generate import SeriesRef
from wavecast.registry import (
    MANIFEST_FILE,
    MODELS,
    find_version_of,
    read_champion,
    record_champion,
    registry_lock,
    utc_now,
    version_name,
)
from wavecast.report import render_html, render_markdown
from wavecast.storage import DataDir, code_fingerprint
from wavecast.train import MODEL_FILE, TrainedRef, load_model
from wavecast.windows import DatasetRef, head_of_split

LIBRARIES = ("tensorflow", "tensorflow-cpu", "keras", "prefect", "numpy", "pandas", "pyarrow")
UNCHANGED = "no new data: model unchanged"
DECISION_FILE = "decision.json"


class RetrainSummary(BaseModel):
    """What one retrain produced and decided; the CLI prints it, the report renders it."""

    model_config = ConfigDict(frozen=True)

    version: str
    model_dir: str
    dataset_dir: str
    dataset_id: str
    metrics: Metrics
    baselines: dict[str, Metrics]
    champion_rescored: Metrics | None
    promoted: bool
    champion: str | None
    unchanged: bool
    reasons: tuple[str, ...]
    changes: tuple[str, ...]
    report: str


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def code_revision() -> str | None:
    """The git commit of this checkout, when there is one."""
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


def describe_changes(previous: dict[str, Any] | None, series: SeriesRef) -> tuple[str, ...]:
    """How today's source differs from the one the champion was trained on."""
    if previous is None:
        return ("first model in this registry",)
    before = previous["series"]
    if before["content_hash"] == series.content_hash:
        return ("same source data as the champion",)
    added = series.n_points - before["n_points"]
    return (
        f"source changed: {added:+d} rows ({before['n_points']} -> {series.n_points}), "
        f"content hash {before['content_hash']} -> {series.content_hash}",
    )


def rescore_champion(
    store: DataDir, champion: dict[str, Any] | None, dataset: DatasetRef, data_dir: str
) -> Metrics | None:
    """The champion's MSE on the candidate's own test windows, when its geometry allows."""
    if champion is None:
        return None
    manifest = store.read_json(MODELS, champion["version"], MANIFEST_FILE)
    if manifest["dataset"]["spec"] != dataset.spec.model_dump(mode="json"):
        return None
    model = load_model(data_dir, MODELS, champion["version"], MODEL_FILE)
    scores, _ = score_split(dataset, data_dir, {"champion": keras_forecaster(model)}, keep=0)
    return scores["champion"]


def build_manifest(
    config: RetrainConfig,
    dataset: DatasetRef,
    trained: TrainedRef,
    evaluation: Evaluation,
    run_id: str | None,
) -> dict[str, Any]:
    """Lineage: enough to say exactly what produced this model and to reproduce it."""
    return {
        "created": utc_now().isoformat(),
        "flow_run_id": run_id,
        "code": {"revision": code_revision(), "fingerprint": code_fingerprint()},
        "libraries": library_versions(),
        "config": config.model_dump(mode="json"),
        "series": dataset.series.model_dump(mode="json"),
        "dataset": dataset.model_dump(mode="json", exclude={"series"}),
        "training": trained.model_dump(mode="json"),
        "seed": trained.train.seed,
        "metrics": evaluation.metrics.model_dump(),
        "baselines": {k: m.model_dump() for k, m in evaluation.baselines.items()},
    }


class Candidate(BaseModel):
    """A version in the registry that this run staged (or found already published)."""

    model_config = ConfigDict(frozen=True)

    version: str
    created: bool


def check_round_trip(model_file: Path, test_x: np.ndarray, expected: np.ndarray) -> None:
    """A published file must reload safely and forecast exactly what was evaluated."""
    import keras

    reloaded = keras.saving.load_model(model_file, safe_mode=True)
    forecast = keras_forecaster(reloaded)(test_x)
    if not np.allclose(forecast, expected, rtol=1e-5, atol=1e-7):
        worst = float(np.max(np.abs(forecast - expected)))
        raise RuntimeError(f"{model_file} does not reproduce its evaluation (max diff {worst:.3g})")


def stage_version(
    config: RetrainConfig,
    dataset: DatasetRef,
    trained: TrainedRef,
    evaluation: Evaluation,
    run_id: str | None = None,
) -> Candidate:
    """Copy the candidate into models/<version>/, which appears only complete and verified."""
    store = DataDir(config.data_dir)
    with registry_lock(store):  # two runs of the same training publish it once
        existing = find_version_of(store, trained.train_id)
        if existing is not None:  # an unchanged rerun: nothing to read, copy or check
            return Candidate(version=existing, created=False)
        expected = stored_predictions(evaluation, config.data_dir)
        _, test_x, _ = head_of_split(dataset, "test", config.data_dir, len(expected))
        version = version_name(utc_now(), trained.train_id)
        manifest = build_manifest(config, dataset, trained, evaluation, run_id)
        with store.staged_dir(MODELS, version) as staging:
            store.copy_to_local(staging, "training", trained.train_id, MODEL_FILE)
            for name in (METRICS_FILE, *evaluation.plots):
                store.copy_to_local(staging, "evaluations", evaluation.evaluation_id, name)
            (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            check_round_trip(staging / MODEL_FILE, test_x, expected)
    return Candidate(version=version, created=True)


def unchanged_summary(
    store: DataDir, candidate: Candidate, champion: dict[str, Any] | None, **common: Any
) -> RetrainSummary:
    return RetrainSummary(
        version=candidate.version,
        model_dir=store.uri(MODELS, candidate.version),
        champion_rescored=None,
        promoted=False,
        champion=champion["version"] if champion else None,
        unchanged=True,
        reasons=(UNCHANGED,),
        changes=(f"same source data and configuration as version {candidate.version}",),
        report=store.uri(MODELS, candidate.version, "report.html"),
        **common,
    )


def promote_candidate(
    config: RetrainConfig, dataset: DatasetRef, evaluation: Evaluation, candidate: Candidate
) -> RetrainSummary:
    """Gate a staged version against the champion and record the outcome, one run at a time."""
    store = DataDir(config.data_dir)
    common = {
        "dataset_dir": dataset.uri,
        "dataset_id": dataset.dataset_id,
        "metrics": evaluation.metrics,
        "baselines": evaluation.baselines,
    }
    with registry_lock(store):
        champion = read_champion(store)
        if not candidate.created:
            return unchanged_summary(store, candidate, champion, **common)
        previous = store.read_json(MODELS, champion["version"], MANIFEST_FILE) if champion else None
        rescored = rescore_champion(store, champion, dataset, config.data_dir)
        champion_mse = rescored.mse if rescored else (previous or {}).get("metrics", {}).get("mse")
        decision = decide_promotion(
            evaluation.metrics.mse,
            evaluation.baselines["persistence"].mse,
            champion_mse,
            config.gate,
        )
        kept = champion["version"] if champion else None
        summary = RetrainSummary(
            version=candidate.version,
            model_dir=store.uri(MODELS, candidate.version),
            champion_rescored=rescored,
            promoted=decision.promote,
            champion=candidate.version if decision.promote else kept,
            unchanged=False,
            reasons=decision.reasons,
            changes=describe_changes(previous, dataset.series),
            report=store.uri(MODELS, candidate.version, "report.html"),
            **common,
        )
        write_report(store, summary, decision)
        if decision.promote:
            metrics = evaluation.metrics.model_dump()
            record_champion(
                store, candidate.version, metrics, "promote", "; ".join(decision.reasons)
            )
    return summary


def write_report(store: DataDir, summary: RetrainSummary, decision: Decision) -> None:
    """The gate's decision and the reports, added beside the staged version's files."""
    parts = (MODELS, summary.version)
    store.write_json(decision.model_dump(mode="json"), *parts, DECISION_FILE)
    manifest = store.read_json(*parts, MANIFEST_FILE)
    images = {name: store.read_bytes(*parts, name) for name in PLOTS}
    store.write_bytes(render_markdown(summary, manifest).encode(), *parts, "report.md")
    store.write_bytes(render_html(summary, manifest, images).encode(), *parts, "report.html")
