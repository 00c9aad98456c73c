"""The retrain report: markdown for Prefect's UI, and self-contained HTML with the plots inline."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence

from wavecast.evaluate import coverage_text
from wavecast.metrics import Metrics, shown
from wavecast.records import Forecast, Manifest, RetrainSummary, VersionRow
from wavecast.tables import shown_id

SCORE_HEADER = ("forecaster", "MASE", "sMAPE %", "MSE", "RMSE", "MAE")


def score_rows(summary: RetrainSummary) -> list[tuple[str, Metrics]]:
    """The candidate, the champion it was gated against when re-scored on the same test
    windows, and the baselines: every row on this version's test windows."""
    rows = [(f"{summary.published.forecaster} (candidate)", summary.metrics)]
    if summary.champion_rescored is not None:
        rows.append((f"champion {summary.compared_with or ''}".rstrip(), summary.champion_rescored))
    rows += [(f"baseline: {name}", m) for name, m in summary.baselines.items()]
    return rows


def score_cells(name: str, m: Metrics) -> tuple[str, ...]:
    return (name, shown(m.mase), shown(m.smape), f"{m.mse:.3g}", f"{m.rmse:.3g}", f"{m.mae:.3g}")


def scores_note(summary: RetrainSummary, manifest: Manifest) -> str:
    """What the score table's numbers are: which windows, and what MASE divides by."""
    season = summary.published.season
    return (
        f"Every row on this version's {manifest.dataset.n_test} test windows. MASE: the MAE "
        f"over the in-sample MAE of the seasonal naive forecast (season {season}) on the train "
        "part, below 1 is better than it; sMAPE in % (0 to 200)."
    )


def headline(summary: RetrainSummary) -> str:
    if summary.unchanged:
        return f"**No new data: model unchanged.** Champion stays `{summary.champion}`."
    if summary.promoted:
        return f"**Promoted** `{summary.version}` to champion."
    return f"**Not promoted**: `{summary.version}` was kept; champion stays `{summary.champion}`."


def lineage_rows(manifest: Manifest) -> list[tuple[str, str]]:
    """What produced the version, as (what, value) pairs both reports show as a table."""
    series, dataset, code = manifest.series, manifest.dataset, manifest.code
    versions = ", ".join(f"{stage} v{value}" for stage, value in code.stage_versions.items())
    return [
        ("source", f"{series.source} ({series.n_points} points)"),
        ("source content hash", series.content_hash),
        ("dataset", f"{dataset.dataset_id}: {dataset.n_train} train / {dataset.n_test} test"),
        ("windows", f"input_len {dataset.spec.input_len}, horizon {dataset.spec.horizon}"),
        ("training", training_line(manifest)),
        ("code revision", code.revision or "not in git"),
        ("stage versions", versions or "not recorded"),
        ("flow run", manifest.flow_run_id or "outside Prefect"),
        ("created", manifest.created.isoformat()),
    ]


def training_line(manifest: Manifest) -> str:
    if manifest.training is None:
        return "no network trained (not a candidate for this series)"
    return f"{manifest.training.train_id}, seed {manifest.seed}"


CANDIDATE_HEADER = (
    "forecaster",
    "validation MSE",
    "test MASE",
    "test sMAPE %",
    "test MSE",
    "test MAE",
    "form or note",
)


def candidate_rows(summary: RetrainSummary) -> list[tuple[str, ...]]:
    """Every competitor side by side: validation (which chose) and test (which is reported)."""
    rows: list[tuple[str, ...]] = []
    for c in summary.candidates:
        mark = " (published)" if c.forecaster == summary.published.forecaster else ""
        test: tuple[str, ...] = ("-",) * 4
        if c.test:
            test = (
                shown(c.test.mase),
                shown(c.test.smape),
                f"{c.test.mse:.4g}",
                f"{c.test.mae:.4g}",
            )
        rows.append((c.forecaster + mark, f"{c.validation_mse:.4g}", *test, c.form or c.note))
    return rows


