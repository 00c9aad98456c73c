"""Shared fixtures: tiny configs, one Prefect test server and one real server for the session.

`make test` runs the suite on several pytest-xdist workers, a whole module to a worker
(`--dist loadfile`): a module's tests run in their order and share its module-scoped
fixtures, as in one process. Each worker is a session of its own, with its own servers.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.servers import Stack, running_server
from wavecast.config import RetrainConfig

TIERS = ("unit", "flow", "server")  # pyproject.toml's markers, fastest first
REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    refuse_code_of_another_checkout()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A command's own Prefect server ends with it; the default background one would outlive
    # the tests (tests/test_embedded_server.py starts and stops one on purpose).
    os.environ.setdefault("WAVECAST_SERVER", "command")
    # Hypothesis' per-example deadline is a wall-clock assertion: on a shared, loaded machine
    # it fails correct code. Examples are judged on what they return, never on their speed.
    settings.register_profile(
        "wavecast", deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile("wavecast")


def refuse_code_of_another_checkout() -> None:
    """The code under test is this checkout's wavecast/, flows/ and tasks/, or nothing runs.

    `wavecast` comes from the repository root on sys.path, but wavecast.flows and
    wavecast.tasks only from the editable install's import hook (pyproject's package-dir),
    which points at the checkout that was installed: with another checkout's install (a
    worktree on PYTHONPATH, say) the tests would run a mix of two versions.
    """
    wrong: dict[str, str] = {}
    for name, folder in (
        ("wavecast", "wavecast"),
        ("wavecast.flows", "flows"),
        ("wavecast.tasks", "tasks"),
    ):
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            wrong[name] = f"not importable ({error})"
            continue
        where = Path(module.__file__ or "?").resolve().parent
        if where != REPO / folder:
            wrong[name] = f"{where}, not {REPO / folder}"
    if wrong:
        shown = "\n  ".join(f"{name}: {why}" for name, why in wrong.items())
        raise pytest.UsageError(
            f"the tests must import this checkout's code:\n  {shown}\n"
            f"install it editable into the environment that runs them: `make venv` here, or "
            f"`python -m pip install -e {REPO}`"
        )


def tier_problem(item: pytest.Item) -> str | None:
    """Why `item` is not in exactly one tier, or is in `unit` while needing Prefect's server."""
    tiers = [tier for tier in TIERS if item.get_closest_marker(tier) is not None]
    if len(tiers) != 1:
        return f"marked {tiers or 'with no tier'}"
    if tiers == ["unit"] and "prefect_server" in getattr(item, "fixturenames", ()):
        return "marked unit but uses the prefect_server fixture"
    return None


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: every collected test is checked
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run if a test is in no tier, or in several: `-m unit` would silently skip it.
    Then put the slowest modules first (see slowest_tier_first)."""
    problems = [f"{item.nodeid}: {why}" for item in items if (why := tier_problem(item))]
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise pytest.UsageError(
            f"every test needs exactly one tier marker of {', '.join(TIERS)} "
            f"(a module's pytestmark or the test's own mark):\n  {shown}{more}"
        )
    slowest_tier_first(items)


def slowest_tier_first(items: list[pytest.Item]) -> None:
    """Modules with a server test first, then those with a flow test, then unit-only ones;
    each module's tests stay together and in their order. xdist hands out modules in this
    order (`--no-loadscope-reorder`), so the minutes-long server modules start at once and
    the workers finish together on short ones."""
    slowest: dict[Path, int] = {}
    for item in items:
        tier = next(i for i, name in enumerate(TIERS) if item.get_closest_marker(name))
        slowest[item.path] = max(tier, slowest.get(item.path, 0))
    items.sort(key=lambda item: -slowest[item.path])  # stable


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


@pytest.fixture
def prefect_api_url(prefect_server: None) -> str:
    """The test server's API URL, for a `wavecast` command that needs a server but is not
    about which one: given PREFECT_API_URL, it does not start a server of its own."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness set no API URL"
    return str(url)


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One real `prefect server start` for the modules whose tests only need a server to
    report to (test_crash, test_panel_cli): every test works in a data dir of its own, so
    they share it rather than each module paying for a server's start-up."""
    with running_server(tmp_path_factory.mktemp("real-server")) as started:
        yield started


def tiny_config(data_dir: Path, **train: object) -> RetrainConfig:
    """A seconds-long retrain that beats persistence: 120-point sine, 8 units, 10 epochs."""
    return RetrainConfig.model_validate(
        {
            "series": {"length": 120},
            "model": {"units": 8},
            "train": {"epochs": 10, "batch_size": 16, "learning_rate": 0.01, **train},
            "data_dir": str(data_dir),
        }
    )


def served_file(version_dir: Path) -> Path:
    """The file that says what a version serves: forecaster.json for any forecaster but the
    network alone (the linear AR, which wins tiny_config's sine, keeps its weights there; a
    combination names its members, the network's model.keras beside it), else model.keras."""
    spec = version_dir / "forecaster.json"
    served = spec if spec.exists() else version_dir / "model.keras"
    assert served.exists(), f"{version_dir} serves nothing"
    return served


def served_files(data_dir: Path) -> list[Path]:
    """Every version's served file in data_dir's registry."""
    return [served_file(m.parent) for m in sorted(data_dir.glob("models/*/manifest.json"))]
