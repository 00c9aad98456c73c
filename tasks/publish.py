"""Prefect face of publishing: stage a version, gate it, show it, announce the run."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run

from wavecast.cache_keys import stable_hash
from wavecast.config import RetrainConfig
from wavecast.evaluate import Evaluation, coverage_text, metrics_table
from wavecast.home import SeriesHome
from wavecast.model_files import TrainedRef
from wavecast.publish import Candidate, promote_candidate, stage_version
from wavecast.records import Manifest, RetrainSummary
from wavecast.registry import MANIFEST_FILE
from wavecast.report import render_markdown
from wavecast.storage import DataDir
from wavecast.tasks.prefect_support import IO_RETRIES
from wavecast.windows import DatasetRef


def publish_artifacts(summary: RetrainSummary, series: str | None = None) -> None:
    """A version's table, report and links, as a person looks for them in Prefect's UI: keyed
    (the latest of each a click away) for a single series' data dir, described by the series
    for a panel's, whose versions share a run."""
    version_dir = DataDir(summary.model_dir)
    manifest = Manifest.model_validate_json(version_dir.read_bytes(MANIFEST_FILE))
    published = summary.published
    of = f" of series {series}" if series is not None else ""
    coverage = published.coverage
    covered = f"; test coverage of its intervals {coverage_text(coverage)}" if coverage else ""
    create_table_artifact(
        metrics_table(manifest.candidates, published),
        key=None if series is not None else "wavecast-metrics",
        description=f"Every candidate's validation and test scores (MASE, sMAPE in %) for "
        f"{summary.version}{of}, which serves the {published.forecaster}{covered}",
    )
    create_markdown_artifact(
        render_markdown(summary, manifest),
        key=None if series is not None else "wavecast-report",
        description=f"Retrain report{of}",
    )
    create_link_artifact(
        version_dir.url("report.html"),
        link_text=f"HTML report of {summary.version}{of}",
        key=None if series is not None else "wavecast-report-html",
    )
    create_link_artifact(
        version_dir.url(),
        link_text=f"Files of {summary.version}{of} ({published.forecaster})",
        key=None if series is not None else "wavecast-model",
    )


RETRAIN_EVENT = "wavecast.retrain.published"


@task(name="stage-version", **IO_RETRIES)
def stage(
    config: RetrainConfig,
    home: SeriesHome,
    dataset: DatasetRef,
    trained: TrainedRef | None,
    evaluation: Evaluation,
) -> Candidate:
    """The version staged complete (series.retrain_stages removes it if promoting fails)."""
    candidate = stage_version(config, home, dataset, trained, evaluation, flow_run.get_id())
    get_run_logger().info("Version %s staged (new: %s)", candidate.version, candidate.created)
    return candidate


@task(name="promote-version")
def promote_version(
    config: RetrainConfig,
    home: SeriesHome,
    dataset: DatasetRef,
    evaluation: Evaluation,
    candidate: Candidate,
) -> RetrainSummary:
    summary = promote_candidate(config, home, dataset, evaluation, candidate)
    verdict = "Unchanged" if summary.unchanged else ("Promoted" if summary.promoted else "Kept")
    get_run_logger().info("%s %s: %s", verdict, summary.version, "; ".join(summary.reasons))
    return summary


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
