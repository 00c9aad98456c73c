"""The panel retrain: every series of a long table trained and published on its own."""

from __future__ import annotations

from prefect import flow

from wavecast.config import RetrainConfig
from wavecast.panel import BatchResult, PanelSummary, merge_results, panel_rounds
from wavecast.tasks.panel import (
    publish_panel,
    retrain_on_runner,
    split_series,
    train_global_network,
)
from wavecast.tasks.prefect_support import unvisited
from wavecast.tasks.retention import prune_data_dir
from wavecast.tasks.runners import check_cluster, worker_count


@flow(
    name="retrain-panel",
    description="Split a long table into series; window, train, evaluate and publish each.",
)
def retrain_panel(config: RetrainConfig) -> PanelSummary:
    """The task runner is picked here, per run, from the config: the same
    deployment fans out on worker processes, a fresh LocalCluster or an existing Dask
    cluster. With --network global the panel's one network trains first, then every batch
    scores it. Each round of batches gets a task runner of its own, so worker processes are
    replaced before TensorFlow's per-model memory adds up (see rounds). The split and the
    summary go to their tasks unvisited (see unvisited)."""
    spec = config.fan_out
    check_cluster(spec)  # before the split writes into the data dir
    split = split_series(config.series, config.windows, config.data_dir)
    network = (
        train_global_network(unvisited(split), config) if config.scores_panel_network else None
    )
    results: list[BatchResult] = []
    for batch_round in panel_rounds(split.series, config, worker_count(spec)):
        results += retrain_on_runner(batch_round, config, network)
    prune_data_dir(config.data_dir, config.retention)
    return publish_panel(unvisited(merge_results(split, results, config.data_dir)))