def candidates_markdown(summary: RetrainSummary) -> list[str]:
    if not summary.candidates:
        return []
    published = summary.published
    lines = ["", "## Candidates", ""]
    lines.append(
        f"Publishes **{published.forecaster}** (season {published.season}): {published.reason}."
    )
    if published.coverage:
        shares = coverage_text(published.coverage)
        lines.append(f"Test coverage of intervals calibrated on validation: {shares}.")
    lines += ["", "| " + " | ".join(CANDIDATE_HEADER) + " |", "|---|---:|---:|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in candidate_rows(summary)]
    return lines


def render_markdown(summary: RetrainSummary, manifest: Manifest) -> str:
    """What a person opening the flow run wants: verdict, numbers, why, lineage, files."""
    lines = [f"# wavecast retrain: {summary.version}", "", headline(summary), ""]
    lines += ["| " + " | ".join(SCORE_HEADER) + " |", "|---|---:|---:|---:|---:|---:|"]
    for name, m in score_rows(summary):
        lines.append("| " + " | ".join(score_cells(name, m)) + " |")
    lines += ["", scores_note(summary, manifest)]
    lines += candidates_markdown(summary)
    lines += ["", "## Gate", *[f"- {r}" for r in summary.reasons]]
    lines += ["", "## What changed", *[f"- {c}" for c in summary.changes]]
    lines += ["", "## Lineage", "", "| | |", "|---|---|"]
    lines += [f"| {what} | `{value}` |" for what, value in lineage_rows(manifest)]
    lines += [
        "",
        "## Files",
        f"- model directory: `{summary.model_dir}`",
        f"- dataset: `{summary.dataset_dir}`",
        f"- HTML report with plots: `{summary.report}`",
    ]
    return "\n".join(lines) + "\n"


def inline_png(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'


def html_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(title: str, body: str, align: str = "left") -> str:
    """One file that opens anywhere, in the look every page here shares."""
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        f"td,th{{padding:.2em .8em;text-align:{align}}}img{{max-width:100%}}</style>{body}"
    )


def render_html(summary: RetrainSummary, manifest: Manifest, images: dict[str, bytes]) -> str:
    """One file that opens anywhere: the markdown's content plus every plot, inlined."""
    scores = [score_cells(name, m) for name, m in score_rows(summary)]
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in (*summary.reasons, *summary.changes))
    figures = "".join(inline_png(name, png) for name, png in images.items())
    coverage = summary.published.coverage
    covered = (
        f" Test coverage of intervals calibrated on validation: {coverage_text(coverage)}."
        if coverage
        else ""
    )
    return html_page(
        f"wavecast {summary.version}",
        f"<h1>wavecast retrain {html.escape(summary.version)}</h1>"
        f"<p>{html.escape(headline(summary).replace('**', '').replace('`', ''))}</p>"
        f"{html_table(SCORE_HEADER, scores)}<p>{html.escape(scores_note(summary, manifest))}</p>"
        f"<ul>{reasons}</ul>"
        f"<h2>Candidates</h2><p>Publishes {html.escape(summary.published.forecaster)}: "
        f"{html.escape(summary.published.reason)}.{html.escape(covered)}</p>"
        f"{html_table(CANDIDATE_HEADER, candidate_rows(summary))}"
        f"<h2>Lineage</h2>{html_table(('', ''), lineage_rows(manifest))}{figures}",
    )


def forecast_html(forecast: Forecast, fan_png: bytes) -> str:
    """The forecast's table, held-out coverage and fan chart, in one self-contained page."""
    keys = list(forecast.rows[0])
    rows = [tuple(format_cell(row[key]) for key in keys) for row in forecast.rows]
    coverage = ", ".join(f"{level} %: {value:.1%}" for level, value in forecast.coverage.items())
    note = f"<p>{html.escape(forecast.note)}</p>" if forecast.note else ""
    return html_page(
        f"wavecast forecast {forecast.series}",
        f"<h1>Forecast of {html.escape(forecast.series)} from {html.escape(forecast.origin)}</h1>"
        f"<p>Model version {html.escape(forecast.version)} ({html.escape(forecast.forecaster)})."
        f" Held-out coverage of the intervals: {html.escape(coverage)}.</p>{note}"
        f"{inline_png('fan chart', fan_png)}{html_table(tuple(keys), rows)}",
        align="right",
    )


