"""The command line: flags fill the nested config; bad flags fail fast, in one line, harmlessly."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.processes import HEAVY_MODULES, Ran, import_blockers
from wavecast.config import RetrainConfig
from wavecast.flows.cli import build_parser, config_from_args

WAVECAST = Path(sys.executable).with_name("wavecast")


def config(*argv: str) -> RetrainConfig:
    result: RetrainConfig = config_from_args(build_parser().parse_args(["retrain", *argv]))
    return result


@pytest.mark.unit
def test_no_flags_is_the_default_config() -> None:
    """Without flags the CLI builds exactly RetrainConfig()'s tutorial defaults."""
    assert config() == RetrainConfig()


@pytest.mark.unit
def test_every_flag_lands_in_its_nested_field() -> None:
    """Each flag is parsed to its field's type at its place in RetrainConfig."""
    c = config(
        *("--source", "s.csv", "--column", "load", "--length", "50", "--noise", "0.25"),
        *("--noise-seed", "4", "--missing", "drop", "--input-len", "7", "--horizon", "1"),
        *("--train-fraction", "0.5", "--cell", "lstm", "--units", "8", "--scaling", "none"),
        *("--epochs", "3", "--batch-size", "4", "--learning-rate", "0.01", "--seed", "9"),
        *("--tolerance", "0.2", "--data-dir", "elsewhere", "--refresh"),
    )
    assert c.series.model_dump() == {
        **RetrainConfig().series.model_dump(),
        **dict(source="s.csv", column="load", length=50, noise=0.25, noise_seed=4),
        "missing": "drop",
    }
    assert (c.windows.input_len, c.windows.horizon, c.windows.train_fraction) == (7, 1, 0.5)
    assert (c.model.cell, c.model.units, c.model.scaling) == ("lstm", 8, "none")
    assert (c.train.epochs, c.train.batch_size, c.train.seed) == (3, 4, 9)
    assert c.train.learning_rate == 0.01 and isinstance(c.train.epochs, int)
    assert (c.gate.tolerance, c.data_dir, c.refresh) == (0.2, "elsewhere", True)


def command_paths(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every command and subcommand the parser knows, found by walking it: a new one is covered."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_paths(sub, (*path, name))


COMMANDS = list(command_paths(build_parser()))


def offered_subcommands(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> set[str]:
    """The subcommands `wavecast COMMAND --help` offers: its positional {a,b,...} choice."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    shown = capsys.readouterr().out
    positionals = shown.partition("positional arguments:\n")[2].partition("\n\n")[0]
    choices = re.findall(r"^  \{(.+)\}$", positionals, re.MULTILINE)
    return {name for choice in choices for name in choice.split(",")}


@pytest.mark.unit
def test_the_commands_walked_are_all_of_them(capsys: pytest.CaptureFixture[str]) -> None:
    """Under each command the walk finds the subcommands its --help offers, no fewer, no more:
    the tests parametrized on COMMANDS cover every command, a new one included."""
    for command in COMMANDS:
        below = len(command) + 1
        walked = {path[-1] for path in COMMANDS if len(path) == below and path[:-1] == command}
        assert walked == offered_subcommands(command, capsys), command
    assert ("models", "rollback") in COMMANDS and ("monitor",) in COMMANDS


@pytest.mark.unit
@pytest.mark.parametrize("command", COMMANDS, ids=lambda path: " ".join(path) or "wavecast")
def test_every_command_s_help_renders(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse formats help with %: a literal one in a description (e.g. the monitor's
    "95 % interval") must come out as itself, not crash."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: wavecast {' '.join(command)}".rstrip())
    if command == ("monitor",):
        assert "inside their 95 % interval (default: 0.5)" in " ".join(shown.split())


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under root, with a hash of each file's bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


def run_cli(
    tmp_path: Path,
    *argv: str,
    blocked: tuple[str, ...] = HEAVY_MODULES,
    settings: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `wavecast` with the `blocked` modules made unimportable, on the code under test
    (the caller's PYTHONPATH, e.g. a worktree's, stays after the blockers), plus `settings`."""
    path = os.pathsep.join(
        p for p in (import_blockers(tmp_path, blocked), os.environ.get("PYTHONPATH")) if p
    )
    env = {**os.environ, "PYTHONPATH": path, "PREFECT_HOME": str(tmp_path / "home")}
    env.update(settings or {})
    return subprocess.run(
        [str(WAVECAST), *argv], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def populated_data_dir(tmp_path: Path) -> Path:
    """A data dir that already holds files a failed run must not touch."""
    data_dir = tmp_path / "data"
    (data_dir / "models").mkdir(parents=True)
    (data_dir / "keep.txt").write_text("precious\n")
    (data_dir / "models" / "champion.json").write_text('{"version": "x"}\n')
    return data_dir


@pytest.mark.unit
@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "-3"], "--epochs"),
        (["--input-len", "0"], "--input-len"),
        (["--batch-size", "0"], "--batch-size"),
        (["--train-fraction", "1.5"], "--train-fraction"),
        (["--cell", "banana"], "--cell"),
    ],
)
def test_bad_flag_fails_in_one_line_and_touches_nothing(
    tmp_path: Path, argv: list[str], flag: str, wavecast_main: Callable[..., Ran]
) -> None:
    """Exit != 0, one stderr line naming the flag, no traceback, data dir byte-identical."""
    data_dir = populated_data_dir(tmp_path)
    before = snapshot(data_dir)

    result = wavecast_main("retrain", *argv, "--data-dir", str(data_dir))

    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and flag in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    assert snapshot(data_dir) == before


