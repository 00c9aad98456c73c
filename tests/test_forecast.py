"""Several steps per window, conformal intervals, and forecasts past the end of the data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_registry import METRICS, SECRET, V1, V2, naive_version
from wavecast.config import ForecastConfig, SeriesSpec, WindowSpec
from wavecast.errors import InvalidInputError
from wavecast.evaluate import ERRORS_FILE, SPEC_FILE, linear_forecast
from wavecast.forecasting import fan_chart, forecast_window, latest_window, target_labels
from wavecast.forecasts_store import level_key
from wavecast.generate import SeriesRef
from wavecast.home import SeriesHome
from wavecast.intervals import conformal_half_widths, held_out_coverage, resolution_floor
from wavecast.metrics import ErrorTotals, LeastSquares, persistence_forecast
from wavecast.records import Manifest
from wavecast.registry import record_champion
from wavecast.storage import DataDir
from wavecast.windows import count_windows, make_windows, min_series_length, window_schema

pytestmark = pytest.mark.unit

VALUES = np.arange(20, dtype=np.float64) * 10  # value = 10 x its index: windows read by eye


def test_a_window_targets_steps_consecutive_values_from_its_horizon() -> None:
    """input_len 3, horizon 2, steps 4: window i is v[i:i+3], targets v[i+4] ... v[i+7]."""
    starts, inputs, targets = make_windows(VALUES, 3, 2, 4)
    assert len(starts) == count_windows(20, 3, 2, 4) == 20 - 3 - 2 - 4 + 2 == 13
    assert inputs[0].tolist() == [0, 10, 20] and targets[0].tolist() == [40, 50, 60, 70]
    assert inputs[-1].tolist() == [120, 130, 140]
    assert targets[-1].tolist() == [160, 170, 180, 190]  # the last value is the last target


def test_one_step_keeps_the_tutorial_windows_and_schema() -> None:
    """steps=1: targets are the old y[i+L-1+h] as a column; Parquet y stays float64."""
    _, _, targets = make_windows(VALUES, 5, 2)
    assert targets.shape == (14, 1) and targets[0, 0] == 60
    spec = WindowSpec()
    assert window_schema(spec, fake_series()).field("y").type == pa.float64()
    several = window_schema(WindowSpec(steps=3), fake_series()).field("y").type
    assert several == pa.list_(pa.float64(), 3)


def test_more_steps_need_a_longer_series() -> None:
    base = min_series_length(WindowSpec())
    assert min_series_length(WindowSpec(steps=24)) == base + 23


def fake_series() -> SeriesRef:
    return SeriesRef(
        series_id="s", uri="u", source="sine", column=None, n_points=20, content_hash="h"
    )


def test_errors_are_totalled_per_step_and_overall() -> None:
    """Step 1 errs by 1 and 3, step 2 by 2 and 0: MSE 5 and 2, overall 3.5; MAE 2, 1, 1.5."""
    totals = ErrorTotals()
    truth = np.array([[0.0, 0.0], [0.0, 0.0]])
    totals.add(truth[:1], np.array([[1.0, 2.0]]))
    totals.add(truth[1:], np.array([[3.0, 0.0]]))
    metrics = totals.metrics()
    assert [s.mse for s in metrics.per_step] == [5.0, 2.0]
    assert [s.mae for s in metrics.per_step] == [2.0, 1.0]
    assert (metrics.mse, metrics.mae, metrics.rmse) == (3.5, 1.5, math.sqrt(3.5))


def test_persistence_repeats_the_last_value_at_every_step() -> None:
    inputs = np.array([[1.0, 2.0], [5.0, 7.0]])
    assert persistence_forecast(inputs, 3).tolist() == [[2, 2, 2], [7, 7, 7]]


def test_linear_ar_is_one_least_squares_fit_per_step() -> None:
    """On y_t = 0.5 y_t-1 - 0.2 y_t-2 + 1 every step ahead is linear in the window: exact."""
    y = [0.0, 5.0]
    while len(y) < 40:
        y.append(0.5 * y[-1] - 0.2 * y[-2] + 1.0)
    _, inputs, targets = make_windows(np.array(y), 2, 1, 3)
    solver = LeastSquares()
    solver.add(inputs[:20], targets[:20])
    solver.add(inputs[20:], targets[20:])
    weights = solver.weights()
    assert weights.shape == (3, 3)
    assert weights[:, 0] == pytest.approx([-0.2, 0.5, 1.0], abs=1e-8)  # the recurrence itself
    single = LeastSquares()
    single.add(inputs, targets[:, 2])  # the third step fitted on its own: the same weights
    assert single.weights()[:, 0] == pytest.approx(weights[:, 2], abs=1e-9)
    assert linear_forecast(weights, inputs) == pytest.approx(targets, abs=1e-8)


def test_conformal_half_width_is_the_finite_sample_quantile() -> None:
    """n = 9 errors 1..9: level 0.8 takes the ceil(10 x 0.8) = 8th smallest; 0.95 would need a
    10th, so the Student-t bound: t(0.975, 8 dof) = 2.306004 (tables) x RMS sqrt(285 / 9) x
    sqrt(1 + 1/9), finite."""
    errors = np.array([[9.0], [1.0], [5.0], [3.0], [7.0], [2.0], [8.0], [4.0], [6.0]])
    assert conformal_half_widths(errors, 0.8).tolist() == [8.0]
    assert conformal_half_widths(errors, 0.5).tolist() == [5.0]
    expected = 2.306004 * math.sqrt(285 / 9) * math.sqrt(10 / 9)
    assert conformal_half_widths(errors, 0.95).tolist() == [pytest.approx(expected, rel=1e-6)]
    two_steps = np.column_stack([errors[:, 0], 10 * errors[:, 0]])
    assert conformal_half_widths(two_steps, 0.8).tolist() == [8.0, 80.0]


def test_held_out_coverage_calibrates_on_the_first_half_and_checks_the_second() -> None:
    """First half 1..10 (80 %: 9th smallest = 9); second half: 4 of 10 errors are <= 9."""
    first = np.arange(1.0, 11.0)
    second = np.array([0.5, 9.0, 3.0, 8.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
    assert held_out_coverage(np.concatenate([first, second]), 0.8) == 0.4


def test_conformal_intervals_cover_as_promised_on_exchangeable_errors() -> None:
    rng = np.random.default_rng(0)
    errors = np.abs(rng.standard_t(3, size=(4000, 2)))
    for level in (0.8, 0.95):
        assert abs(held_out_coverage(errors, level) - level) < 0.03


def test_targets_are_indices_without_a_time_column() -> None:
    """1000 points, horizon 2, 3 steps: origin 999, targets 1001, 1002, 1003."""
    origin, targets, note = target_labels(None, 1000, WindowSpec(horizon=2, steps=3))
    assert (origin, targets, note) == ("999", ("1001", "1002", "1003"), None)


def test_targets_follow_a_regular_time_column() -> None:
    times = np.arange("2024-01-01T00", "2024-01-02T00", dtype="datetime64[h]")
    origin, targets, note = target_labels(times, len(times), WindowSpec(horizon=1, steps=2))
    assert origin == "2024-01-01T23:00:00"
    assert targets == ("2024-01-02T00:00:00", "2024-01-02T01:00:00") and note is None


def test_monthly_targets_use_the_inferred_frequency() -> None:
    """Month starts are not equally spaced in seconds; pandas infers 'MS' from the data."""
    times = np.array(["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"], "datetime64[ns]")
    _, targets, note = target_labels(times, 4, WindowSpec(horizon=1, steps=2))
    assert targets == ("2024-05-01T00:00:00", "2024-06-01T00:00:00") and note is None


def test_irregular_times_give_step_numbers_and_say_why() -> None:
    times = np.array([0, 1, 3, 7, 8])
    origin, targets, note = target_labels(times, 5, WindowSpec(horizon=1, steps=2))
    assert origin == "8" and targets == ("+1", "+2")
    assert note is not None and "irregular" in note


def test_level_labels_keep_every_digit() -> None:
    assert [level_key(v) for v in (80.0, 95.0, 2.5, 99.99999, 0.001)] == [
        "80",
        "95",
        "2.5",
        "99.99999",
        "0.001",
    ]


@given(st.lists(st.floats(0, 100, exclude_min=True, exclude_max=True), min_size=2, max_size=4))
def test_distinct_levels_get_distinct_labels_that_read_back_as_themselves(
    levels: list[float],
) -> None:
    labels = [level_key(level) for level in levels]
    assert len(set(labels)) == len(set(levels))
    assert [float(label) for label in labels] == levels


# --- forecasting from a registry built by hand: a naive champion forecasts its last value ----


def naive_champion(tmp_path: Path, csv_text: str, steps: int = 2) -> Path:
    """A data dir whose champion V1 serves the naive forecast of tmp_path/series.csv."""
    source = tmp_path / "series.csv"
    source.write_text(csv_text)
    data_dir = tmp_path / "data"
    series = SeriesSpec(source=str(source))
    naive_version(data_dir, V1, windows=WindowSpec(steps=steps), series=series)
    record_champion(DataDir(str(data_dir)), V1, METRICS, "promote", "first")
    return data_dir


def naive_panel(tmp_path: Path, keys: tuple[str, ...]) -> Path:
    """A panel data dir: each series of tmp_path/panel.csv with its own naive champion V1.
    Series number k's values are k * 10 + (row % 9) for 30 rows: its last value is k * 10 + 2."""
    source = tmp_path / "panel.csv"
    rows = [
        f"{key},{number * 10 + row % 9}" for number, key in enumerate(keys) for row in range(30)
    ]
    source.write_text("store,value\n" + "".join(f"{row}\n" for row in rows))
    panel = tmp_path / "panel"
    for key in keys:
        own = Path(SeriesHome(str(panel), key).uri())
        series = SeriesSpec(source=str(source), id_column="store", series=(key,))
        naive_version(own, V1, series=series)
        record_champion(DataDir(str(own)), V1, METRICS, "promote", "first")
    return panel