def format_cell(value: float | int | str | bool | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def monitor_html(
    rows: Sequence[Mapping[str, float | int | str | bool | None]], images: dict[str, bytes]
) -> str:
    """The monitor's verdict per series and its error-over-time plots, in one page."""
    keys = tuple(rows[0]) if rows else ("series",)
    cells = [tuple(format_cell(row[key]) for key in keys) for row in rows]
    drifting = sum(bool(row["drift"]) for row in rows)
    figures = "".join(inline_png(name, png) for name, png in images.items())
    return html_page(
        "wavecast monitor",
        f"<h1>Forecast monitor: {drifting} of {len(rows)} series drifting</h1>"
        f"{html_table(keys, cells)}{figures}",
    )


def panel_forecast_html(forecasts: Sequence[Forecast], images: dict[str, bytes]) -> str:
    """A run's forecasts, one row per series, and the first series' fan charts; one series'
    in full (forecast_html: every step with its intervals)."""
    if len(forecasts) == 1 and forecasts[0].series in images:
        return forecast_html(forecasts[0], images[forecasts[0].series])
    header = ("series", "origin", "version", "forecaster", "forecasts")
    rows = [
        (
            f.series,
            f.origin,
            f.version,
            f.forecaster,
            ", ".join(format_cell(float(row["forecast"])) for row in f.rows),
        )
        for f in forecasts
    ]
    figures = "".join(inline_png(name, png) for name, png in images.items())
    return html_page(
        "wavecast panel forecast",
        f"<h1>Forecasts of {len(rows)} series</h1><p>Fan charts of the first {len(images)}.</p>"
        f"{html_table(header, rows)}{figures}",
    )


VERSION_NOTE = (
    "scores on each version's own test windows; vs champion: the MASE of the champion it was "
    "gated against, re-scored on the same windows"
)


def version_lines(rows: Sequence[VersionRow]) -> list[str]:
    """`wavecast models list`: each version's test MASE, sMAPE, 80 % coverage and MSE (on its
    own test windows, which move as the series grows) beside the MASE of the champion it was
    gated against on the same windows, its comparable twin; * marks the champion."""
    lines = [
        f"  {'version':<26}{'MASE':>10}{'sMAPE %':>9}{'cov 80':>8}{'test MSE':>11}"
        f"{'vs champion':>15}  dataset"
    ]
    for row in rows:
        mark = "*" if row.champion else " "
        if row.problem:
            lines.append(f"{mark} {row.version:<26}  damaged: {row.problem}")
            continue
        covered = row.coverage.get("80")
        mse = "-" if row.mse is None else f"{row.mse:.4g}"
        lines.append(
            f"{mark} {row.version:<26}{shown(row.mase):>10}{shown(row.smape):>9}"
            f"{'-' if covered is None else f'{covered:.0%}':>8}{mse:>11}"
            f"{gated_text(row):>15}  {row.dataset}"
        )
    return [*lines, VERSION_NOTE]


def gated_text(row: VersionRow) -> str:
    """The champion's MASE on the row's windows; "other windows" when it could not be
    re-scored on them; "-" for a first model or a version gated before this was recorded."""
    if row.gated_against is None:
        return "-"
    return "other windows" if row.champion_mase is None else shown(row.champion_mase)


def champion_lines(champions: Sequence[tuple[str, VersionRow | None]]) -> list[str]:
    """`wavecast models list` of a panel: each series' champion and its test MASE, sMAPE and
    80 % coverage, so series of any scale can be ranked."""
    lines = [f"  {'series':<15} {'champion':<26}{'MASE':>10}{'sMAPE %':>9}{'cov 80':>8}"]
    for key, row in champions:
        shown_key = shown_id(key)
        if row is None:
            lines.append(f"  {shown_key:<15} -")
            continue
        if row.problem:
            lines.append(f"  {shown_key:<15} {row.version:<26}  damaged: {row.problem}")
            continue
        covered = row.coverage.get("80")
        lines.append(
            f"  {shown_key:<15} {row.version:<26}{shown(row.mase):>10}{shown(row.smape):>9}"
            f"{'-' if covered is None else f'{covered:.0%}':>8}"
        )
    return lines
