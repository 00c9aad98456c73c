"""Shared fixtures: tiny configs, one Prefect test server and one real server for the session.

`make test` runs the suite on several pytest-xdist workers, a whole module to a worker
(`--dist loadfile`): a module's tests run in their order and share its module-scoped
fixtures, as in one process. Each worker is a session of its own, with its own servers.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

from tests.processes import HEAVY_MODULES, Ran, imports_blocked
from tests.servers import Stack, running_server
from wavecast.config import ForecastConfig, RetrainConfig, SeriesSpec

if TYPE_CHECKING:
    from wavecast.generate import SeriesRef
    from wavecast.panel_forecast import ForecastRun
    from wavecast.storage import DataDir

TIERS = ("unit", "fit", "flow", "server")  # pyproject.toml's markers, fastest first
IN_PROCESS = ("unit", "fit")  # no Prefect server; `fit` trains networks, `unit` never does
BACKPROP = "tensorflow.python.eager.backprop"  # where tf.GradientTape is defined
GRADIENTS_BEFORE = pytest.StashKey[int]()
REPO = Path(__file__).resolve().parents[1]


class GradientCount(importlib.abc.MetaPathFinder):
    """Counts gradient computations in this process from the moment TensorFlow is imported,
    whichever test imports it. Every Keras training step takes one (a traced epoch when it
    is traced, an eager step each time), so a unit test that trains a network is caught
    however it trains: model.fit, wavecast's own loops or a retrain that reaches them."""

    taken = 0

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != BACKPROP:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module: ModuleType) -> None:
                load(module)
                GradientCount.watch(module.GradientTape)

            setattr(spec.loader, "exec_module", exec_module)  # noqa: B010 (mypy: a method)
        return spec

    @classmethod
    def watch(cls, tape: type) -> None:
        gradient: Callable[..., Any] = tape.gradient  # type: ignore[attr-defined]

        def counted(*args: Any, **kwargs: Any) -> Any:
            cls.taken += 1
            return gradient(*args, **kwargs)

        setattr(tape, "gradient", counted)  # noqa: B010 (mypy: a method)


def pytest_configure(config: pytest.Config) -> None:
    refuse_code_of_another_checkout()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A command's own Prefect server ends with it; the default background one would outlive
    # the tests (tests/test_embedded_server.py starts and stops one on purpose).
    os.environ.setdefault("WAVECAST_SERVER", "command")
    if BACKPROP in sys.modules:
        GradientCount.watch(sys.modules[BACKPROP].GradientTape)
    else:
        sys.meta_path.insert(0, GradientCount())
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
    """Why `item` is not in exactly one tier, or is in-process while needing Prefect's server."""
    tiers = [tier for tier in TIERS if item.get_closest_marker(tier) is not None]
    if len(tiers) != 1:
        return f"marked {tiers or 'with no tier'}"
    if tiers[0] in IN_PROCESS and "prefect_server" in getattr(item, "fixturenames", ()):
        return f"marked {tiers[0]} but uses the prefect_server fixture"
    return None


@pytest.hookimpl(tryfirst=True)  # before its fixtures: a module's training fixture counts
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[GRADIENTS_BEFORE] = GradientCount.taken


@pytest.hookimpl(trylast=True)  # after its fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """The unit tier stays fast: a test in it that trained a network is an error."""
    taken = GradientCount.taken - item.stash.get(GRADIENTS_BEFORE, GradientCount.taken)
    if taken and item.get_closest_marker("unit") is not None:
        pytest.fail(
            f"marked unit but trains a network ({taken} gradient computation(s)): mark it fit",
            pytrace=False,
        )


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
    """Modules with a server test first, then those with a flow test, then those with a fit
    test, then unit-only ones; each module's tests stay together and in their order. xdist
    hands out modules in this order (`--no-loadscope-reorder`), so the minutes-long server
    modules start at once and the workers finish together on short ones."""
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


def python_default_warnings() -> None:
    """The warning filters of a fresh interpreter: what `python` itself would print."""
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", quiet)


@pytest.fixture
def wavecast_main(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> Callable[..., Ran]:
    """`wavecast ARGV` run as main(ARGV) in this process and reported as run_cli reports the
    command's own process: exit code, stdout, and stderr with the warnings Python would print
    there; the `blocked` packages (Prefect, TensorFlow, Keras unless told) cannot be imported
    while it runs, as if this process had never loaded them."""
    from wavecast.flows.cli import ENVIRONMENT_DEFAULTS, main

    for key, value in ENVIRONMENT_DEFAULTS.items():  # main sets them; put back afterwards
        monkeypatch.setenv(key, os.environ.get(key, value))

    def run(*argv: str, blocked: tuple[str, ...] = HEAVY_MODULES) -> Ran:
        capfd.readouterr()
        code: object = 0
        with imports_blocked(blocked), warnings.catch_warnings(record=True) as caught:
            python_default_warnings()
            try:
                main(list(argv))
            except SystemExit as exited:
                code = 0 if exited.code is None else exited.code
        out, err = capfd.readouterr()
        for shown in caught:
            err += warnings.formatwarning(
                shown.message, shown.category, shown.filename, shown.lineno, shown.line
            )
        if not isinstance(code, int):  # sys.exit("text"): Python prints it, the exit code is 1
            err, code = f"{err}{code}\n", 1
        return subprocess.CompletedProcess(["wavecast", *argv], code, out, err)

    return run


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


def raw_series(spec: SeriesSpec, store: DataDir) -> SeriesRef:
    """The series a spec names, loaded and kept as Parquet in `store` as a retrain keeps it
    (load_series, then store_loaded under the series' key), without a retrain's checks."""
    from wavecast.generate import load_series, series_key, store_loaded

    return store_loaded(load_series(spec), spec.source, store, key=series_key(spec))


def forecast_here(config: ForecastConfig, keys: Sequence[str | None]) -> ForecastRun:
    """The forecast flow's work without Prefect: every series of `keys` as one part, in this
    process (forecast_part), then the run's page and summary (panel_forecast)."""
    from wavecast.panel_forecast import forecast_part, panel_forecast
    from wavecast.storage import DataDir

    return panel_forecast([forecast_part(config, keys, None)], DataDir(config.data_dir))
