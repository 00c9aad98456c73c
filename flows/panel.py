"""The panel retrain: every series of a long table trained and published on its own."""

from __future__ import annotations

from prefect import flow, unmapped

from tasks.panel import (
    check_cluster,
    publish_panel,
    retrain_batch,
    split_series,
    task_runner_for,
    train_global_network,
    worker_count,
)
from wavecast.config import RetrainConfig
from wavecast.generate import SeriesRef
from wavecast.panel import BatchResult, PanelSummary, merge_results, panel_rounds
from wavecast.train import TrainedRef


@flow(name="retrain-batches", description="Retrain batches of series on the run's task runner.")
def retrain_batches(
    batches: list[tuple[SeriesRef, ...]], config: RetrainConfig, network: TrainedRef | None
) -> list[BatchResult]:
    futures = retrain_batch.map(batches, unmapped(config), unmapped(network))
    return [future.result() for future in futures]


@flow(
    name="retrain-panel",
    description="Split a long table into series; window, train, evaluate and publish each.",
)
def retrain_panel(config: RetrainConfig) -> PanelSummary:
    """The task runner is picked here, per run, from the config (a subflow takes it): the same
    deployment fans out on worker processes, a fresh LocalCluster or an existing Dask
    cluster. With --network global the panel's one network trains first, then every batch
    scores it. Each round of batches is one subflow run with its own task runner, so worker
    processes are replaced before TensorFlow's per-model memory adds up (see rounds)."""
    spec = config.fan_out
    check_cluster(spec)  # before the split writes into the data dir
    split = split_series(config.series, config.windows, config.data_dir)
    network = train_global_network(split, config) if config.model.network == "global" else None
    results: list[BatchResult] = []
    for batch_round in panel_rounds(split.series, config, worker_count(spec)):
        fan_out = retrain_batches.with_options(task_runner=task_runner_for(spec))
        results += fan_out(batch_round, config, network)
    return publish_panel(merge_results(split, results, config.data_dir))
