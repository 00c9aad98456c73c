"""Prefect face of training: epochs to the run log and a progress artifact, cached on content."""

from __future__ import annotations

from contextlib import AbstractContextManager, suppress

from prefect import get_client, get_run_logger, task
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

from wavecast.config import ModelSpec, SelectionSpec, TrainSpec
from wavecast.engine import EpochCallback
from wavecast.home import SeriesHome
from wavecast.model_files import TrainedRef
from wavecast.series import train_when_needed
from wavecast.tasks.prefect_support import ThrottledProgress, content_cache
from wavecast.train import training_location
from wavecast.windows import DatasetRef

TRAINING_LEASE_S = 60  # the shortest lease Prefect's server grants


def epoch_reporter(epochs: int, min_interval_s: float = 1.0) -> EpochCallback:
    """Loss to the run log and progress to an artifact: the first and last epoch, and in
    between at most once a second (a log line per 17 ms epoch would cost more than training).
    The artifact appears with the first epoch, so a reused training shows none.
    """
    logger = get_run_logger()
    description = "Training epochs completed (%)"
    progress = ThrottledProgress("wavecast-training", description, epochs, min_interval_s)

    def report(epoch: int, loss: float) -> None:
        if progress.advance(epoch + 1):
            logger.info("epoch %d/%d loss %.6g", epoch + 1, epochs, loss)

    return report


def training_slot(name: str) -> AbstractContextManager[None]:
    """A series' training slot (see wavecast.series.training_slot_name): a Prefect global
    concurrency limit of 1, created if it is new, then waited for.

    Every deployment, schedule, panel batch and command that trains this series takes the
    same slot, so two never train it at once. Its lease is renewed while training runs; a
    killed run's slot is freed once the lease expires (on a server whose services run).
    """
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, 1)  # another run may create it too
    get_run_logger().debug("Waiting for %s if another run is training this series", name)
    return concurrency(name, occupy=1, lease_duration=TRAINING_LEASE_S)


@task(name="train-model", **content_cache(training_location))
def train_model(
    dataset: DatasetRef,
    model: ModelSpec,
    train: TrainSpec,
    selection: SelectionSpec,
    home: SeriesHome,
    reuse: bool = True,
) -> TrainedRef | None:
    trained = train_when_needed(
        dataset,
        model,
        train,
        selection,
        home,
        reuse=reuse,
        take_slot=training_slot,
        on_epoch=epoch_reporter(train.epochs),
    )
    if trained is not None:  # None where the network does not compete
        get_run_logger().info(
            "Trained %s in %.1f s, final loss %.3g",
            trained.train_id,
            trained.seconds,
            trained.final_loss,
        )
    return trained
