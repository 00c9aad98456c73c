"""Long frames as the forecasting libraries take them: dates as text, rows in any order, one
row per series and time, and no skipped step of a regular series unless asked to fill it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import wavecast
from wavecast.config import SeriesSpec, WindowSpec
from wavecast.errors import InvalidInputError
from wavecast.forecasting import target_labels
from wavecast.forecasts_store import typed_times
from wavecast.generate import LoadedSeries, load_series, read_series
from wavecast.home import SeriesHome
from wavecast.panel import split_source
from wavecast.storage import DataDir
from wavecast.times import inferred_season

MONTHS = pd.date_range("2019-01-01", periods=36, freq="MS")
MONTH_ENDS = pd.date_range("2019-01-31", periods=36, freq="ME")
QUICK: dict[str, Any] = {"candidates": ("naive", "seasonal_naive"), "horizon": 1, "steps": 3}
GAP_ADVICE = (
    "fill gaps with --missing interpolate, keep them with --missing drop, or fix the source"
)


def monthly_panel(
    ids: tuple[str, ...] = ("a", "b", "c"), months: pd.DatetimeIndex = MONTHS
) -> pd.DataFrame:
    """Seasonal monthly series in Nixtla's long format, sorted by id and time."""
    rng = np.random.default_rng(0)
    season = 5 * np.sin(2 * np.pi * np.arange(len(months)) / 12)
    frames = [
        pd.DataFrame(
            {"unique_id": key, "ds": months, "y": 100 + 10 * k + season + rng.normal(0, 1, 36)}
        )
        for k, key in enumerate(ids)
    ]
    return pd.concat(frames, ignore_index=True)


def as_read_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as pd.read_csv gives it back: its dates as text."""
    return frame.assign(ds=frame["ds"].dt.strftime("%Y-%m-%d"))


def shuffled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


def without(frame: pd.DataFrame, key: str, moment: pd.Timestamp) -> pd.DataFrame:
    return frame[~((frame["unique_id"] == key) & (frame["ds"] == moment))]


def parquet(frame: pd.DataFrame, path: Path) -> str:
    frame.to_parquet(path, index=False)
    return str(path)


def series_of(source: str, key: str, **fields: object) -> LoadedSeries:
    spec = {"source": source, "id_column": "unique_id", "column": "y", "series": (key,), **fields}
    return load_series(SeriesSpec.model_validate(spec))


def panel_spec(source: str, **fields: object) -> SeriesSpec:
    return SeriesSpec.model_validate(
        {"source": source, "id_column": "unique_id", "column": "y", **fields}
    )


def next_months(last: pd.Timestamp, count: int, month_end: bool = False) -> list[pd.Timestamp]:
    step = pd.offsets.MonthEnd(1) if month_end else pd.offsets.MonthBegin(1)
    return [last + step * k for k in range(1, count + 1)]


@pytest.mark.unit
def test_shuffled_rows_give_the_series_sorted_rows_give(tmp_path: Path) -> None:
    """statsforecast sorts a frame by id and time; so does wavecast: the same series (values,
    times, stored copy) whatever the rows' order, for a panel and for one series."""
    ordered = monthly_panel()
    sources = [parquet(ordered, tmp_path / "sorted.parquet")]
    sources.append(parquet(shuffled(ordered), tmp_path / "shuffled.parquet"))
    splits = [
        split_source(panel_spec(source), WindowSpec(), DataDir(str(tmp_path / name)))
        for source, name in zip(sources, ("one", "two"), strict=True)
    ]

    assert splits[0].skipped == splits[1].skipped == {}
    refs = [[(r.key, r.series_id, r.n_points, r.season) for r in s.series] for s in splits]
    assert refs[0] == refs[1]
    assert [key for key, *_ in refs[0]] == ["a", "b", "c"]
    for ref in splits[1].series:
        assert ref.key is not None
        stored = read_series(ref, SeriesHome(str(tmp_path / "two"), ref.key).store)
        expected = ordered.loc[ordered["unique_id"] == ref.key, "y"].to_numpy()
        assert np.array_equal(stored, expected)

    alone = ordered[ordered["unique_id"] == "b"].drop(columns="unique_id")
    one = load_series(SeriesSpec(source=parquet(shuffled(alone), tmp_path / "b.parquet")))
    assert np.array_equal(one.values, alone["y"].to_numpy())
    assert one.times is not None and np.array_equal(one.times, MONTHS.to_numpy())


