"""Prefect face of evaluation: cached per trained model, retried on I/O faults."""

from __future__ import annotations

import json

from prefect import get_run_logger, task

from tasks.prefect_support import IO_RETRIES, content_cache
from wavecast.evaluate import Evaluation, evaluate_trained, evaluation_location, metrics_table
from wavecast.train import TrainedRef
from wavecast.windows import DatasetRef


@task(name="evaluate-model", **content_cache(evaluation_location), **IO_RETRIES)
def evaluate_model(dataset: DatasetRef, trained: TrainedRef, data_dir: str) -> Evaluation:
    evaluation = evaluate_trained(dataset, trained, data_dir)
    get_run_logger().info("Test metrics: %s", json.dumps(metrics_table(evaluation)))
    return evaluation
