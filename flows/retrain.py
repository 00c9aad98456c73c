"""The retrain flow: the tutorial's experiment as a cached, retried, published pipeline."""

from __future__ import annotations

from prefect import flow
from prefect.transactions import transaction

from wavecast.config import RetrainConfig
from wavecast.records import RetrainSummary
from wavecast.tasks.evaluate import evaluate_model
from wavecast.tasks.generate import generate_series
from wavecast.tasks.prefect_support import cached_stage_options
from wavecast.tasks.publish import announce_version, promote_version, publish_version
from wavecast.tasks.retention import prune_data_dir
from wavecast.tasks.train import find_panel_network, train_model
from wavecast.tasks.windows import write_windows


@flow(
    name="retrain", description="Generate or ingest a series, window it, train, evaluate, publish."
)
def retrain(config: RetrainConfig | None = None) -> RetrainSummary:
    """Every stage but publishing is served from cache when its content-derived inputs match,
    and a stage whose complete output is already in the data dir reuses it whatever the cache
    holds (wavecast.series: the rules a panel's series follow too)."""
    config = config or RetrainConfig()
    data_dir = config.data_dir
    cached, reuse = cached_stage_options(data_dir, config.refresh), not config.refresh
    series = generate_series(config.series, config.windows, data_dir)
    dataset = write_windows.with_options(**cached)(series, config.windows, data_dir, reuse)
    trained = None  # a task only where a network competes: no cache record per run elsewhere
    if config.trains_own_network(dataset.n_train):
        train = train_model.with_options(**cached)
        trained = train(dataset, config.model, config.train, config.selection, data_dir, reuse)
    elif config.scores_panel_network:
        trained = find_panel_network(data_dir)  # trained by its panel, scored here again
    evaluate = evaluate_model.with_options(**cached)
    evaluation = evaluate(dataset, trained, config.selection, data_dir, reuse)
    with transaction():  # a failed promotion rolls the staged version back out of the registry
        candidate = publish_version(config, dataset, trained, evaluation)
        summary = promote_version(config, dataset, evaluation, candidate)
    announce_version(summary, evaluation, data_dir)
    prune_data_dir(data_dir, config.retention)
    return summary
