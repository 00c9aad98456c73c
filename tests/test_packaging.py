"""`pip install .` installs wavecast's own namespace and nothing else: the repository's
top-level flows/ and tasks/ (prefect.yaml's entrypoints) ship as wavecast.flows and
wavecast.tasks through pyproject's package-dir, never as packages named `flows` or `tasks`
in site-packages; the wheel and the sdist hold them as plain files (no links anywhere)."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"flows": "wavecast/flows", "tasks": "wavecast/tasks"}  # folder: installed as


def project_copy(tmp_path: Path) -> Path:
    """A copy of what the package is made of, to build from (not the repo: an in-tree build
    would leave build/ and an egg-info behind)."""
    project = tmp_path / "project"
    for name in ("wavecast", "flows", "tasks"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    return project


def built_wheel(source: Path, tmp_path: Path) -> Path:
    """The wheel pip builds from `source`, a project directory or an sdist."""
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", str(wheels), str(source)], check=True)
    return next(wheels.glob("wavecast-*.whl"))


def sources(folder: str) -> dict[str, bytes]:
    """The modules of one of the repository's top-level folders, by file name."""
    return {path.name: path.read_bytes() for path in sorted((REPO / folder).glob("*.py"))}


def assert_holds_flows_and_tasks(wheel: Path) -> None:
    """Every module of flows/ and tasks/, as a regular file with the repository's bytes."""
    with zipfile.ZipFile(wheel) as archive:
        for folder, installed in SHIPPED.items():
            entries = {
                Path(info.filename).name: info
                for info in archive.infolist()
                if info.filename.startswith(f"{installed}/")
            }
            assert set(entries) == set(sources(folder)), wheel.name
            for name, content in sources(folder).items():
                mode = entries[name].external_attr >> 16
                assert not mode or stat.S_ISREG(mode), f"{installed}/{name}: mode {mode:o}"
                assert archive.read(entries[name]) == content, f"{installed}/{name}"


@pytest.mark.unit
def test_the_repository_has_no_links() -> None:
    """No symlinks in the package's folders, and nothing at wavecast/flows or wavecast/tasks
    that would shadow package-dir (a leftover folder there is a namespace package that hides
    flows/ from the editable install)."""
    for folder in ("wavecast", "flows", "tasks", "typings"):
        assert not [p for p in (REPO / folder).rglob("*") if p.is_symlink()], folder
    assert not (REPO / "wavecast" / "flows").exists()
    assert not (REPO / "wavecast" / "tasks").exists()


@pytest.mark.unit
def test_typings_forward_every_module_of_flows_and_tasks() -> None:
    """mypy cannot follow package-dir: typings/wavecast/flows/x.pyi re-exports flows/x.py
    (checked as `flows.x`), one stub per module, so that `import wavecast.flows.x` is typed."""
    for folder, installed in SHIPPED.items():
        stubs = {p.name: p.read_text() for p in sorted((REPO / "typings" / installed).iterdir())}
        expected = {
            f"{Path(name).stem}.pyi": (
                "" if name == "__init__.py" else f"from {folder}.{Path(name).stem} import *\n"
            )
            for name in sources(folder)
        }
        assert stubs == expected, f"typings/{installed} is out of step with {folder}/"


@pytest.mark.flow  # subprocesses: pip and a fresh interpreter
def test_the_wheel_holds_only_wavecast_and_runs_from_it(tmp_path: Path) -> None:
    wheel = built_wheel(project_copy(tmp_path), tmp_path)
    names = zipfile.ZipFile(wheel).namelist()

    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"wavecast"}
    assert {"wavecast/flows/retrain.py", "wavecast/tasks/retrain.py", "wavecast/api.py"} <= set(
        names
    )
    assert_holds_flows_and_tasks(wheel)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if "entry_points" in n))
    assert b"wavecast = wavecast.flows.cli:run" in entry_points

    # Installed alone and imported without this repository or its editable install on the
    # path (no site: no .pth files), the flows load and `tasks` is nobody's name.
    target = tmp_path / "installed"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target)]
    subprocess.run([*pip, str(wheel)], check=True)
    dependencies = sysconfig.get_paths()["purelib"]
    check = (
        f"import sys; sys.path[:] = [{str(target)!r}, *sys.path, {dependencies!r}]; "
        "import wavecast, wavecast.flows.retrain, wavecast.flows.forecast; "
        f"assert wavecast.__file__.startswith({str(target)!r}), wavecast.__file__; "
        f"assert wavecast.flows.retrain.__file__.startswith({str(target)!r}); "
        "assert callable(wavecast.retrain)\n"
        "try:\n    import tasks\nexcept ImportError:\n    pass\n"
        "else:\n    raise SystemExit(f'tasks importable from {tasks.__file__}')"
    )
    subprocess.run([sys.executable, "-S", "-c", check], cwd=tmp_path, check=True)


@pytest.mark.flow  # subprocesses: build and pip
def test_the_sdist_holds_flows_and_tasks_and_builds_the_same_wheel(tmp_path: Path) -> None:
    """The sdist keeps the repository's layout (flows/ and tasks/ at its top, as plain
    files) and pyproject's package-dir, so a wheel built from it is the one built in place."""
    project = project_copy(tmp_path)
    sdists = tmp_path / "sdists"
    build = [sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(sdists)]
    subprocess.run([*build, str(project)], check=True)
    sdist = next(sdists.glob("wavecast-*.tar.gz"))

    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1]: m for m in archive.getmembers() if "/" in m.name}
        assert not [m.name for m in members.values() if not (m.isfile() or m.isdir())]
        for folder in SHIPPED:
            for name, content in sources(folder).items():
                member = archive.extractfile(members[f"{folder}/{name}"])
                assert member is not None and member.read() == content, f"{folder}/{name}"
        assert "wavecast/api.py" in members
        assert not [
            name for name in members if name.startswith(("wavecast/flows", "wavecast/tasks"))
        ]

    assert_holds_flows_and_tasks(built_wheel(sdist, tmp_path))
