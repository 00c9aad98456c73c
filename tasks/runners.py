"""Where a panel's batches run: a process pool that stops cleanly on Ctrl-C (each worker gives
back its training slot first), or a Dask cluster through prefect-dask, checked before use."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Self

from prefect.futures import PrefectConcurrentFuture
from prefect.task_runners import ProcessPoolTaskRunner

from wavecast.config import FanOutSpec
from wavecast.errors import InvalidInputError

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
        if signal.getsignal(signal.SIGINT) is not stop_training:
            raise  # a batch in the command's own process: the command's Ctrl-C, as it is
        raise BatchInterruptedError from None
    finally:
        training = False


def prepare_worker() -> None:
    """Run in each worker process before TensorFlow loads: N workers use N cores, not N**2."""
    os.environ.update(ONE_THREAD)
    signal.signal(signal.SIGINT, stop_training)
    exit_with_parent()


def exit_with_parent() -> None:
    """End this worker the moment its parent dies, however: a command killed with SIGKILL
    runs no clean-up, and its workers would train their batches to the end, renewing their
    training slots' leases, then wait on the pool's queue for ever.

    A spawned child's parent_process() waits on a pipe whose other end only the parent holds
    (the kernel closes it at any death): no polling, no Linux-only PR_SET_PDEATHSIG.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return  # not a multiprocessing child: nothing to watch

    def exit_when_gone() -> None:
        parent.join()
        os._exit(1)  # from a thread, past whatever the main thread runs; no one to report to

    threading.Thread(target=exit_when_gone, name="wavecast-exit-with-parent", daemon=True).start()


def worker_count(spec: FanOutSpec) -> int:
    return spec.workers or os.cpu_count() or 1


class InterruptibleProcessPool(ProcessPoolTaskRunner):
    """Prefect's process pool, whose workers stop when the run is interrupted.

    On any exit Prefect's runner waits for the batches its workers hold
    (`ProcessPoolExecutor.shutdown(wait=True)`), and a worker hears no SIGINT sent to the
    command alone: Ctrl-C left every worker training its batch to the end. On an interrupt
    this cancels what has not started, interrupts the workers, and kills any still alive after
    STOP_GRACE_S. A failed batch (an ordinary exception) still lets the others finish.

    Public interfaces only: the workers are the multiprocessing children this process started
    while the pool was open (the command starts no others meanwhile), the work is the futures
    submitted through it.
    """

    def __enter__(self) -> Self:
        self.children_before = {child.pid for child in multiprocessing.active_children()}
        self.submitted: list[PrefectConcurrentFuture[Any]] = []
        return super().__enter__()

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        future = super().submit(*args, **kwargs)  # map() submits through here too
        self.submitted.append(future)
        return future

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        # Prefect's own: cancels what is queued, waits for the workers to exit.
        close = partial(super().__exit__, exc_type, exc_value, traceback)
        if exc_type is None or issubclass(exc_type, Exception):
            close()
            return
        for future in self.submitted:
            future.wrapped_future.cancel()  # a batch a worker has taken is not cancelled
        children = multiprocessing.active_children()
        stop_workers([c for c in children if c.pid not in self.children_before], close)


def stop_workers(workers: Sequence[BaseProcess], close: Callable[[], None]) -> None:
    """Interrupt the workers, then `close` their pool, which waits for them: any still alive
    after STOP_GRACE_S is killed, which ends that wait (the pool counts itself broken)."""
    for worker in workers:
        if worker.pid is not None and worker.is_alive():  # not reaped: the pid is still its
            os.kill(worker.pid, signal.SIGINT)
    killer = threading.Timer(STOP_GRACE_S, kill_alive, (workers,))
    killer.daemon = True
    killer.start()
    try:
        close()
    finally:
        killer.cancel()


def kill_alive(workers: Sequence[BaseProcess]) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.kill()


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