def values_csv(count: int) -> str:
    return "value\n" + "".join(f"{i % 9}\n" for i in range(count))


def test_close_levels_get_their_own_columns(tmp_path: Path) -> None:
    """99.9999 and 99.99999 %: two columns each, neither labelled 100. The naive champion
    forecasts the last value, 29 % 9 = 2; 80 % of errors 1..20 is the 17th smallest, 17."""
    data_dir = naive_champion(tmp_path, values_csv(30))
    config = ForecastConfig(data_dir=str(data_dir))
    levels = (80.0, 99.9999, 99.99999)

    forecast = forecast_window(latest_window(config), DataDir(str(data_dir)), levels)

    first = forecast.rows[0]
    assert [key for key in first if key.startswith("lo-")] == [
        "lo-80",
        "lo-99.9999",
        "lo-99.99999",
    ]
    assert (first["forecast"], first["lo-80"], first["hi-80"]) == (2.0, -15.0, 19.0)
    lows = [float(first[key]) for key in ("lo-99.99999", "lo-99.9999", "lo-80")]
    assert lows == sorted(lows) and len(set(lows)) == 3
    assert set(forecast.coverage) == {"80", "99.9999", "99.99999"}


@pytest.mark.parametrize("dated", [True, False])
def test_the_fan_chart_is_drawn_on_the_series_dates_or_its_indices(
    tmp_path: Path, dated: bool
) -> None:
    """Monthly data: observations at their months, forecasts at the months they target,
    ticks labelled with dates; a series without a time column: positions in the series."""
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    months = pd.date_range("2020-01-01", periods=30, freq="MS")
    text = "ds,value\n" + "".join(f"{m:%Y-%m-%d},{i % 9}\n" for i, m in enumerate(months))
    data_dir = naive_champion(tmp_path, text if dated else values_csv(30))
    window = latest_window(ForecastConfig(data_dir=str(data_dir)))
    forecast = forecast_window(window, DataDir(str(data_dir)), (80.0, 95.0))

    figure = fan_chart(forecast, window)
    axes = figure.axes[0]
    observed, ahead = (np.asarray(axes.lines[at].get_xdata()).tolist() for at in (0, -1))
    if dated:
        assert axes.get_xlabel() == "time"
        assert [pd.Timestamp(x) for x in observed] == list(months)
        targets = [pd.Timestamp(row["target"]) for row in forecast.rows]
        assert [pd.Timestamp(x) for x in ahead] == targets
        assert targets[0] > months[-1]
        FigureCanvasAgg(figure).draw()
        ticks = [tick.get_text() for tick in axes.get_xticklabels()]
        assert "2021" in ticks and not any(text.isdigit() and len(text) < 4 for text in ticks)
    else:
        assert axes.get_xlabel() == "point (index in the series)"
        assert observed == list(range(30))
        assert ahead == [int(row["target"]) for row in forecast.rows]


