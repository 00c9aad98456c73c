"""The retrain flow: the tutorial's experiment as a cached, retried, published pipeline."""

from __future__ import annotations

from prefect import flow
from prefect.transactions import transaction
from prefect.utilities.annotations import NotSet

from tasks.evaluate import evaluate_model
from tasks.generate import generate_series
from tasks.publish import promote_version, publish_version
from tasks.train import train_model
from tasks.windows import write_windows
from wavecast.config import RetrainConfig
from wavecast.publish import RetrainSummary


@flow(
    name="retrain", description="Generate or ingest a series, window it, train, evaluate, publish."
)
def retrain(config: RetrainConfig | None = None) -> RetrainSummary:
    """Every stage but publishing is served from cache when its content-derived inputs match."""
    config = config or RetrainConfig()
    refresh = True if config.refresh else NotSet  # NotSet keeps PREFECT_TASKS_REFRESH_CACHE
    data_dir = config.data_dir
    series = generate_series.with_options(refresh_cache=refresh)(config.series, data_dir)
    dataset = write_windows.with_options(refresh_cache=refresh)(series, config.windows, data_dir)
    trained = train_model.with_options(refresh_cache=refresh)(
        dataset, config.model, config.train, data_dir
    )
    evaluation = evaluate_model.with_options(refresh_cache=refresh)(dataset, trained, data_dir)
    with transaction():  # a failed promotion rolls the staged version back out of the registry
        candidate = publish_version(config, dataset, trained, evaluation)
        return promote_version(config, dataset, evaluation, candidate)