@pytest.mark.unit
def test_dates_as_text_give_the_season_and_forecast_dates_of_typed_dates(tmp_path: Path) -> None:
    """A `ds` of text (a frame from pd.read_csv, a CSV of 2019-01 months) reads as the dates
    it spells: the same times, a season of 12 and targets the months after the last."""
    typed = monthly_panel()
    sources = {
        "typed": parquet(typed, tmp_path / "typed.parquet"),
        "text": parquet(as_read_csv(typed), tmp_path / "text.parquet"),
    }
    months_csv = tmp_path / "months.csv"
    as_read_csv(typed).assign(ds=typed["ds"].dt.strftime("%Y-%m")).to_csv(months_csv, index=False)
    sources["csv"] = str(months_csv)
    window = WindowSpec(horizon=1, steps=3)
    expected = tuple(stamp.isoformat() for stamp in next_months(MONTHS[-1], 3))

    for name, source in sources.items():
        series = series_of(source, "c")
        assert series.times is not None, name
        assert np.array_equal(series.times, MONTHS.to_numpy()), name
        assert inferred_season(series.times) == 12, name
        assert target_labels(series.times, len(series.values), window)[1] == expected, name
    text, typed_series = series_of(sources["text"], "c"), series_of(sources["typed"], "c")
    assert np.array_equal(text.values, typed_series.values)


@pytest.mark.unit
def test_a_repeated_time_is_refused_naming_the_first_series_and_time(tmp_path: Path) -> None:
    frame = monthly_panel()
    repeats = pd.concat([frame.iloc[[80, 40]], frame], ignore_index=True)  # c's, then b's
    source = parquet(repeats, tmp_path / "repeats.parquet")

    with pytest.raises(InvalidInputError) as caught:
        split_source(panel_spec(source), WindowSpec(), DataDir(str(tmp_path / "data")))

    assert str(caught.value) == (
        f"--source {source}: series b: time column 'ds' has more than one row at 2019-05-01: "
        "one row per series and time"
    )
    assert not (tmp_path / "data").exists()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("months", "shown"), [(MONTHS, "2019-05-01"), (MONTH_ENDS, "2019-05-31")], ids=["MS", "ME"]
)
def test_a_skipped_month_is_refused_naming_the_series_and_month(
    tmp_path: Path, months: pd.DatetimeIndex, shown: str
) -> None:
    frame = without(without(monthly_panel(months=months), "b", months[4]), "c", months[2])
    source = parquet(shuffled(frame), tmp_path / "gap.parquet")

    with pytest.raises(InvalidInputError) as caught:
        split_source(panel_spec(source), WindowSpec(), DataDir(str(tmp_path / "data")))

    assert str(caught.value) == (
        f"--source {source}: series b: time column 'ds' has no row at {shown}, a step of its "
        f"monthly series: {GAP_ADVICE}"
    )
    with pytest.raises(InvalidInputError, match=f"^--source {source}: series b: .* {shown}"):
        series_of(source, "a")  # the source is refused whichever of its series is read


@pytest.mark.unit
def test_interpolate_fills_a_skipped_month_and_drop_keeps_the_gap(tmp_path: Path) -> None:
    frame = monthly_panel()
    source = parquet(without(frame, "b", MONTHS[4]), tmp_path / "gap.parquet")
    given = frame.loc[frame["unique_id"] == "b", "y"].to_numpy()

    filled = series_of(source, "b", missing="interpolate")

    assert filled.times is not None and np.array_equal(filled.times, MONTHS.to_numpy())
    assert filled.values[4] == pytest.approx((given[3] + given[5]) / 2, rel=1e-12)
    assert np.array_equal(np.delete(filled.values, 4), np.delete(given, 4))
    kept = series_of(source, "b", missing="drop")
    assert kept.times is not None and np.array_equal(kept.times, np.delete(MONTHS.to_numpy(), 4))
    assert np.array_equal(kept.values, np.delete(given, 4))
    assert inferred_season(filled.times) == inferred_season(kept.times) == 12


