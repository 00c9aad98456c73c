"""Scale-free scores (MASE, sMAPE, interval coverage) on values worked out by hand, where they
are shown, and the gate comparing a champion with its candidate on the same test windows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import raw_series, tiny_config
from tests.test_registry import linear_spec, manifest_for, naive_version, version_with
from wavecast.config import GatePolicy, RetrainConfig, SeriesSpec, WindowSpec
from wavecast.evaluate import SPEC_FILE, Published, evaluate_trained, metrics_table
from wavecast.forecasters.network import forecasts_at
from wavecast.gate import Decision, decide_promotion
from wavecast.home import SeriesHome
from wavecast.metrics import (
    ErrorTotals,
    Metrics,
    StepMetrics,
    mase,
    mase_scale,
    regression_metrics,
    scaled_error,
    scores_text,
    shown,
    smape,
)
from wavecast.panel import RetrainRun, iter_outcomes, panel_table
from wavecast.publish import other_targets, rescore
from wavecast.records import RetrainSummary, VersionRow
from wavecast.registry import champion_row, record_champion, servable, version_rows
from wavecast.report import champion_lines, version_lines
from wavecast.storage import DataDir
from wavecast.windows import DatasetRef, build_windows

V1, V2 = "20240102T030405Z-aaaaaaaa", "20240102T030406Z-bbbbbbbb"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("history", "season", "expected"),
    [
        pytest.param([1.0, 2.0, 4.0, 7.0], 1, 2.0, id="differences-1-2-3"),
        pytest.param([1.0, 3.0, 2.0, 5.0, 4.0], 2, 5 / 3, id="season-2: |2-1|, |5-3|, |4-2|"),
        pytest.param([5.0, 5.0, 5.0], 1, 0.0, id="constant"),
        pytest.param([1.0, 2.0], 2, math.nan, id="no-longer-than-a-season"),
    ],
)
def test_the_mase_scale_is_the_in_sample_seasonal_naive_mae(
    history: list[float], season: int, expected: float
) -> None:
    assert mase_scale(np.array(history), season) == pytest.approx(expected, nan_ok=True)


@pytest.mark.unit
def test_mase_is_the_mae_over_the_scale_and_nan_never_infinite_without_one() -> None:
    """Errors [1, 0, 2]: MAE 1; over a scale of 2, MASE 0.5. A zero or unknown scale: NaN."""
    truth, forecast = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0])
    assert mase(truth, forecast, 2.0) == pytest.approx(0.5)
    assert math.isnan(mase(truth, forecast, 0.0))
    assert math.isnan(scaled_error(1.0, math.nan))
    assert scaled_error(0.0, 4.0) == 0.0


@pytest.mark.unit
@pytest.mark.parametrize(
    ("truth", "forecast", "expected"),
    [
        # 200/3 * (1/3 + 0 + 2/8)
        pytest.param([1.0, 2.0, 3.0], [2.0, 2.0, 5.0], 350 / 9, id="hand"),
        pytest.param([0.0, 4.0], [0.0, 4.0], 0.0, id="both-zero-is-perfect"),
        pytest.param([0.0], [5.0], 200.0, id="zero-actual-is-the-maximum"),
        pytest.param([-2.0], [2.0], 200.0, id="opposite-signs"),
        pytest.param([1.0, 3.0], [3.0, 1.0], 100.0, id="symmetric: 2/4 each"),
    ],
)
def test_smape_in_percent_on_hand_computed_values(
    truth: list[float], forecast: list[float], expected: float
) -> None:
    assert smape(np.array(truth), np.array(forecast)) == pytest.approx(expected)


@pytest.mark.unit
def test_metrics_carry_mase_and_smape_per_step_and_over_all_steps() -> None:
    """Two windows of two steps, errors [[1, 0], [0, 2]], scale 0.5:
    step 1 MAE 0.5 -> MASE 1, sMAPE 100 * (1/3 + 0) = 33.3; step 2 MAE 1 -> MASE 2, sMAPE
    100 * (0 + 2/10) = 20; over all, MAE 0.75 -> MASE 1.5, sMAPE 50 * (1/3 + 0.2) = 26.7."""
    truth = np.array([[1.0, 2.0], [3.0, 4.0]])
    m = regression_metrics(truth, np.array([[2.0, 2.0], [3.0, 6.0]]), scale=0.5)
    assert [step.mase for step in m.per_step] == pytest.approx([1.0, 2.0])
    assert [step.smape for step in m.per_step] == pytest.approx([100 / 3, 20.0])
    assert (m.mase, m.smape) == pytest.approx((1.5, 80 / 3))


@pytest.mark.unit
def test_streamed_scores_equal_one_pass_and_mase_waits_for_a_scale() -> None:
    """Batches add up to the same sMAPE as one pass; no scale, no MASE (None, not 0)."""
    rng = np.random.default_rng(0)
    truth, forecast = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    totals = ErrorTotals()
    for start in range(0, 50, 7):
        totals.add(truth[start : start + 7], forecast[start : start + 7])
    streamed, whole = totals.metrics(2.0), regression_metrics(truth, forecast, 2.0)
    assert streamed.smape == pytest.approx(whole.smape) == pytest.approx(smape(truth, forecast))
    assert streamed.mase == pytest.approx(whole.mase) == pytest.approx(mase(truth, forecast, 2.0))
    assert totals.metrics().mase is None


@pytest.mark.unit
def test_records_written_before_the_scale_free_scores_still_read() -> None:
    """Old metrics, published and decision records: the new fields are None, not an error;
    NaN is written as standard JSON and reads back."""
    old = Metrics.model_validate_json(
        '{"mse": 1, "rmse": 1, "mae": 1, "per_step": [{"mse": 1, "rmse": 1, "mae": 1}]}'
    )
    assert (old.mase, old.smape, old.per_step[0].mase) == (None, None, None)
    assert Published.model_validate_json('{"mse": 1.0}').mase_scale is None
    decision = Decision.model_validate_json('{"promote": true, "reasons": [], "skill": 0.5}')
    assert (decision.compared_with, decision.champion_rescored) == (None, None)
    nan = StepMetrics(mse=1.0, rmse=1.0, mae=1.0, mase=math.nan, smape=0.0)
    assert '"mase":"NaN"' in nan.model_dump_json()
    assert math.isnan(StepMetrics.model_validate_json(nan.model_dump_json()).mase or 0.0)


@pytest.mark.unit
def test_scores_are_shown_in_a_few_characters() -> None:
    """Three digits; "-" for a score never computed (an old record), "nan" for one that
    cannot be (MASE of a constant train part)."""
    assert (shown(0.81234), shown(None), shown(math.nan), shown(9.31, " %")) == (
        "0.812",
        "-",
        "nan",
        "9.31 %",
    )
    m = Metrics(mse=4.0, rmse=2.0, mae=1.0, mase=0.81, smape=9.3)
    assert scores_text(m, {"80": 0.79, "95": 0.9}) == (
        "MASE 0.81, sMAPE 9.3 %, 80 % interval covers 79%"
    )
    assert scores_text(Metrics(mse=4.0, rmse=2.0, mae=1.0)) == "MASE -, sMAPE -"


def squares_source(tmp_path: Path, n: int = 50) -> Path:
    """values[t] = t^2, t < 50: with 3 inputs, horizon 1 and 1 step, 47 windows, 37 train and
    10 test (origins 39..48). The train part, values[:40], has naive errors 2t - 1 (t = 1..39),
    mean 39^2 / 39 = 39: the scale; the naive test errors 2o + 1 average 88: MASE 88/39."""
    source = tmp_path / "squares.csv"
    source.write_text("value\n" + "".join(f"{t * t}\n" for t in range(n)))
    return source


def squares_dataset(tmp_path: Path, input_len: int = 3) -> DatasetRef:
    data_dir = str(tmp_path / "data")
    series = raw_series(SeriesSpec(source=str(squares_source(tmp_path))), DataDir(data_dir))
    return build_windows(
        series, WindowSpec(input_len=input_len, horizon=1, steps=1), SeriesHome(data_dir)
    )


@pytest.mark.unit
def test_an_evaluation_scores_mase_over_the_train_part_only(tmp_path: Path) -> None:
    """The naive forecast of t^2 (squares_source): MASE 88/39 for the published naive and for
    persistence, the same forecast; its sMAPE term per test origin o is (2o + 1) /
    (o^2 + (o + 1)^2). The scale and the scores are stored with the evaluation and shown in
    the candidates table."""
    dataset = squares_dataset(tmp_path)
    assert (dataset.n_train, dataset.n_test) == (37, 10)
    config = RetrainConfig.model_validate(
        {"selection": {"candidates": "naive"}, "data_dir": str(tmp_path / "data")}
    )
    evaluation = evaluate_trained(dataset, None, config.selection, SeriesHome(config.data_dir))

    origins = np.arange(39, 49)
    by_hand = 200 * np.mean((2 * origins + 1) / (origins**2 + (origins + 1) ** 2))
    assert evaluation.published.forecaster == "naive"
    assert evaluation.published.mase_scale == pytest.approx(39.0)
    assert evaluation.metrics.mase == pytest.approx(88 / 39)
    assert evaluation.metrics.smape == pytest.approx(by_hand)
    assert evaluation.baselines["persistence"].mase == pytest.approx(88 / 39)
    stored = json.loads((Path(evaluation.uri) / "metrics.json").read_text())
    assert stored["metrics"]["mase"] == pytest.approx(88 / 39)
    (row,) = metrics_table(evaluation.candidates, evaluation.published)
    assert (row["test_mase"], row["test_smape"]) == pytest.approx((88 / 39, by_hand))


@pytest.mark.unit
def test_a_champion_of_other_input_windows_is_rescored_at_the_candidate_s_origins(
    tmp_path: Path,
) -> None:
    """The candidate reads 3 inputs; a naive champion of 5 inputs and a linear AR of 2
    forecast the same targets from the same origins (39..48): naive errs 2o + 1 (MASE
    88/39), and (t+1)^2 = 2t^2 - (t-1)^2 + 2, the linear AR's weights, is exact."""
    dataset = squares_dataset(tmp_path)
    store = DataDir(str(tmp_path / "data"))
    windows = {"horizon": 1, "steps": 1}
    naive_version(tmp_path / "data", V1, windows=WindowSpec(input_len=5, **windows))
    version_with(
        tmp_path / "data",
        V2,
        {SPEC_FILE: linear_spec([[-1.0], [2.0], [2.0]])},
        windows=WindowSpec(input_len=2, **windows),
        forecaster="linear",
    )

    naive = rescore(servable(store, V1), store, dataset, scale=39.0)
    linear = rescore(servable(store, V2), store, dataset, scale=39.0)

    assert naive.mae == pytest.approx(88.0) and naive.mase == pytest.approx(88 / 39)
    assert linear.mse == pytest.approx(0.0, abs=1e-18) and linear.mase == pytest.approx(0.0)