@pytest.mark.parametrize(
    ("file_name", "content", "expected"),
    [
        (
            SPEC_FILE,
            SECRET,
            f"no usable champion in DATA: version {V1} cannot serve: forecaster.json is not a "
            "forecaster spec; promote a version that can (wavecast models list) or retrain",
        ),
        ("manifest.json", "{", f"version {V1} has no readable manifest.json: retrain"),
    ],
)
def test_a_damaged_champion_is_no_usable_champion(
    tmp_path: Path, file_name: str, content: str, expected: str
) -> None:
    data_dir = naive_champion(tmp_path, values_csv(30))
    (data_dir / "models" / V1 / file_name).write_text(content)
    with pytest.raises(InvalidInputError) as raised:
        latest_window(ForecastConfig(data_dir=str(data_dir)))
    assert str(raised.value) == expected.replace("DATA", str(data_dir))


def test_a_damaged_version_asked_for_by_name_says_why(tmp_path: Path) -> None:
    data_dir = naive_champion(tmp_path, values_csv(30))
    naive_version(data_dir, V2)
    (data_dir / "models" / V2 / SPEC_FILE).write_text("{}")
    with pytest.raises(InvalidInputError) as raised:
        latest_window(ForecastConfig(data_dir=str(data_dir), version=V2))
    assert (
        str(raised.value) == f"version {V2} cannot serve: forecaster.json is not a forecaster spec"
    )


