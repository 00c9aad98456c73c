"""`pip install .` installs wavecast's own namespace and nothing else: the repository's
top-level flows/ and tasks/ (prefect.yaml's entrypoints) ship as wavecast.flows and
wavecast.tasks, never as packages named `flows` or `tasks` in site-packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.flow  # subprocesses: pip and a fresh interpreter

REPO = Path(__file__).resolve().parents[1]


def built_wheel(tmp_path: Path) -> Path:
    """The wheel pip builds from a copy of what the package is made of (not the repo: an
    in-tree build would leave build/ behind)."""
    project = tmp_path / "project"
    for name in ("wavecast", "flows", "tasks"):
        shutil.copytree(REPO / name, project / name, symlinks=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", str(wheels), str(project)], check=True)
    return next(wheels.glob("wavecast-*.whl"))


def test_the_wheel_holds_only_wavecast_and_runs_from_it(tmp_path: Path) -> None:
    wheel = built_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()

    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"wavecast"}
    assert {"wavecast/flows/retrain.py", "wavecast/tasks/panel.py", "wavecast/api.py"} <= set(names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if "entry_points" in n))
    assert b"wavecast = wavecast.flows.cli:main" in entry_points

    # Installed alone and imported without this repository or its editable install on the
    # path (no site: no .pth files), the flows load and `tasks` is nobody's name.
    target = tmp_path / "installed"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target)]
    subprocess.run([*pip, str(wheel)], check=True)
    dependencies = sysconfig.get_paths()["purelib"]
    check = (
        f"import sys; sys.path[:] = [{str(target)!r}, *sys.path, {dependencies!r}]; "
        "import wavecast, wavecast.flows.retrain, wavecast.flows.panel; "
        f"assert wavecast.__file__.startswith({str(target)!r}), wavecast.__file__; "
        "assert callable(wavecast.retrain)\n"
        "try:\n    import tasks\nexcept ImportError:\n    pass\n"
        "else:\n    raise SystemExit(f'tasks importable from {tasks.__file__}')"
    )
    subprocess.run([sys.executable, "-S", "-c", check], cwd=tmp_path, check=True)