@pytest.mark.unit
def test_a_network_of_other_input_windows_reads_windows_of_its_own_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A "network" summing its 2 inputs, at origins 3, 4, 5 of 0..9: 2+3, 3+4, 4+5, in
    batches of 2 windows."""
    monkeypatch.setattr("wavecast.forecasters.network.BATCH_ROWS", 2)
    values = np.arange(10.0)

    def summed(windows: np.ndarray) -> np.ndarray:
        assert windows.shape[1] == 2 and len(windows) <= 2
        return windows.sum(axis=1, keepdims=True)

    forecasts = forecasts_at(summed, values, np.array([3, 4, 5]), 2, 1)
    assert forecasts.tolist() == [[5.0], [7.0], [9.0]]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("champion", "why"),
    [
        pytest.param(WindowSpec(input_len=3, horizon=1, steps=1), "", id="same"),
        pytest.param(
            WindowSpec(input_len=40, horizon=1, steps=1, train_fraction=0.5), "", id="fits-exactly"
        ),
        pytest.param(
            WindowSpec(input_len=3, horizon=1, steps=2),
            "it forecasts 2 step(s) from horizon 1, this version 1 from horizon 1",
            id="other-steps",
        ),
        pytest.param(
            WindowSpec(input_len=3, horizon=2, steps=1),
            "it forecasts 1 step(s) from horizon 2, this version 1 from horizon 1",
            id="other-horizon",
        ),
        pytest.param(
            WindowSpec(input_len=41, horizon=1, steps=1),
            "its windows of 41 points start before this series does",
            id="too-long-for-the-first-origin",
        ),
    ],
)
def test_a_champion_is_rescored_whenever_it_forecasts_the_same_targets(
    tmp_path: Path, champion: WindowSpec, why: str
) -> None:
    """The first test origin is 39: a champion reading up to 40 points forecasts from it."""
    assert other_targets(champion, squares_dataset(tmp_path)) == why


@pytest.mark.unit
def test_the_gate_says_on_which_windows_and_adds_both_mase() -> None:
    decision = decide_promotion(
        0.9, 2.0, 1.0, GatePolicy(), windows="on the same 24 test windows", mase=(0.81, 0.93)
    )
    assert decision.promote
    assert decision.reasons[-1] == (
        "MSE 0.9 within 10% of champion 1 on the same 24 test windows: MASE 0.81 vs champion 0.93"
    )
    elsewhere = "measured on its own test windows, not these (other steps)"
    worse = decide_promotion(1.5, 2.0, 1.0, GatePolicy(), windows=elsewhere, mase=(0.9, None))
    assert not worse.promote
    assert worse.reasons[-1] == (f"MSE 1.5 worse than champion 1 beyond tolerance 10% {elsewhere}")


def scored(mase_value: float | None, smape_value: float | None = 9.3) -> Metrics:
    return Metrics(mse=4.0, rmse=2.0, mae=1.0, mase=mase_value, smape=smape_value)


@pytest.mark.unit
def test_models_list_marks_the_comparable_pair() -> None:
    """Each version's own scores; beside them the champion it was gated against, re-scored
    on its windows; "-" for a first model or an old record, "other windows" when the champion
    could not be re-scored on them."""
    rows = [
        VersionRow(version=V1, champion=False, mse=708.0, dataset="d1"),  # written before MASE
        VersionRow(
            version=V2,
            champion=True,
            mase=0.934,
            smape=12.1,
            coverage={"80": 0.81, "95": 0.9},
            mse=2422.0,
            gated_against=V1,
            champion_mase=1.02,
            dataset="d2",
        ),
        VersionRow(version="20250101T000000Z-cccccccc", champion=False, problem="damaged file"),
        VersionRow(version="20250101T000001Z-dddddddd", champion=False, mase=1.0, mse=1.0,
                   gated_against=V2, dataset="d3"),
    ]  # fmt: skip
    header, first, second, damaged, other, note = version_lines(rows)
    assert header.split() == [
        "version", "MASE", "sMAPE", "%", "cov", "80", "test", "MSE", "vs", "champion", "dataset"
    ]  # fmt: skip
    assert first.split() == [V1, "-", "-", "-", "708", "-", "d1"]
    assert second.split() == ["*", V2, "0.934", "12.1", "81%", "2422", "1.02", "d2"]
    assert damaged.endswith("damaged: damaged file")
    assert other.split()[-3:] == ["other", "windows", "d3"]
    assert "own test windows" in note and "re-scored on the same windows" in note


@pytest.mark.unit
def test_a_panel_s_champions_are_listed_with_their_scores() -> None:
    champion = VersionRow(version=V2, champion=True, mase=0.5, smape=4.0, coverage={"80": 0.8})
    damaged = VersionRow(version=V1, champion=True, problem="manifest.json missing or damaged")
    lines = champion_lines([("north", champion), ("south", None), ("east", damaged)])
    assert [line.split() for line in lines[:3]] == [
        ["series", "champion", "MASE", "sMAPE", "%", "cov", "80"],
        ["north", V2, "0.5", "4", "80%"],
        ["south", "-"],
    ]
    assert lines[3].split()[:2] == ["east", V1] and lines[3].endswith("missing or damaged")


def without_new_keys(record: object) -> object:
    """A record as written before the scale-free scores: no mase, smape or mase_scale keys."""
    if isinstance(record, dict):
        new = {"mase", "smape", "mase_scale"}
        return {k: without_new_keys(v) for k, v in record.items() if k not in new}
    if isinstance(record, list | tuple):
        return [without_new_keys(v) for v in record]
    return record


@pytest.mark.unit
def test_registry_rows_read_scores_and_the_gate_s_comparison(tmp_path: Path) -> None:
    """version_rows takes the scores from the manifest and the comparison from decision.json;
    a manifest and no decision written before either (V1) read as unknown."""
    data_dir = tmp_path / "data"
    store = DataDir(str(data_dir))
    old = without_new_keys(
        manifest_for(WindowSpec(), SeriesSpec(), "naive").model_dump(mode="json")
    )
    assert "mase" not in json.dumps(old)
    naive_version(data_dir, V1)
    (data_dir / "models" / V1 / "manifest.json").write_text(json.dumps(old))
    naive_version(data_dir, V2)
    manifest = manifest_for(WindowSpec(), SeriesSpec(), "naive")
    manifest = manifest.model_copy(
        update={
            "metrics": scored(0.7, 8.0),
            "published": Published(mse=4.0, forecaster="naive", coverage={"80": 0.75}),
        }
    )
    (data_dir / "models" / V2 / "manifest.json").write_text(manifest.model_dump_json())
    decision = Decision(
        promote=True, reasons=(), skill=0.5, compared_with=V1, champion_rescored=scored(0.9)
    )
    (data_dir / "models" / V2 / "decision.json").write_text(decision.model_dump_json())
    record_champion(store, V2, scored(0.7), "promote", "test")

    first, second = version_rows(store)
    assert (first.mase, first.smape, first.gated_against, first.champion_mase) == (
        None,
        None,
        None,
        None,
    )
    assert (second.mase, second.smape, second.coverage) == (0.7, 8.0, {"80": 0.75})
    assert (second.gated_against, second.champion_mase) == (V1, 0.9)
    assert champion_row(store) == second


def outcome(mase_value: float) -> RetrainSummary:
    return RetrainSummary(
        version=V2,
        model_dir=f"d/models/{V2}",
        dataset_dir="d/windows/w",
        dataset_id="w",
        promoted=True,
        unchanged=False,
        champion=V2,
        champion_rescored=None,
        metrics=scored(mase_value),
        baselines={"persistence": scored(1.2)},
        published=Published(mse=4.0, forecaster="ets", coverage={"80": 0.79, "95": 0.9}),
        reasons=(),
        changes=(),
        report=f"d/models/{V2}/report.html",
    )


@pytest.mark.unit
def test_the_panel_table_and_lines_rank_series_by_scale_free_scores() -> None:
    summary = RetrainRun(
        series={"north": outcome(0.81)}, skipped={"south": "too short"}, data_dir="d"
    )
    row, skipped = panel_table(summary)
    assert {k: row[k] for k in ("mase", "smape", "coverage_80", "coverage_95", "mse")} == {
        "mase": 0.81,
        "smape": 9.3,
        "coverage_80": 0.79,
        "coverage_95": 0.9,
        "mse": 4.0,
    }
    assert skipped["status"] == "skipped" and "mase" not in skipped
    lines = list(iter_outcomes(summary))
    assert lines[0].split(maxsplit=2)[2] == (
        f"{V2} serves ets: MASE 0.81, sMAPE 9.3 %, 80 % interval covers 79%"
    )
    assert lines[1].split() == ["south", "skipped", "too", "short"]


def file_config(data_dir: Path, source: Path, **windows: int) -> RetrainConfig:
    """tiny_config's retrain of a CSV source, with these window settings."""
    base = tiny_config(data_dir)
    return base.model_copy(
        update={
            "series": base.series.model_copy(update={"source": str(source)}),
            "windows": base.windows.model_copy(update=windows),
        }
    )


