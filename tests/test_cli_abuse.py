"""The command line under abuse: every refused input is exit 2, one line, nothing written,
before Prefect or TensorFlow load; a damaged registry never stops `wavecast models`.

A refusal is checked through main() in this process with those packages unimportable
(the wavecast_main fixture; test_cli_args checks the command in a fresh process says the
same); what needs a Prefect server or an interpreter of its own runs the command."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import Ran
from tests.servers import environment_without_prefect
from tests.test_cli_args import WAVECAST, populated_data_dir, run_cli, snapshot
from tests.test_forecast import naive_champion, naive_panel, values_csv
from tests.test_registry import METRICS, SECRET, keras_file, naive_version, version_with
from wavecast.evaluate import SPEC_FILE
from wavecast.home import SeriesHome
from wavecast.registry import record_champion
from wavecast.storage import DataDir

V1, V2 = "20240102T030405Z-aaaaaaaa", "20240102T030406Z-bbbbbbbb"


def big_values_csv(tmp_path: Path) -> Path:
    source = tmp_path / "huge.csv"
    source.write_text("value\n" + "".join(f"{v}\n" for v in [1.0] * 30 + [3e30] + [2.0] * 30))
    return source


@pytest.mark.unit
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--learning-rate", "inf"], "--learning-rate"),
        (["--learning-rate", "nan"], "--learning-rate"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**32)], "--seed"),
        (["--noise-seed", "-5"], "--noise-seed"),
        (["--noise", "inf"], "--noise"),
        (["--tolerance", "nan"], "--tolerance"),
        (["--units", "1000000"], "1000000 is above this machine's limit of 4096"),
        (["--units", "20000", "--cell", "lstm"], "WAVECAST_MAX_UNITS"),
        (["--length", "1000000000000"], "WAVECAST_MAX_POINTS"),
        (["--noise", "1e30"], "overflow float32"),
        (["--source", "HUGE"], "overflow float32"),
        (["--source", "s3://bucket/series.csv"], "pip install 'wavecast[s3]'"),
        (["--source", "https://127.0.0.1:9/series.csv"], "pip install 'wavecast[http]'"),
        (["--source", "nosuchscheme://x/series.csv"], "nosuchscheme:// scheme is not allowed"),
        (["--data-dir", "FILE"], "is not a directory"),
        (["--data-dir", "FILE/below"], "is not a directory"),
        (["--data-dir", "s3://bucket/data"], "pip install 'wavecast[s3]'"),
        (["--source", "HUGE", "--id-column", "store"], "--id-column store: not in"),
        (["--id-column", "store"], "needs a CSV/Parquet --source"),
        (["--series", "7"], "give --id-column too"),
        (["--dask-address", "tcp://127.0.0.1:9"], "needs --runner dask"),
        (["--runner", "yarn"], "--runner 'yarn'"),
        (
            ["--candidates", "seasonal_naive"],
            "--candidates seasonal_naive: none can compete on this source (seasonal_naive: no "
            "season (1): the same forecast as naive); add naive, ets or theta",
        ),
        (
            ["--candidates", "network,combination", "--network-min-windows", "5000"],
            "(network: not trained: 795 train windows, fewer than --network-min-windows 5000; "
            "combination: none of its pool to weigh)",
        ),
        (
            ["--candidates", "linear", "--input-len", "200"],
            "(linear: not fitted: 480 windows, fewer than the 804 its 201 weights need)",
        ),
    ],
)
def test_refused_input_is_one_line_and_changes_nothing(
    tmp_path: Path, argv: list[str], expected: str, wavecast_main: Callable[..., Ran]
) -> None:
    data_dir = populated_data_dir(tmp_path)
    afile = data_dir / "keep.txt"
    argv = [
        str(big_values_csv(tmp_path)) if a == "HUGE" else a.replace("FILE", str(afile))
        for a in argv
    ]
    if "--data-dir" not in argv:
        argv += ["--data-dir", str(data_dir)]
    before = snapshot(data_dir)

    result = wavecast_main("retrain", *argv)  # Prefect and TensorFlow cannot be imported

    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert lines[0].startswith("wavecast: error: ")
    assert snapshot(data_dir) == before


def registry_with_two_versions(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    for version in (V1, V2):
        (data_dir / "models" / version).mkdir(parents=True)
        (data_dir / "models" / version / "_COMPLETE").write_text("complete\n")
    return data_dir


@pytest.mark.unit
@pytest.mark.parametrize("damage", ["{", "", "\xff", '{"version": 1}'])
def test_models_commands_carry_on_over_a_damaged_champion_file(
    tmp_path: Path, damage: str, wavecast_main: Callable[..., Ran]
) -> None:
    """list shows what it can; promote, the natural fix, works and rewrites the file."""
    data_dir = registry_with_two_versions(tmp_path)
    naive_version(data_dir, V2)  # V1 has no manifest; V2 can serve
    (data_dir / "models" / "champion.json").write_text(damage)
    (data_dir / "models" / "promotions.jsonl").write_text("{torn\n")

    listed = wavecast_main("models", "list", "--data-dir", str(data_dir))
    assert listed.returncode == 0, listed.stderr
    assert V1 in listed.stdout and "damaged: manifest.json missing or damaged" in listed.stdout
    assert "Traceback" not in listed.stderr

    refused = wavecast_main("models", "promote", V1, "--reason", "r", "--data-dir", str(data_dir))
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        f"wavecast: error: not promoted: version {V1} cannot serve: manifest.json missing or "
        "damaged"
    )

    promoted = wavecast_main(
        "models", "promote", V2, "--reason", "repair", "--data-dir", str(data_dir)
    )
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.strip() == f"champion is now {V2}"
    assert json.loads((data_dir / "models" / "champion.json").read_text())["version"] == V2

    rolled = wavecast_main("models", "rollback", "--data-dir", str(data_dir))
    assert rolled.returncode == 2 and "no earlier champion" in rolled.stderr
    assert len(rolled.stderr.splitlines()) == 1


def tiny_retrain(
    tmp_path: Path, timeout_s: float, **settings: str
) -> subprocess.CompletedProcess[str]:
    """`wavecast retrain` of a 120-point sine into tmp_path/data, with only `settings` of
    Prefect's (none of the shell's)."""
    return subprocess.run(
        [str(WAVECAST), "retrain", "--length", "120", "--data-dir", str(tmp_path / "data")],
        env=environment_without_prefect(**settings),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.mark.flow  # runs the wavecast command
def test_a_server_that_does_not_answer_fails_the_command_in_one_line(tmp_path: Path) -> None:
    """PREFECT_API_URL names a port nobody listens on: exit 1, one line, nothing trained."""
    from wavecast.flows.embedded_server import free_port

    dead = f"http://127.0.0.1:{free_port()}/api"
    result = tiny_retrain(tmp_path, 120, PREFECT_API_URL=dead, PREFECT_HOME=str(tmp_path / "h"))
    assert result.returncode == 1, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if "wavecast: error" in line]
    assert line.startswith("wavecast: error: Failed to reach API at http://127.0.0.1:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "models").exists()


@pytest.mark.flow  # runs the wavecast command
def test_a_full_disk_fails_at_once_in_one_line_without_traceback(
    tmp_path: Path, prefect_api_url: str
) -> None:
    """ENOSPC from the Parquet writer (injected at interpreter start): no retry, one line.
    (Reporting to the test server: a server of the command's own adds only its start-up.)"""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import errno\nimport pyarrow.parquet as pq\n\n\n"
        "def full(*args, **kwargs):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device', 'injected.parquet')\n\n\n"
        "pq.ParquetWriter.write_batch = full\n"
    )
    result = tiny_retrain(
        tmp_path,
        300,
        PYTHONPATH=os.pathsep.join(p for p in (str(inject), os.environ.get("PYTHONPATH")) if p),
        PREFECT_HOME=str(tmp_path / "home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_URL=prefect_api_url,
    )

    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.splitlines()[-1]
    assert last == (
        "wavecast: error: No space left on device: injected.parquet "
        "(free some space or choose another --data-dir)"
    )
    assert "Traceback" not in result.stderr
    assert "Retry 1/3" not in result.stderr  # a full disk is not retried
    assert not [p for p in (tmp_path / "data" / "windows").iterdir()]  # no staging leftovers


@pytest.mark.unit
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "no champion in DATA: run wavecast retrain first"),
        (["--version", "../../etc"], "no model version '../../etc'"),
        (["--level", "100"], "between 0 and 100"),
        (["--level", "nan"], "--level"),
    ],
)
def test_forecast_refuses_in_one_line_and_writes_nothing(
    tmp_path: Path, argv: list[str], expected: str, wavecast_main: Callable[..., Ran]
) -> None:
    data_dir = tmp_path / "empty"
    result = wavecast_main("forecast", "--data-dir", str(data_dir), *argv)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and expected.replace("DATA", str(data_dir)) in lines[0], lines
    assert not data_dir.exists()


