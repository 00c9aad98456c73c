"""`import wavecast`: DataFrames in, DataFrames out, over the same flows as the command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import wavecast
from wavecast.errors import InvalidInputError
from wavecast.forecasts_store import typed_times

README = Path(__file__).resolve().parents[1] / "README.md"
MONTHS = pd.date_range("2015-01-01", periods=60, freq="MS")
TINY: dict[str, Any] = {
    "epochs": 3,
    "units": 4,
    "candidates": ("network", "naive", "seasonal_naive"),
}


def nixtla_panel(ids: tuple[str, ...] = ("a", "b", "c")) -> pd.DataFrame:
    """Monthly seasonal series in the long format statsforecast takes: unique_id, ds, y."""
    rng = np.random.default_rng(0)
    season = np.sin(np.arange(len(MONTHS)) * 2 * np.pi / 12)
    return pd.concat(
        pd.DataFrame(
            {"unique_id": uid, "ds": MONTHS, "y": 100 + 10 * k + 5 * season + rng.normal(0, 1, 60)}
        )
        for k, uid in enumerate(ids)
    )


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_a_nixtla_frame_retrains_and_forecasts_with_typed_timestamps(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    first = wavecast.retrain(nixtla_panel(), data_dir=data_dir, **TINY)

    assert first.series["unique_id"].tolist() == ["a", "b", "c"]
    assert first.series["status"].tolist() == ["promoted"] * 3 and first.skipped == {}
    forecasts = wavecast.forecast(data_dir, levels=(80,))
    assert list(forecasts.columns) == [
        "unique_id", "ds", "step", "forecaster", "forecast", "lo-80", "hi-80", "version", "origin"
    ]  # fmt: skip
    assert pd.api.types.is_datetime64_any_dtype(forecasts["ds"])
    # Monthly dates, no window settings given: a year ahead from the month after the last.
    assert forecasts["unique_id"].tolist() == [key for key in "abc" for _ in range(12)]
    year = [MONTHS[-1] + pd.DateOffset(months=step) for step in range(1, 13)]
    assert forecasts["ds"].tolist() == year * 3
    assert (forecasts["origin"] == MONTHS[-1]).all()
    assert (forecasts["lo-80"] <= forecasts["forecast"]).all()
    assert (forecasts["forecast"] <= forecasts["hi-80"]).all()
    served = dict(zip(first.series["unique_id"], first.series["version"], strict=True))
    assert dict(zip(forecasts["unique_id"], forecasts["version"], strict=True)) == served

    again = wavecast.retrain(nixtla_panel(), data_dir=data_dir, **TINY)  # the same frame
    assert again.series["status"].tolist() == ["unchanged"] * 3

    registry = wavecast.models(data_dir)
    assert registry["unique_id"].tolist() == ["a", "b", "c"]
    assert registry["champion"].all() and registry["version"].tolist() == list(served.values())


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_a_frame_without_ids_is_one_series_named_by_its_target(tmp_path: Path) -> None:
    frame = nixtla_panel(("only",)).drop(columns="unique_id")
    frame["other"] = 1.0  # a second numeric column: y is the target because of its name

    result = wavecast.retrain(frame, data_dir=tmp_path, **TINY)

    assert result.series["unique_id"].tolist() == ["y"]
    forecasts = wavecast.forecast(tmp_path)
    assert forecasts["unique_id"].tolist() == ["y"] * 12  # a year of monthly data
    assert list(forecasts.columns) >= ["lo-80", "hi-80", "lo-95", "hi-95"]


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_a_champion_is_promoted_rolled_back_and_pruned_from_python(tmp_path: Path) -> None:
    panel = nixtla_panel(("a", "b"))
    for months in (48, 54, 60):  # three versions of each series
        known = panel[panel["ds"] < MONTHS[months - 1]]
        wavecast.retrain(known, data_dir=tmp_path, candidates=("naive", "seasonal_naive"))
    versions = wavecast.models(tmp_path, series="a")
    assert len(versions) == 3
    champion = versions.loc[versions["champion"], "version"].item()
    other = versions.loc[~versions["champion"], "version"].iloc[0]

    assert wavecast.promote(other, reason="by test", data_dir=tmp_path, series="a") == other
    assert wavecast.models(tmp_path, series="a").query("champion")["version"].item() == other
    assert wavecast.rollback(data_dir=tmp_path, series="a") == champion
    dry = wavecast.prune(tmp_path, keep_versions=1, min_age_s=0, dry_run=True)
    gone = {Path(removal.path).name for removal in dry.removed if "/models/" in removal.path}
    assert gone and champion not in gone and versions["version"].iloc[-1] not in gone
    assert len(wavecast.models(tmp_path)) == 6  # a dry run removes nothing

    wavecast.prune(tmp_path, keep_versions=1, min_age_s=0)

    assert len(wavecast.models(tmp_path)) == 6 - len(gone)
    with pytest.raises(InvalidInputError, match=r"^keep_versions=0: "):
        wavecast.prune(tmp_path, keep_versions=0)


@pytest.mark.unit
def test_an_unknown_setting_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"unknown setting\(s\) epoch;"):
        wavecast.retrain(nixtla_panel(), data_dir=tmp_path, epoch=3)
    with pytest.raises(TypeError, match=r"unknown setting\(s\) level;"):
        wavecast.forecast(tmp_path, level=80)


@pytest.mark.unit
def test_targets_become_timestamps_with_their_offsets_or_integers() -> None:
    assert typed_times(["17", "18"]).tolist() == [17, 18]
    assert pd.api.types.is_integer_dtype(typed_times(["17"]))
    tokyo = typed_times(["2024-01-01T09:00:00+09:00", "2024-01-02T09:00:00+09:00"])
    assert tokyo[0] == pd.Timestamp("2024-01-01T00:00:00Z")
    across_dst = typed_times(["2024-03-30T12:00:00+01:00", "2024-03-31T12:00:00+02:00"])
    assert (across_dst[1] - across_dst[0]) == pd.Timedelta(hours=23)
    irregular = typed_times(["+1", "+2"])
    assert irregular.isna().all()


@pytest.mark.flow  # a fresh interpreter: a subprocess
def test_importing_wavecast_loads_neither_prefect_nor_pandas() -> None:
    """A worker importing wavecast.config pays for the core only; the API loads on first use."""
    check = (
        "import sys, wavecast, wavecast.config; "
        "assert 'prefect' not in sys.modules and 'pandas' not in sys.modules; "
        "assert callable(wavecast.retrain) and 'prefect' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", check], check=True)


README_EXAMPLE = "## Forecast monthly data from Python"


def readme_example() -> tuple[str, str, str]:
    """The README's first example as a reader copies it, what the README says it prints, and
    the line it quotes from stderr (its words, however the README wraps them)."""
    section = README.read_text().split(README_EXAMPLE, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```.*?```text\n(.*?)```", section, re.DOTALL)
    quoted = re.search(r"`(wavecast: [^`]*)`", section)
    assert found and quoted, f"README's {README_EXAMPLE!r}: no example, output or quoted line"
    return found.group(1), found.group(2), " ".join(quoted.group(1).split())


def figures_differing(shown: str, printed: str) -> list[str]:
    """Where the README's output and a run's differ: words and integers exactly, a decimal to
    one unit of the last digit the README shows, give or take rounding (training's floating
    point may move it)."""
    pairs = list(zip(shown.split(), printed.split(), strict=False))
    differing = [f"{len(shown.split())} words shown, {len(printed.split())} printed"]
    differing = differing if len(shown.split()) != len(printed.split()) else []
    for want, got in pairs:
        if want == got:
            continue
        decimals = want.partition(".")[2]
        numbers = decimals.isdigit() and re.fullmatch(r"-?\d+\.\d+", got)
        if numbers and abs(float(want) - float(got)) <= 1.5 * 10.0 ** -len(decimals):
            continue
        differing.append(f"README {want!r}, run {got!r}")
    return differing


@pytest.mark.unit
def test_figures_differing_holds_decimals_to_their_last_digit() -> None:
    assert figures_differing("east 1.03 12", "east 1.04 12") == []
    assert figures_differing("east 1.03 12", "east 1.05 12") == ["README '1.03', run '1.05'"]
    assert figures_differing("12 2024-01-01", "13 2024-02-01") == [
        "README '12', run '13'",
        "README '2024-01-01', run '2024-02-01'",
    ]
    assert figures_differing("a b", "a") == ["2 words shown, 1 printed"]


@pytest.mark.flow
def test_the_readmes_python_example_runs_as_written(tmp_path: Path, prefect_api_url: str) -> None:
    """The first screen's example, copied into a file and run with `python file.py` (no
    __main__ guard: a small panel runs in the calling process) in a fresh directory, defaults
    and all: a year of each monthly series, typed, and the very lines the README shows."""
    code, shown, said = readme_example()
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "MPLBACKEND": "Agg"}
    script = tmp_path / "example.py"
    script.write_text(code + "\nforecasts.to_parquet('forecasts.parquet')\n")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert figures_differing(shown, done.stdout) == [], done.stdout
    assert said in " ".join(done.stderr.split())
    assert (tmp_path / "north.png").read_bytes().startswith(b"\x89PNG")
    registry = wavecast.models(tmp_path / "data")
    assert sorted(registry["unique_id"]) == ["east", "north", "south"]
    assert registry["champion"].all()
    forecasts = pd.read_parquet(tmp_path / "forecasts.parquet")
    assert forecasts.groupby("unique_id").size().to_dict() == {"east": 12, "north": 12, "south": 12}
    assert pd.api.types.is_datetime64_any_dtype(forecasts["ds"]) and forecasts["ds"].notna().all()
    year = pd.date_range("2024-01-01", periods=12, freq="MS").tolist()
    assert all(group["ds"].tolist() == year for _, group in forecasts.groupby("unique_id"))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("typo in target_col", "target_col yy: not in data (2 column(s), numeric: column 2)"),
        ("text in y", "target_col y: not numeric in data"),
        ("empty frame", "data: no rows"),
        ("a month missing", "data: series b: time column 'ds' has no row at 2015-06-01"),
        ("a setting out of range", "steps=0: Input should be greater than or equal to 1"),
    ],
)
def test_bad_input_from_python_is_one_line_in_the_apis_words_and_writes_nothing(
    tmp_path: Path, case: str, message: str
) -> None:
    panel = nixtla_panel(("a", "b"))
    calls = {
        "typo in target_col": lambda: wavecast.retrain(panel, target_col="yy", data_dir=tmp_path),
        "text in y": lambda: wavecast.retrain(panel.assign(y="x"), data_dir=tmp_path),
        "empty frame": lambda: wavecast.retrain(panel.iloc[:0], data_dir=tmp_path),
        "a month missing": lambda: wavecast.retrain(
            panel.reset_index(drop=True).drop(index=65), data_dir=tmp_path
        ),
        "a setting out of range": lambda: wavecast.retrain(panel, data_dir=tmp_path, steps=0),
    }
    with pytest.raises(InvalidInputError) as raised:
        calls[case]()
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    assert "--" not in str(raised.value) and "sources/" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.unit
def test_an_unknown_series_is_refused_not_an_empty_frame(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"^series nope: no such series in "):
        wavecast.forecast(tmp_path, series=["nope"])
    with pytest.raises(InvalidInputError, match=r"^series nope: no such series in "):
        wavecast.models(tmp_path, series="nope")


@pytest.mark.unit
def test_repeated_times_without_an_id_column_ask_for_id_col(tmp_path: Path) -> None:
    panel = nixtla_panel(("a", "b")).rename(columns={"unique_id": "store"})
    with pytest.raises(
        InvalidInputError, match=r"several series\? name their id column with id_col$"
    ):
        wavecast.retrain(panel, data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_monitor_reads_new_actuals_from_a_frame(tmp_path: Path) -> None:
    """A frame's source is kept as it was given: the months after it arrive in a newer frame,
    which monitor(data=...) scores the stored forecasts against."""
    panel = nixtla_panel(("a", "b"))
    known = panel[panel["ds"] < MONTHS[48]]
    wavecast.retrain(known, data_dir=tmp_path, **TINY)
    forecasts = wavecast.forecast(tmp_path)
    assert forecasts.groupby("unique_id").size().to_dict() == {"a": 12, "b": 12}

    unseen = wavecast.monitor(tmp_path)
    seen = wavecast.monitor(tmp_path, data=panel)

    assert unseen["realized"].tolist() == [0, 0]
    assert seen["unique_id"].tolist() == ["a", "b"] and seen["realized"].tolist() == [12, 12]
