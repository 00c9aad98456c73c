"""Publish a candidate into the registry, gate it against the champion, and report."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict

from tasks.config import RetrainConfig
from tasks.evaluate import (
    METRICS_FILE,
    Evaluation,
    Metrics,
    metrics_table,
    regression_metrics,
)
from tasks.gate import Decision, decide_promotion
from tasks.generate import SeriesRef
from tasks.registry import (
    MODELS,
    find_version_of,
    read_champion,
    record_champion,
    utc_now,
    version_name,
)
from tasks.report import render_html, render_markdown
from tasks.storage import DataDir, code_fingerprint
from tasks.train import MODEL_FILE, TrainedRef, load_model
from tasks.windows import DatasetRef, read_split

LIBRARIES = ("tensorflow", "tensorflow-cpu", "keras", "prefect", "numpy", "pandas", "pyarrow")
UNCHANGED = "no new data: model unchanged"


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
    manifest = store.read_json(MODELS, champion["version"], "manifest.json")
    if manifest["dataset"]["spec"] != dataset.spec.model_dump(mode="json"):
        return None
    _, test_x, test_y = read_split(dataset, "test", data_dir)
    model = load_model(data_dir, MODELS, champion["version"], MODEL_FILE)
    return regression_metrics(test_y, model.predict(test_x, verbose=0).reshape(-1))


def build_manifest(
    config: RetrainConfig,
    dataset: DatasetRef,
    trained: TrainedRef,
    evaluation: Evaluation,
    decision: Decision,
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
        "gate": decision.model_dump(mode="json"),
    }


def publish(
    config: RetrainConfig,
    dataset: DatasetRef,
    trained: TrainedRef,
    evaluation: Evaluation,
    run_id: str | None = None,
) -> RetrainSummary:
    """Add the candidate as a complete version, then promote it if the gate agrees."""
    store = DataDir(config.data_dir)
    champion = read_champion(store)
    existing = find_version_of(store, trained.train_id)
    common = {
        "dataset_dir": dataset.uri,
        "dataset_id": dataset.dataset_id,
        "metrics": evaluation.metrics,
        "baselines": evaluation.baselines,
    }
    if existing is not None:
        return RetrainSummary(
            version=existing,
            model_dir=store.uri(MODELS, existing),
            champion_rescored=None,
            promoted=False,
            champion=champion["version"] if champion else None,
            unchanged=True,
            reasons=(UNCHANGED,),
            changes=("same source data and configuration as version " + existing,),
            report=store.uri(MODELS, existing, "report.html"),
            **common,
        )
    previous = store.read_json(MODELS, champion["version"], "manifest.json") if champion else None
    rescored = rescore_champion(store, champion, dataset, config.data_dir)
    champion_mse = rescored.mse if rescored else (champion["metrics"]["mse"] if champion else None)
    decision = decide_promotion(
        evaluation.metrics.mse, evaluation.baselines["persistence"].mse, champion_mse, config.gate
    )
    version = version_name(utc_now(), trained.train_id)
    summary = RetrainSummary(
        version=version,
        model_dir=store.uri(MODELS, version),
        champion_rescored=rescored,
        promoted=decision.promote,
        champion=version if decision.promote else (champion["version"] if champion else None),
        unchanged=False,
        reasons=decision.reasons,
        changes=describe_changes(previous, dataset.series),
        report=store.uri(MODELS, version, "report.html"),
        **common,
    )
    manifest = build_manifest(config, dataset, trained, evaluation, decision, run_id)
    with store.staged_dir(MODELS, version) as staging:
        store.copy_to_local(staging, "training", trained.train_id, MODEL_FILE)
        for name in (METRICS_FILE, *evaluation.plots):
            store.copy_to_local(staging, "evaluations", trained.train_id, name)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        (staging / "report.md").write_text(render_markdown(summary, manifest))
        (staging / "report.html").write_text(render_html(summary, manifest, staging))
    if decision.promote:
        record_champion(
            store, version, evaluation.metrics.model_dump(), "promote", "; ".join(decision.reasons)
        )
    return summary


def publish_artifacts(summary: RetrainSummary, evaluation: Evaluation, data_dir: str) -> None:
    """The run's table, report and links, as a person looks for them in Prefect's UI."""
    store = DataDir(data_dir)
    manifest = store.read_json(MODELS, summary.version, "manifest.json")
    create_table_artifact(
        metrics_table(evaluation),
        key="wavecast-metrics",
        description=f"Test metrics of {summary.version} vs baselines",
    )
    create_markdown_artifact(
        render_markdown(summary, manifest), key="wavecast-report", description="Retrain report"
    )
    create_link_artifact(
        store.url(MODELS, summary.version, "report.html"),
        link_text=f"HTML report of {summary.version}",
        key="wavecast-report-html",
    )
    create_link_artifact(
        store.url(MODELS, summary.version, MODEL_FILE),
        link_text=f"model.keras of {summary.version}",
        key="wavecast-model",
    )


@task(name="publish-model")
def publish_model(
    config: RetrainConfig, dataset: DatasetRef, trained: TrainedRef, evaluation: Evaluation
) -> RetrainSummary:
    summary = publish(config, dataset, trained, evaluation, flow_run.get_id())
    verdict = "Promoted" if summary.promoted else "Kept champion over"
    get_run_logger().info("%s %s: %s", verdict, summary.version, "; ".join(summary.reasons))
    publish_artifacts(summary, evaluation, config.data_dir)
    return summary