def no_usable_champion(data_dir: Path, why: str) -> str:
    return (
        f"wavecast: error: no usable champion in {data_dir}: version {V1} cannot serve: {why}; "
        "promote a version that can (wavecast models list) or retrain"
    )


def keras_champion(tmp_path: Path, content: bytes) -> Path:
    data_dir = tmp_path / "data"
    version_with(data_dir, V1, {"model.keras": content}, forecaster="network")
    record_champion(DataDir(str(data_dir)), V1, METRICS, "promote", "first")
    return data_dir


@pytest.mark.unit
@pytest.mark.parametrize(
    "damage", ["spec", "garbage model", "lambda model", "other windows", "nan source"]
)
def test_forecast_with_a_champion_that_cannot_serve_is_one_line_and_writes_nothing(
    tmp_path: Path, damage: str, wavecast_main: Callable[..., Ran]
) -> None:
    """Exit 2 and one line naming the file and what was expected, before Prefect loads; a
    statistical champion is judged without TensorFlow."""
    blocked: tuple[str, ...] = ("prefect",)
    if damage in ("spec", "nan source"):
        blocked = ("prefect", "tensorflow", "keras")
        data_dir = naive_champion(
            tmp_path, values_csv(30) + ("nan\n" if damage == "nan source" else "")
        )
        if damage == "spec":
            (data_dir / "models" / V1 / SPEC_FILE).write_text(SECRET)
    else:
        content = {
            "garbage model": SECRET.encode(),
            "lambda model": keras_file(tmp_path, 5, 1, code=True),
            "other windows": keras_file(tmp_path, 7, 1),
        }[damage]
        data_dir = keras_champion(tmp_path, content)
    before = snapshot(data_dir)

    result = wavecast_main("forecast", "--data-dir", str(data_dir), blocked=blocked)

    assert result.returncode == 2, result.stderr
    expected = {
        "spec": no_usable_champion(data_dir, "forecaster.json is not a forecaster spec"),
        "garbage model": no_usable_champion(
            data_dir, "model.keras does not load with safe_mode (ValueError)"
        ),
        "lambda model": no_usable_champion(
            data_dir, "model.keras does not load with safe_mode (ValueError)"
        ),
        "other windows": no_usable_champion(
            data_dir, "model.keras does not forecast 1 step(s) from a window of 5 point(s)"
        ),
        "nan source": f"wavecast: error: --source {tmp_path / 'series.csv'}: 1 NaN/infinite "
        "value(s) at data row 31 (line 32 of a CSV), which --missing error refuses: fix the "
        "source, or retrain with --missing drop or --missing interpolate",
    }[damage]
    ours = [line for line in result.stderr.splitlines() if line.startswith("wavecast")]
    assert ours == [expected] and "Traceback" not in result.stderr
    if "tensorflow" in blocked:  # else TensorFlow's own start-up lines may precede ours
        assert result.stderr.splitlines() == [expected]
    assert snapshot(data_dir) == before


