"""Prefect face of evaluation: cached per trained model, retried on I/O faults."""

from __future__ import annotations

from prefect import get_run_logger, task

from wavecast.config import SelectionSpec
from wavecast.evaluate import (
    Evaluation,
    candidates_line,
    evaluate_trained,
    evaluation_location,
)
from wavecast.home import SeriesHome
from wavecast.model_files import TrainedRef
from wavecast.tasks.prefect_support import IO_RETRIES, content_cache
from wavecast.windows import DatasetRef


@task(name="evaluate-model", **content_cache(evaluation_location), **IO_RETRIES)
def evaluate_model(
    dataset: DatasetRef,
    trained: TrainedRef | None,
    selection: SelectionSpec,
    home: SeriesHome,
    reuse: bool = True,
) -> Evaluation:
    evaluation = evaluate_trained(dataset, trained, selection, home, reuse=reuse)
    logger = get_run_logger()
    logger.info("Candidates by validation MSE: %s", candidates_line(evaluation.candidates))
    logger.info("Publishes %s: %s", evaluation.published.forecaster, evaluation.published.reason)
    return evaluation