def numbers_csv(count: int, blank_at: int | None = None) -> str:
    values = ["" if i == blank_at else str(i % 7) for i in range(count)]
    return "k,v\n" + "".join(f"r{i},{v}\n" for i, v in enumerate(values))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("csv_text", "extra", "expected"),
    [
        (numbers_csv(30, blank_at=3), [], "1 NaN/infinite value(s) at data row 4 (line 5 "),
        (numbers_csv(3), [], "at least 4 are needed"),
        ("name,colour\nann,red\nbob,blue\n", [], "no numeric column"),
        (numbers_csv(30), ["--column", "nosuchcolumn"], "--column nosuchcolumn: not in"),
        ("a,b\n" + "1,2\n" * 30, [], "several numeric columns (column 1, 2)"),
        ("time,v\n" + "".join(f"{i // 2},{i}\n" for i in range(30)), [], "time column 'time'"),
        (None, [], "no such file"),
    ],
    ids=["nan", "three-rows", "text", "no-column", "ambiguous", "duplicate-times", "missing"],
)
def test_bad_data_fails_in_one_line_before_tensorflow(
    tmp_path: Path,
    csv_text: str | None,
    extra: list[str],
    expected: str,
    wavecast_main: Callable[..., Ran],
) -> None:
    """Bad source data: exit 2, one line saying what is wrong, nothing written, no TF loaded."""
    data_dir = populated_data_dir(tmp_path)
    before = snapshot(data_dir)
    source = tmp_path / "series.csv"
    if csv_text is None:
        source = Path("/nonexistent/series.csv")
    else:
        source.write_text(csv_text)

    result = wavecast_main(
        *("retrain", "--source", str(source), "--data-dir", str(data_dir), *extra),
        blocked=("tensorflow", "keras"),
    )

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert snapshot(data_dir) == before


@pytest.mark.flow  # runs the wavecast command
@pytest.mark.parametrize(
    "argv",
    [
        ["retrain", "--epochs", "0"],
        ["retrain", "--source", "/nonexistent/series.csv"],
        ["forecast", "--level", "100"],
        ["models", "show", "nosuchversion"],
    ],
    ids=["flag", "data", "forecast", "models"],
)
def test_the_command_refuses_as_main_does_in_this_process(
    tmp_path: Path, argv: list[str], wavecast_main: Callable[..., Ran]
) -> None:
    """The command in a fresh process where Prefect, TensorFlow and Keras cannot be imported
    says, exits and writes what main says, exits and writes in the tests' own process: what
    the in-process refusal tests see is what a user sees."""
    data_dir = populated_data_dir(tmp_path)
    before = snapshot(data_dir)
    argv = [*argv, "--data-dir", str(data_dir)]

    fresh = run_cli(tmp_path, *argv)

    assert fresh.returncode == 2 and len(fresh.stderr.splitlines()) == 1, fresh.stderr
    here = wavecast_main(*argv)
    assert (here.returncode, here.stdout, here.stderr) == (2, fresh.stdout, fresh.stderr)
    assert snapshot(data_dir) == before