@pytest.mark.unit
@pytest.mark.parametrize(("series", "shown"), [("nosuch", "nosuch"), ("a\nb", "'a\\nb'")])
def test_forecast_of_an_unknown_series_names_it_in_one_line(
    tmp_path: Path, series: str, shown: str, wavecast_main: Callable[..., Ran]
) -> None:
    panel = naive_panel(tmp_path, ("a", "b"))
    result = wavecast_main(
        "forecast", "--data-dir", str(panel), "--series", "a", "--series", series
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"wavecast: error: --series {shown}: no such series in {panel}"
    ]
    assert not (panel / "forecasts").exists()


@pytest.mark.unit
def test_rollback_to_a_champion_that_cannot_serve_is_refused(
    tmp_path: Path, wavecast_main: Callable[..., Ran]
) -> None:
    data_dir = tmp_path / "data"
    store = DataDir(str(data_dir))
    for version in (V1, V2):
        naive_version(data_dir, version)
        record_champion(store, version, METRICS, "promote", "better")
    (data_dir / "models" / V1 / SPEC_FILE).write_text("{}")
    log_files = [data_dir / "models" / name for name in ("champion.json", "promotions.jsonl")]
    before = [path.read_bytes() for path in log_files]

    result = wavecast_main("models", "rollback", "--data-dir", str(data_dir))

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"wavecast: error: not rolled back: version {V1} cannot serve: forecaster.json is not "
        "a forecaster spec; promote a version that can (wavecast models list)"
    ]
    assert [path.read_bytes() for path in log_files] == before