@pytest.mark.parametrize(
    "content",
    [b"", b"\x93NUMPY garbage", SECRET.encode(), "3 steps"],
    ids=["empty", "bad-header", "text", "other-steps"],
)
def test_damaged_held_out_errors_are_one_line_of_bad_input(
    tmp_path: Path, content: bytes | str
) -> None:
    """Intervals need the errors: truncated, not .npy, or of another window shape."""
    data_dir = naive_champion(tmp_path, values_csv(30))
    errors_file = data_dir / "models" / V1 / ERRORS_FILE
    if content == "3 steps":
        np.save(errors_file, np.ones((20, 3)))
    else:
        errors_file.write_bytes(content)  # type: ignore[arg-type]
    window = latest_window(ForecastConfig(data_dir=str(data_dir)))
    with pytest.raises(InvalidInputError) as raised:
        forecast_window(window, DataDir(str(data_dir)), (80.0,))
    assert str(raised.value) == (
        f"version {V1}: {ERRORS_FILE} does not hold one row of held-out errors per window: "
        "retrain it"
    )


def test_nan_in_the_champion_s_source_advises_what_forecast_can_do(tmp_path: Path) -> None:
    """forecast has no --missing: it reads with the champion's policy, so the advice is to
    fix the source or retrain with another policy."""
    data_dir = naive_champion(tmp_path, values_csv(30))
    source = tmp_path / "series.csv"
    source.write_text(source.read_text() + "nan\n")
    with pytest.raises(InvalidInputError) as raised:
        latest_window(ForecastConfig(data_dir=str(data_dir)))
    assert str(raised.value) == (
        f"--source {source}: 1 NaN/infinite value(s) at data row 31 (line 32 of a CSV), which "
        "--missing error refuses: fix the source, or retrain with --missing drop or --missing "
        "interpolate"
    )


