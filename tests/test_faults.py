"""Injected faults: transient I/O errors heal through retries without duplicating data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

from tests.conftest import tiny_config
from wavecast.flows.retrain import retrain

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_server")]


def test_write_that_fails_twice_is_retried_and_leaves_no_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Parquet writer fails mid-dataset twice, then works: one dataset, no dup rows."""
    real_write = pq.ParquetWriter.write_batch
    calls: list[int] = []

    def flaky_write(self: pq.ParquetWriter, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) in (2, 4):  # the test split, after the train split was written
            raise OSError("injected: disk hiccup")
        real_write(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", flaky_write)
    state = retrain(tiny_config(tmp_path / "data"), return_state=True)
    summary = state.result().only()

    assert len(calls) == 6  # two attempts of two splits each, failed at the second
    table = ds.dataset(summary.dataset_dir, format="parquet", partitioning="hive").to_table()
    starts = table.column("start").to_pylist()
    assert sorted(starts) == list(range(len(starts)))  # every window once, none twice
    assert len(starts) == 120 - 5 - 2 + 1
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="write-windows"))
        )
    flow_run_id = state.state_details.flow_run_id
    (windows_run,) = [run for run in runs if run.flow_run_id == flow_run_id]
    assert windows_run.run_count == 3
    assert windows_run.state_name == "Completed"


def test_bad_data_fails_the_flow_at_once_without_retrying(tmp_path: Path) -> None:
    """A NaN in the source is bad input: the run fails with the message and is not retried."""
    source = tmp_path / "series.csv"
    source.write_text("value\n" + "\n".join(["1.0"] * 40 + ["nan"] + ["2.0"] * 40) + "\n")
    config = tiny_config(tmp_path / "data").model_copy(
        update={"series": tiny_config(tmp_path).series.model_copy(update={"source": str(source)})}
    )
    state = retrain(config, return_state=True)

    assert state.is_failed()
    with pytest.raises(
        ValueError, match=r"1 NaN/infinite value\(s\) at data row 41 \(line 42 of a CSV\)"
    ):
        state.result()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="split-series"))
        )
    (generate_run,) = [run for run in runs if run.flow_run_id == state.state_details.flow_run_id]
    assert generate_run.run_count == 1
    assert not (tmp_path / "data" / "raw").exists() or not any(
        (tmp_path / "data" / "raw").iterdir()
    )