@pytest.mark.flow  # runs the wavecast command
def test_a_panel_forecast_skips_what_cannot_serve_and_fails_when_nothing_could(
    tmp_path: Path, prefect_api_url: str
) -> None:
    """b's champion is damaged: the panel forecasts a and says why not b (exit 0); asked for
    b alone, nothing is forecast: exit 2. (Both report to the test server, not each to a
    server of its own.)"""
    panel = naive_panel(tmp_path, ("a", "b"))
    (Path(SeriesHome(str(panel), "b").uri()) / "models" / V1 / SPEC_FILE).write_text(SECRET)
    env = ("--data-dir", str(panel))
    server = {"PREFECT_API_URL": prefect_api_url}

    both = run_cli(tmp_path, "forecast", *env, blocked=(), settings=server)
    alone = run_cli(tmp_path, "forecast", *env, "--series", "b", blocked=(), settings=server)

    assert both.returncode == 0, both.stderr[-3000:]
    lines = both.stdout.splitlines()
    assert re.fullmatch(r"a {15}31  2  80 %: \[-?[\d.]+, [\d.]+\]", lines[0]), lines[0]
    assert lines[1].startswith("b               not forecast: no usable champion in ")
    assert alone.returncode == 2
    assert alone.stderr.splitlines()[-1] == (
        f"wavecast: error: no series of {panel} could be forecast (1 skipped)"
    )
    assert "AKID" not in both.stdout + both.stderr + alone.stdout + alone.stderr


@pytest.mark.unit
def test_ids_from_data_and_argv_are_escaped_in_models_list(
    tmp_path: Path, wavecast_main: Callable[..., Ran]
) -> None:
    """An id is text from data: a right-to-left override in one would reorder the table's
    line on a terminal, and an asked-for id's escape codes would steer it."""
    panel = naive_panel(tmp_path, ("north", "ab\u202ecd"))

    listed = wavecast_main("models", "list", "--data-dir", str(panel))
    assert listed.returncode == 0, listed.stderr
    assert "\u202e" not in listed.stdout
    assert "'ab\\u202ecd'" in listed.stdout.split() and "north" in listed.stdout.split()

    asked = wavecast_main("models", "list", "--data-dir", str(panel), "--series", "x\x1b[2J\ny")
    assert asked.returncode == 2
    assert asked.stderr.splitlines() == [
        f"wavecast: error: --series 'x\\x1b[2J\\ny': no such series in {panel}"
    ]
