"""The floor for an unchanged rerun: a fresh process running four trivial Prefect tasks.

Three are cached on their inputs (persisted results, so later processes hit them) and one is
never cached, like wavecast's publish step. Run it once to fill the cache; every later run is
three cache hits and one completed task against the same server.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import INPUTS


@task(cache_policy=INPUTS, persist_result=True)
def first(value: int) -> int:
    return value + 1


@task(cache_policy=INPUTS, persist_result=True)
def second(value: int) -> int:
    return value * 2


@task(cache_policy=INPUTS, persist_result=True)
def third(value: int) -> int:
    return value - 3


@task
def fourth(value: int) -> int:
    return value


@flow(name="benchmark-floor")
def floor_flow(seed: int = 1) -> int:
    return fourth(third(second(first(seed))))


if __name__ == "__main__":
    print(floor_flow())
