"""Shared fixtures: tiny configs and one Prefect test server for the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from wavecast.config import RetrainConfig


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A throwaway Prefect server and result store, so cache hits come only from this session."""
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    results = tmp_path_factory.mktemp("prefect-results")
    with (
        temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: results}),
        prefect_test_harness(server_startup_timeout=180),
    ):
        yield


def tiny_config(data_dir: Path, **train: object) -> RetrainConfig:
    """A seconds-long retrain: 120-point sine, 4 units, 2 epochs unless overridden."""
    return RetrainConfig.model_validate(
        {
            "series": {"length": 120},
            "model": {"units": 4},
            "train": {"epochs": 2, "batch_size": 16, **train},
            "data_dir": str(data_dir),
        }
    )
