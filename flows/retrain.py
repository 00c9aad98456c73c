"""The retrain flow: one series or a panel of thousands, cached, retried and published."""

from __future__ import annotations

from prefect import flow

from wavecast.config import RetrainConfig
from wavecast.panel import RetrainRun, merge_results
from wavecast.tasks.prefect_support import confine_deployment_run, unvisited
from wavecast.tasks.retention import prune_data_dir
from wavecast.tasks.retrain import (
    publish_run,
    retrain_on_runner,
    split_series,
    train_global_network,
)
from wavecast.tasks.runners import check_cluster


@flow(
    name="retrain",
    description="Split a source into series; window, train, evaluate and publish each.",
)
def retrain(config: RetrainConfig | None = None) -> RetrainRun:
    """The source's series (one, or a panel's: split_series), the panel's global network
    once if one competes, then every series' stages (retrain_on_runner: as tasks of this run
    for one series, in batches in this process for a few, on the task runner --runner picks
    for many), the retention rules, and the run's table and event. Each stage reuses its
    output when its inputs are unchanged, so a rerun on the same data trains nothing. The
    split and the summary go to their tasks unvisited (see unvisited)."""
    confine_deployment_run()
    config = config or RetrainConfig()
    check_cluster(config.fan_out)  # before the split writes into the data dir
    split = split_series(config)
    network = None
    if config.scores_panel_network:
        network = train_global_network(unvisited(split), config)
    results = retrain_on_runner(split.series, config, network)
    prune_data_dir(config.data_dir, config.retention)  # what the retention setting lets go
    return publish_run(unvisited(merge_results(split, results, config)))