@pytest.mark.unit
@pytest.mark.parametrize("month_end", [False, True], ids=["MS", "ME"])
def test_forecast_dates_follow_the_last_month_even_across_a_kept_gap(
    tmp_path: Path, month_end: bool
) -> None:
    """Month starts and month ends, with a month dropped (--missing drop keeps the gap):
    the targets are the months after the last, never NaT."""
    months = MONTH_ENDS if month_end else MONTHS
    frame = without(monthly_panel(months=months), "a", months[30])
    source = parquet(frame, tmp_path / "gap.parquet")
    for missing in ("drop", "interpolate"):
        series = series_of(source, "a", missing=missing)
        _, targets, note = target_labels(
            series.times, len(series.values), WindowSpec(horizon=1, steps=12)
        )
        dates = typed_times(targets)
        assert note is None and not dates.isna().any()
        assert dates.tolist() == next_months(months[-1], 12, month_end)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("dates", "message"),
    [
        (
            ["2019-01-01", "2019-02-01", "2019-13-01"],
            "time column 'ds': '2019-13-01' (data row 3) is not a date wavecast reads",
        ),
        (
            ["01/02/2019", "01/03/2019", "01/04/2019"],
            "time column 'ds': '01/02/2019' (data row 1) reads as two dates, month first and "
            "day first",
        ),
        (["2019-01-01", None, "2019-03-01"], "time column 'ds' is empty at data row 2"),
    ],
    ids=["unreadable", "ambiguous", "empty"],
)
def test_times_that_read_as_no_date_or_two_are_refused_in_one_line(
    tmp_path: Path, dates: list[str | None], message: str
) -> None:
    source = parquet(pd.DataFrame({"ds": dates, "y": [1.0, 2.0, 3.0]}), tmp_path / "t.parquet")
    with pytest.raises(InvalidInputError) as caught:
        load_series(SeriesSpec(source=source))
    assert str(caught.value).startswith(f"--source {source}: {message}")
    assert "\n" not in str(caught.value)


@pytest.mark.unit
def test_one_reading_of_day_first_dates_is_taken_when_only_it_fits(tmp_path: Path) -> None:
    dates = ["01/02/2019", "01/03/2019", "13/03/2019"]
    source = parquet(pd.DataFrame({"ds": dates, "y": [1.0, 2.0, 3.0]}), tmp_path / "t.parquet")
    series = load_series(SeriesSpec(source=source))
    expected = pd.to_datetime(["2019-02-01", "2019-03-01", "2019-03-13"]).to_numpy()
    assert series.times is not None and np.array_equal(series.times, expected)


@pytest.mark.unit
@pytest.mark.parametrize("form", ["frame", "csv"])
def test_a_refused_frame_or_file_writes_nothing(tmp_path: Path, form: str) -> None:
    """Validation comes first: no copy of the frame in sources/, no raw series, nothing."""
    data_dir = tmp_path / "data"
    (data_dir / "keep").mkdir(parents=True)
    (data_dir / "keep" / "note.txt").write_text("as it was")
    before = sorted(path.relative_to(data_dir) for path in data_dir.rglob("*"))
    gap = as_read_csv(without(monthly_panel(), "b", MONTHS[4]))
    data: pd.DataFrame | str = gap
    if form == "csv":
        gap.to_csv(tmp_path / "gap.csv", index=False)
        data = str(tmp_path / "gap.csv")
    where = "data" if form == "frame" else f"data {data}"  # named as the API's argument

    with pytest.raises(InvalidInputError) as caught:
        wavecast.retrain(data, id_col="unique_id", data_dir=data_dir, **QUICK)

    assert str(caught.value) == (
        f"{where}: series b: time column 'ds' has no row at 2019-05-01, a step of its monthly "
        "series: fill gaps with missing='interpolate', keep them with missing='drop', or fix "
        "the source"
    )
    assert sorted(path.relative_to(data_dir) for path in data_dir.rglob("*")) == before
    repeated = pd.concat([monthly_panel(), monthly_panel().iloc[[3]]])
    with pytest.raises(InvalidInputError, match=r"^data: series a: .* at 2019-04-01"):
        wavecast.retrain(repeated, data_dir=data_dir, **QUICK)
    assert sorted(path.relative_to(data_dir) for path in data_dir.rglob("*")) == before


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_a_shuffled_frame_of_text_dates_forecasts_the_months_after_each_last(
    tmp_path: Path,
) -> None:
    """The new user's frame: `ds` as text, rows shuffled, one series a year shorter. Each
    series' forecasts are the 3 months after its own last, typed, without NaT; the same
    frame with typed, sorted dates is the same data, so it retrains nothing."""
    frame = monthly_panel()
    frame = frame[(frame["unique_id"] != "c") | (frame["ds"] <= MONTHS[23])]
    data_dir = tmp_path / "data"

    first = wavecast.retrain(shuffled(as_read_csv(frame)), data_dir=data_dir, **QUICK)

    assert first.series["status"].tolist() == ["promoted"] * 3
    forecasts = wavecast.forecast(data_dir)
    assert pd.api.types.is_datetime64_any_dtype(forecasts["ds"])
    assert not forecasts["ds"].isna().any()
    for key, last in (("a", MONTHS[-1]), ("b", MONTHS[-1]), ("c", MONTHS[23])):
        ahead = forecasts[forecasts["unique_id"] == key]
        assert ahead["ds"].tolist() == next_months(last, 3), key
        assert ahead["step"].tolist() == [1, 2, 3] and (ahead["origin"] == last).all(), key

    again = wavecast.retrain(frame, data_dir=data_dir, **QUICK)
    assert again.series["status"].tolist() == ["unchanged"] * 3