def write_sine(source: Path, n: int) -> None:
    values = np.sin(np.linspace(0, 12 * np.pi, 150)) + 0.1 * np.random.default_rng(0).normal(
        size=150
    )
    source.write_text("value\n" + "".join(f"{v:.17g}\n" for v in values[:n]))


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_a_grown_source_is_gated_on_the_same_windows_and_listed_as_comparable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """30 rows arrive (as before a drift retrain): the champion is re-scored on the new
    version's test windows, the reason says so with both MASEs, and the decision, the
    registry's rows, the report, `models list` and the summary show that pair."""
    from wavecast.flows.cli import main, print_summary
    from wavecast.flows.retrain import retrain

    source, data_dir = tmp_path / "series.csv", tmp_path / "data"
    write_sine(source, 120)
    first = retrain(file_config(data_dir, source)).only()
    write_sine(source, 150)
    second = retrain(file_config(data_dir, source)).only()

    rescored = second.champion_rescored
    assert second.compared_with == first.version and rescored is not None
    assert rescored.mase is not None and second.metrics.mase is not None
    store = DataDir(str(data_dir))
    n_test = servable(store, second.version).manifest.dataset.n_test
    said = (
        f"on the same {n_test} test windows: MASE {second.metrics.mase:.3g} vs champion "
        f"{rescored.mase:.3g}"
    )
    assert any(reason.endswith(said) for reason in second.reasons), second.reasons
    decision = Decision.model_validate_json(
        (data_dir / "models" / second.version / "decision.json").read_text()
    )
    assert (decision.compared_with, decision.champion_rescored) == (first.version, rescored)
    old, new = version_rows(store)
    assert (old.mase, old.gated_against) == (first.metrics.mase, None)
    assert (new.mase, new.gated_against, new.champion_mase) == (
        second.metrics.mase,
        first.version,
        rescored.mase,
    )
    assert new.coverage == second.published.coverage and set(new.coverage) == {"80", "95"}
    report = (data_dir / "models" / second.version / "report.md").read_text()
    assert f"| champion {first.version} | {shown(rescored.mase)} |" in report
    assert f"Every row on this version's {n_test} test windows" in report

    capsys.readouterr()
    main(["models", "list", "--data-dir", str(data_dir)])
    listed = capsys.readouterr().out.splitlines()
    newest = next(line for line in listed if second.version in line)
    assert newest.split()[-2:] == [shown(rescored.mase), new.dataset]
    print_summary(second)
    printed = capsys.readouterr().out
    assert f"test MASE {shown(second.metrics.mase)} " in printed
    assert said in printed


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_a_champion_forecasting_other_steps_keeps_its_own_score_and_says_so(
    tmp_path: Path,
) -> None:
    from wavecast.flows.retrain import retrain

    source, data_dir = tmp_path / "series.csv", tmp_path / "data"
    write_sine(source, 150)
    first = retrain(file_config(data_dir, source)).only()
    second = retrain(file_config(data_dir, source, steps=2)).only()

    assert second.compared_with == first.version and second.champion_rescored is None
    elsewhere = (
        "measured on its own test windows, not these (it forecasts 1 step(s) from horizon 2, "
        "this version 2 from horizon 2)"
    )
    assert any(reason.endswith(elsewhere) for reason in second.reasons), second.reasons
    _, row = version_rows(DataDir(str(data_dir)))
    assert (row.gated_against, row.champion_mase) == (first.version, None)
    assert version_lines([row])[1].split()[-3:-1] == ["other", "windows"]


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_the_python_api_s_tables_carry_the_scale_free_scores(tmp_path: Path) -> None:
    """RetrainResult.series and wavecast.models(): MASE, sMAPE and coverage per level next
    to the MSE, the values the summary and the manifest hold."""
    import pandas as pd

    import wavecast

    months = pd.date_range("2015-01-01", periods=60, freq="MS")
    rng = np.random.default_rng(0)
    frame = pd.concat(
        pd.DataFrame({"unique_id": uid, "ds": months, "y": level + rng.normal(0, 1, 60)})
        for uid, level in (("a", 100.0), ("b", 5.0))
    )
    result = wavecast.retrain(
        frame, data_dir=tmp_path / "data", candidates=("naive", "seasonal_naive")
    )
    scores = ["mase", "smape", "coverage_80", "coverage_95", "mse", "persistence_mse"]
    assert list(result.series.columns) == [
        "unique_id", "status", "version", "serves", *scores, "reason"
    ]  # fmt: skip
    summary = result.summary
    assert isinstance(summary, RetrainRun)
    for row in result.series.itertuples():
        outcome = summary.series[str(row.unique_id)]
        assert (row.mase, row.smape) == (outcome.metrics.mase, outcome.metrics.smape)
        assert (row.coverage_80, row.coverage_95) == (
            outcome.published.coverage["80"],
            outcome.published.coverage["95"],
        )
        assert 0 < row.mase < 10 and 0 < row.smape < 200

    listed = wavecast.models(tmp_path / "data")
    assert list(listed.columns) == [
        "unique_id", "version", "champion", *scores, "gated_against", "champion_mase",
        "dataset", "problem",
    ]  # fmt: skip
    assert listed["mase"].tolist() == result.series["mase"].tolist()
    assert listed["coverage_80"].tolist() == result.series["coverage_80"].tolist()
