"""The retrain flow once under Prefect's test harness, then again from cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import served_file, tiny_config
from tests.servers import task_states
from wavecast.flows.retrain import retrain

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_server")]


def test_flow_runs_then_serves_every_stage_from_cache(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "data")
    first = retrain(config, return_state=True)
    summary = first.result().only()
    assert summary.promoted and not summary.unchanged
    model_file = served_file(Path(summary.model_dir))
    before = model_file.read_bytes()
    assert json.loads((Path(summary.model_dir) / "metrics.json").read_text())["n_test"] > 0

    second = retrain(config, return_state=True)
    again = second.result().only()
    assert again.unchanged and again.version == summary.version
    assert "no new data: model unchanged" in again.reasons
    assert model_file.read_bytes() == before
    states = task_states(str(second.state_details.flow_run_id))
    cached = ("write-windows", "train-model", "evaluate-model")
    assert {name: states[name] for name in cached} == dict.fromkeys(cached, "Cached")
    ran = ("split-series", "stage-version", "promote-version")
    assert {name: states[name] for name in ran} == dict.fromkeys(ran, "Completed")
    assert (tmp_path / "data" / "cache").is_dir()  # results live beside the data