def test_too_few_held_out_errors_give_no_coverage_figure_instead_of_a_crash() -> None:
    """One held-out window of 18 steps: nothing to calibrate on and check against (NaN), and
    zero windows give infinite widths, not a reshape error."""
    assert math.isnan(held_out_coverage(np.ones((1, 18)), 0.8))
    assert conformal_half_widths(np.empty((0, 18)), 0.8).shape == (18,)
    assert held_out_coverage(np.array([1.0, 2.0, 0.5, 3.0]), 0.5) == 0.5


def test_intervals_are_never_narrower_than_the_datas_resolution() -> None:
    """A fit exact to round-off (the tutorial's sine by its linear AR) has errors of 1e-15:
    calibrated on them alone, half its test errors fell outside; the floor covers them."""
    assert resolution_floor(np.array([1.0, -3.0, np.nan])) == pytest.approx(2e-6)
    round_off = np.abs(np.random.default_rng(0).normal(0, 1e-15, 100))
    assert held_out_coverage(round_off, 0.8) < 1.0
    assert held_out_coverage(round_off, 0.8, floor=2e-6) == 1.0
    assert conformal_half_widths(np.arange(1.0, 11.0), 0.8, floor=2e-6).tolist() == [9.0]
    assert conformal_half_widths(round_off[:3], 0.95, floor=2e-6).tolist() == [2e-6]


def test_no_held_out_error_gives_no_interval_but_a_sentence(tmp_path: Path) -> None:
    """An errors file of no window calibrates nothing: refused, never an infinite bound."""
    data_dir = naive_champion(tmp_path, values_csv(30))
    np.save(data_dir / "models" / V1 / ERRORS_FILE, np.zeros((0, 2)))
    config = ForecastConfig(data_dir=str(data_dir))

    with pytest.raises(InvalidInputError) as raised:
        forecast_window(latest_window(config), DataDir(str(data_dir)), (80.0,))

    assert str(raised.value) == (
        f"version {V1}: its 80 % interval has no finite bound (no held-out errors to "
        "calibrate it on); retrain it"
    )


def test_a_source_whose_value_column_was_renamed_is_refused_in_one_line(tmp_path: Path) -> None:
    """Trained on "value" picked as the only numeric column: renamed, it is another quantity
    as far as the version knows; --column names the new one on purpose."""
    data_dir = naive_champion(tmp_path, values_csv(30))
    manifest_path = data_dir / "models" / V1 / "manifest.json"
    manifest = Manifest.model_validate_json(manifest_path.read_text())
    series = manifest.series.model_copy(update={"column": "value"})
    manifest_path.write_text(manifest.model_copy(update={"series": series}).model_dump_json())
    source = tmp_path / "series.csv"
    source.write_text(source.read_text().replace("value", "level", 1))

    with pytest.raises(InvalidInputError) as raised:
        latest_window(ForecastConfig(data_dir=str(data_dir)))

    assert str(raised.value) == (
        f"--source {source}: its value column is not the one version {V1} was trained on "
        "(renamed or replaced): retrain, or name it with --column"
    )
    assert latest_window(ForecastConfig(data_dir=str(data_dir), column="level")).history[-1] == 2
