"""Prefect face of publishing: stage a version (rolled back on failure), gate it, show it."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.transactions import Transaction, get_transaction

from wavecast.config import RetrainConfig
from wavecast.evaluate import Evaluation, coverage_text, metrics_table
from wavecast.model_files import TrainedRef
from wavecast.publish import Candidate, promote_candidate, served_file, stage_version
from wavecast.records import Manifest, RetrainSummary
from wavecast.registry import MANIFEST_FILE, MODELS, remove_version
from wavecast.report import render_markdown
from wavecast.storage import DataDir, stable_hash
from wavecast.tasks.prefect_support import IO_RETRIES
from wavecast.windows import DatasetRef


def publish_artifacts(summary: RetrainSummary, evaluation: Evaluation, data_dir: str) -> None:
    """The run's table, report and links, as a person looks for them in Prefect's UI."""
    store = DataDir(data_dir)
    manifest = Manifest.model_validate_json(
        store.read_bytes(MODELS, summary.version, MANIFEST_FILE)
    )
    coverage = evaluation.published.coverage
    covered = f"; test coverage of its intervals {coverage_text(coverage)}" if coverage else ""
    create_table_artifact(
        metrics_table(evaluation),
        key="wavecast-metrics",
        description=f"Every candidate's validation and test scores (MASE, sMAPE in %) for "
        f"{summary.version}, which serves the {evaluation.published.forecaster}{covered}",
    )
    create_markdown_artifact(
        render_markdown(summary, manifest), key="wavecast-report", description="Retrain report"
    )
    create_link_artifact(
        store.url(MODELS, summary.version, "report.html"),
        link_text=f"HTML report of {summary.version}",
        key="wavecast-report-html",
    )
    served = served_file(evaluation)
    create_link_artifact(
        store.url(MODELS, summary.version, served),
        link_text=f"{served} of {summary.version} ({evaluation.published.forecaster})",
        key="wavecast-model",
    )


RETRAIN_EVENT = "wavecast.retrain.published"


@task(name="stage-version", **IO_RETRIES)
def publish_version(
    config: RetrainConfig,
    dataset: DatasetRef,
    trained: TrainedRef | None,
    evaluation: Evaluation,
) -> Candidate:
    run_id = flow_run.get_id()
    candidate = stage_version(config, dataset, trained, evaluation, run_id)
    transaction = get_transaction()
    if transaction is not None:
        transaction.set("candidate", candidate)
        transaction.set("data_dir", config.data_dir)
    get_run_logger().info("Version %s staged (new: %s)", candidate.version, candidate.created)
    return candidate


@publish_version.on_rollback
def discard_version(transaction: Transaction) -> None:
    """A publish that failed after staging must not leave its version behind."""
    candidate: Candidate = transaction.get("candidate")
    if candidate.created:
        remove_version(DataDir(transaction.get("data_dir")), candidate.version)


@task(name="promote-version")
def promote_version(
    config: RetrainConfig, dataset: DatasetRef, evaluation: Evaluation, candidate: Candidate
) -> RetrainSummary:
    summary = promote_candidate(config, dataset, evaluation, candidate)
    verdict = "Unchanged" if summary.unchanged else ("Promoted" if summary.promoted else "Kept")
    get_run_logger().info("%s %s: %s", verdict, summary.version, "; ".join(summary.reasons))
    return summary


@task(name="announce-version")
def announce_version(summary: RetrainSummary, evaluation: Evaluation, data_dir: str) -> None:
    """The run's artifacts, and the event automations follow."""
    publish_artifacts(summary, evaluation, data_dir)
    announce_retrain(
        data_dir,
        version=summary.version,
        champion=summary.champion,
        promoted=summary.promoted,
        unchanged=summary.unchanged,
    )


def announce_retrain(data_dir: str, **payload: str | bool | int | None) -> None:
    """A `wavecast.retrain.published` event naming the data dir, so automations can follow
    (prefect.yaml's forecast-after-retrain deployment forecasts from the new champion)."""
    uri = DataDir(data_dir).uri()
    emitted = emit_event(
        event=RETRAIN_EVENT,
        resource={"prefect.resource.id": f"wavecast.data-dir.{stable_hash(uri)}"},
        payload={"data_dir": uri, **payload},
    )
    if emitted is None:
        get_run_logger().warning("No events client: %s was not emitted", RETRAIN_EVENT)
