"""Prefect face of panels: split the source once, retrain batches of series, show the panel.

A batch is the unit a task runner (worker processes, or Dask workers through prefect-dask)
receives: a task run per series would cost more than training a small series (measured, see
benchmarks/README.md). Inside it, each series goes through the single-series stages, each
reusing its content-addressed output, so an unchanged series trains nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from types import FrameType
from typing import Any

from prefect import get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.task_runners import ProcessPoolTaskRunner

from wavecast.config import FanOutSpec, RetrainConfig, SeriesSpec, WindowSpec
from wavecast.engine import TrainingEngine
from wavecast.errors import InvalidInputError, environment_problem, is_transient
from wavecast.generate import SeriesRef
from wavecast.model_files import TrainedRef
from wavecast.panel import (
    BatchResult,
    PanelSplit,
    PanelSummary,
    SeriesOutcome,
    describe_outcome,
    panel_network,
    panel_table,
    retrain_series,
    split_panel,
)
from wavecast.registry import one_line
from wavecast.series import training_slot_name
from wavecast.tasks.prefect_support import IO_RETRIES, ThrottledProgress
from wavecast.tasks.publish import announce_retrain
from wavecast.tasks.train import epoch_reporter, training_slot

# Each worker process trains one series at a time: one TensorFlow thread per worker.
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}
# How long a Dask scheduler has to answer; distributed's own default (30 s) kept a run with a
# wrong address silent for half a minute.
DASK_CONNECT_TIMEOUT_S = 5
# How long interrupted workers have to give back their training slots before they are killed.
STOP_GRACE_S = 30.0
# A worker process's state, for its SIGINT handler: it has been interrupted; it is running a
# batch (an idle worker that hears Ctrl-C must not die: the pool would count itself broken
# and kill the others before they give back their training slots).
interrupted = False
training = False


class BatchInterruptedError(Exception):
    """A batch stopped by SIGINT. An Exception, not KeyboardInterrupt: a BaseException coming
    back from a worker kills Prefect's process-pool bookkeeping (its future callback catches
    Exception only), and the pool never lets its workers go."""

    def __init__(self) -> None:
        super().__init__("interrupted: series finished before are kept; rerun to train the rest")


def stop_training(signum: int, frame: FrameType | None) -> None:
    """A worker's SIGINT handler: the first interrupts the batch it runs; later ones (Ctrl-C
    reaches the workers and the runner forwards it too) let the clean-up finish."""
    global interrupted
    first, interrupted = not interrupted, True
    if first and training:
        raise KeyboardInterrupt


def stop_if_interrupted() -> None:
    if interrupted:
        raise BatchInterruptedError


@contextmanager
def interruptible() -> Iterator[None]:
    """A batch's body: SIGINT stops it, and one queued to an interrupted worker never starts.

    Module-level, as is stop_if_interrupted: a task's own function is pickled by value with a
    copy of the globals it names, so it would never see the worker's flags change.
    """
    global training
    stop_if_interrupted()
    training = True
    try:
        yield
    except KeyboardInterrupt:
        raise BatchInterruptedError from None
    finally:
        training = False


def prepare_worker() -> None:
    """Run in each worker process before TensorFlow loads: N workers use N cores, not N**2."""
    os.environ.update(ONE_THREAD)
    signal.signal(signal.SIGINT, stop_training)


def worker_count(spec: FanOutSpec) -> int:
    return spec.workers or os.cpu_count() or 1


class InterruptibleProcessPool(ProcessPoolTaskRunner):
    """Prefect's process pool, whose workers stop when the run is interrupted.

    On any exit Prefect's runner waits for the batches its workers hold
    (`ProcessPoolExecutor.shutdown(wait=True)`), and a worker hears no SIGINT sent to the
    command alone: Ctrl-C left every worker training its batch to the end. On an interrupt
    this cancels what has not started, interrupts the workers, and kills any still alive after
    STOP_GRACE_S. A failed batch (an ordinary exception) still lets the others finish.
    """

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception) and self._executor:
            stop_workers(self._executor)
        super().__exit__(exc_type, exc_value, traceback)


def stop_workers(executor: ProcessPoolExecutor) -> None:
    """Cancel what has not started, interrupt the workers, kill those left after the grace."""
    # The executor's own processes, by pid (Python 3.14 adds terminate_workers() for this).
    workers = dict(executor._processes)
    executor.shutdown(wait=False, cancel_futures=True)
    for pid, worker in workers.items():
        if worker.is_alive():  # not yet reaped, so the pid is still this worker's
            os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in workers.values():
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join()


def dask_address(spec: FanOutSpec) -> tuple[str, str] | None:
    """The scheduler to connect to, and the setting that names it; None for a fresh cluster."""
    if spec.dask_address:
        return spec.dask_address, "--dask-address"
    import dask

    address = dask.config.get("scheduler-address", None)
    return (str(address), "DASK_SCHEDULER_ADDRESS") if address else None


def check_cluster(spec: FanOutSpec) -> None:
    """Connect once to a named Dask scheduler before the run writes anything: a wrong or
    unreachable address fails the run in one line instead of in a traceback after the split.

    distributed's comm layer, not a Client: a Client that failed to connect spends another
    10 s closing itself when it is garbage-collected.
    """
    named = dask_address(spec) if spec.runner == "dask" else None
    if named is None:
        return
    from distributed.comm import connect
    from distributed.security import Security

    address, setting = named

    async def handshake() -> None:
        args = Security().get_connection_args("client")  # TLS from Dask's own config
        comm = await connect(address, timeout=DASK_CONNECT_TIMEOUT_S, **args)
        await comm.close()

    try:
        asyncio.run(handshake())
    except (ValueError, TypeError) as exc:  # an unknown scheme, TLS without its settings
        raise InvalidInputError(f"{setting} {address}: {exc}") from None
    except OSError:
        raise InvalidInputError(
            f"{setting} {address}: no Dask scheduler answered within {DASK_CONNECT_TIMEOUT_S} "
            "s; check that it runs and that this machine reaches its host and port"
        ) from None


def task_runner_for(spec: FanOutSpec) -> Any:
    """Prefect's process pool, or prefect-dask's runner on a named or a fresh local cluster.

    Processes, not threads: tracing a Keras model is Python work that holds the GIL.
    """
    workers = worker_count(spec)
    if spec.runner == "local":
        return InterruptibleProcessPool(max_workers=workers, initializer=prepare_worker)
    from prefect_dask import DaskTaskRunner

    named = dask_address(spec)
    if named:
        timeout = {"timeout": DASK_CONNECT_TIMEOUT_S}
        return DaskTaskRunner(address=named[0], client_kwargs=timeout)
    cluster = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "env": ONE_THREAD}
    return DaskTaskRunner(cluster_kwargs=cluster)


@task(name="split-panel", cache_policy=NO_CACHE, **IO_RETRIES)
def split_series(spec: SeriesSpec, windows: WindowSpec, data_dir: str) -> PanelSplit:
    split = split_panel(spec, windows, data_dir)
    logger = get_run_logger()
    logger.info("Panel %s: %d series to train", spec.source, len(split.series))
    for key, reason in split.skipped.items():
        logger.warning("Series %s skipped: %s", key, reason)
    return split


@task(name="train-global-network", cache_policy=NO_CACHE, **IO_RETRIES)
def train_global_network(split: PanelSplit, config: RetrainConfig) -> TrainedRef | None:
    """The panel's one network (--network global), under the panel's own training slot."""
    with training_slot(training_slot_name(config.data_dir)):
        network = panel_network(split, config, on_epoch=epoch_reporter(config.train.epochs))
    if network is not None:
        get_run_logger().info(
            "Global network %s on %d series: final loss %.3g, %.1f s",
            network.train_id,
            len(split.series),
            network.final_loss,
            network.seconds,
        )
    return network


@task(name="retrain-batch", cache_policy=NO_CACHE, **IO_RETRIES)
def retrain_batch(
    batch: tuple[SeriesRef, ...], config: RetrainConfig, network: TrainedRef | None = None
) -> BatchResult:
    """Every series of the batch; one that fails is skipped with its reason, the rest go on.

    A storage fault that would fail every series alike (full disk, read-only) fails the run
    at once; a transient one retries the batch, whose finished series are then reused.
    """
    logger = get_run_logger()
    description = "Series of this batch done (%)"
    progress = ThrottledProgress("wavecast-panel-progress", description, len(batch))
    series: dict[str, SeriesOutcome] = {}
    skipped: dict[str, str] = {}
    engine = TrainingEngine()  # the batch's series train on one model per shape
    with interruptible():
        for done, ref in enumerate(batch, start=1):
            assert ref.key is not None
            stop_if_interrupted()
            try:
                run_id = flow_run.get_id()
                outcome = retrain_series(ref, config, run_id, training_slot, engine, network)
            except Exception as exc:
                stop_if_interrupted()  # Keras wraps an interrupt inside a layer in its own error
                if environment_problem(exc) is not None or is_transient(exc):
                    raise
                skipped[ref.key] = one_line(exc)
                logger.warning("Series %s skipped: %s", ref.key, skipped[ref.key])
            else:
                series[ref.key] = outcome
                logger.info("Series %s: %s", ref.key, describe_outcome(outcome))
            progress.advance(done)
    logger.info("Batch of %d: %d trained, %d skipped", len(batch), len(series), len(skipped))
    return BatchResult(series=series, skipped=skipped)


def retrain_on_runner(
    batches: list[tuple[SeriesRef, ...]], config: RetrainConfig, network: TrainedRef | None
) -> list[BatchResult]:
    """The batches mapped on a task runner of their own (task_runner_for), inside the calling
    flow run: chosen per run, where a flow's own runner is fixed when it is decorated. Not a
    subflow, whose parameters Prefect stores: a panel's series as one (20,000 of them) exceed
    the server's 512 KB limit on a run's parameters."""
    mapped = {"batch": batches, "config": unmapped(config), "network": unmapped(network)}
    with task_runner_for(config.fan_out) as runner:
        return [future.result() for future in runner.map(retrain_batch, mapped)]


@task(name="publish-panel", cache_policy=NO_CACHE)
def publish_panel(summary: PanelSummary) -> PanelSummary:
    """The panel's table where a person opening the run looks, and one event for the panel."""
    promoted = sum(outcome.promoted for outcome in summary.series.values())
    create_table_artifact(
        panel_table(summary),
        key="wavecast-panel",
        description=f"{len(summary.series)} series trained ({promoted} promoted), "
        f"{len(summary.skipped)} skipped",
    )
    get_run_logger().info(
        "Panel: %d series trained, %d promoted, %d skipped",
        len(summary.series),
        promoted,
        len(summary.skipped),
    )
    announce_retrain(summary.data_dir, series=len(summary.series), promoted=promoted, panel=True)
    return summary
