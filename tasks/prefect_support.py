"""Prefect glue shared by the task wrappers: content-keyed caching and transient-only retries."""

from __future__ import annotations

import inspect
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import Task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import CachePolicy
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import NotSet, quote

from wavecast.cache_keys import RESULTS_DIR, cache_record_name
from wavecast.confinement import ENV_PREFIX, ROOTS_VARIABLE, operator_limits
from wavecast.errors import InvalidInputError, is_expected_failure, is_transient
from wavecast.storage import DataDir

T = TypeVar("T")
# A stage names its output directory from its inputs alone: (data_dir uri, path parts).
Locator = Callable[..., tuple[str, tuple[str, ...]]]


def unvisited(value: T) -> T:
    """`value` as a task parameter Prefect passes on as it is (prefect's `quote`), typed as
    itself. Prefect otherwise visits every item of a parameter looking for futures: a panel's
    split or summary of 20,000 series cost ~80 s of that (~4 ms a series)."""
    return cast(T, quote(value))


@dataclass
class ContentCache(CachePolicy):
    """Key a stage on where its content-addressed output lives, and recompute if that is gone.

    The output path is derived from content hashes, config and the stage's version, never run
    ids, so a later scheduled run with the same inputs hits the cache. When a cached record
    exists but its files were deleted, a fresh key forces one recomputation; because the path
    is deterministic, the old record is valid again once the files are back.
    """

    locate: Locator | None = None

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        if self.locate is None:
            return None
        wanted = inspect.signature(self.locate).parameters  # run options are not content
        data_dir_uri, parts = self.locate(**{k: v for k, v in inputs.items() if k in wanted})
        data_dir = DataDir(data_dir_uri)
        key = cache_record_name(data_dir, *parts)
        if data_dir.is_complete(*parts) or not task_ctx.result_store.exists(key):
            return key
        return f"{key}-rebuild-{uuid.uuid4().hex}"


def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry I/O faults that may heal (see wavecast.errors.is_transient), nothing else."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as error:
        return is_transient(error)
    return False


def content_cache(locate: Locator) -> dict[str, Any]:
    """Task options that cache a stage on its content and persist the (small) result."""
    return {"cache_policy": ContentCache(locate=locate), "persist_result": True}


def cached_stage_options(store: DataDir, refresh: bool) -> dict[str, Any]:
    """Per-run options of the cached stages: results kept in the data directory, --refresh.

    On a local data dir, results (and so cache records) live beside the data they describe,
    under <data-dir>/cache: every process that sees the data dir sees the cache, whether it
    is `make run` or a deployment's worker. Prefect takes only saved storage blocks for
    remote storage, so a remote data dir uses the result storage Prefect is configured with.
    """
    # NotSet keeps PREFECT_TASKS_REFRESH_CACHE's say when --refresh is not given.
    options: dict[str, Any] = {"refresh_cache": True if refresh else NotSet}
    if store.is_local:
        options["result_storage"] = Path(store.path(RESULTS_DIR))
    return options


IO_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=1),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}


class ThrottledProgress:
    """A progress artifact, created with the first step done (a task that does nothing shows
    none) and updated at the first and last step and at most once every `min_interval_s` in
    between: each update is a call to the API, which would cost more than a small step."""

    def __init__(self, key: str, description: str, total: int, min_interval_s: float = 1.0):
        self.key, self.description, self.total = key, description, total
        self.min_interval_s = min_interval_s
        self.artifact: uuid.UUID | None = None
        self.last_update = time.monotonic()

    def advance(self, done: int) -> bool:
        """Record `done` of `total` steps; True when this one was shown."""
        if self.artifact is None:
            created = create_progress_artifact(
                progress=0.0, key=self.key, description=self.description
            )
            assert isinstance(created, uuid.UUID), "called from a synchronous task"
            self.artifact = created
        due = time.monotonic() - self.last_update >= self.min_interval_s
        if done not in (1, self.total) and not due:
            return False
        update_progress_artifact(self.artifact, progress=100.0 * done / self.total)
        self.last_update = time.monotonic()
        return True


class WithoutTraceback(logging.Filter):
    """Keeps Prefect's log line for an expected failure and drops its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_expected_failure(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_expected_failures() -> None:
    """The run logs of a failed stage show its message, not a traceback: the command or the
    API call ends with one line of its own. Once per process, however often it is asked."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, WithoutTraceback) for f in logger.filters):
            logger.addFilter(WithoutTraceback())


def confine_deployment_run() -> None:
    """Confine a run a worker started for a deployment even when its operator set no
    WAVECAST_ALLOWED_ROOTS: to its working directory (the checkout prefect.yaml's pull step
    changes into) and the data dir and source its deployment names. Those are the operator's;
    the run's own parameters, which anyone who reaches the API can set, widen nothing. Set
    in this process's environment before any work, so the processes its tasks start inherit
    it. A run by hand (no deployment) keeps the environment's rule, unconfined when unset.
    A run whose own job variables set a WAVECAST_ variable is refused before any work."""
    context = FlowRunContext.get()
    flow_run = context.flow_run if context else None
    deployment = flow_run.deployment_id if flow_run else None
    if flow_run is None or deployment is None:
        return
    refuse_limits_from_job_variables(flow_run.job_variables or {})
    if operator_limits().allowed_roots:
        return
    with get_client(sync_client=True) as client:
        config = client.read_deployment(deployment).parameters.get("config") or {}
    named = [config.get("data_dir"), (config.get("series") or {}).get("source")]
    places = [place for place in named if isinstance(place, str) and place != "sine"]
    os.environ[ROOTS_VARIABLE] = ",".join([str(Path.cwd()), *places])


def refuse_limits_from_job_variables(job_variables: dict[str, Any]) -> None:
    """A flow run's own job variables (anyone who reaches the API sets them) must not set the
    limits: a process worker puts their `env` into the run's environment, over the worker's
    and the deployment's. The deployment's job variables are the operator's, as its
    parameters are."""
    env = job_variables.get("env")
    names = sorted(name for name in env if name.upper().startswith(ENV_PREFIX)) if env else []
    if names:
        raise InvalidInputError(
            f"job variable env {names[0]}: wavecast's limits come from the worker's environment "
            "or the deployment, not from a run's job variables; run it without that variable"
        )
