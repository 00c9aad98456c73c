"""The retrain report: markdown for Prefect's UI, and self-contained HTML with the plots inline."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wavecast.publish import RetrainSummary


def _score_rows(summary: RetrainSummary) -> list[tuple[str, dict[str, float]]]:
    rows = [("model (candidate)", summary.metrics.model_dump())]
    if summary.champion_rescored is not None:
        rows.append(("champion, same test windows", summary.champion_rescored.model_dump()))
    rows += [(f"baseline: {name}", m.model_dump()) for name, m in summary.baselines.items()]
    return rows


def _headline(summary: RetrainSummary) -> str:
    if summary.unchanged:
        return f"**No new data: model unchanged.** Champion stays `{summary.champion}`."
    if summary.promoted:
        return f"**Promoted** `{summary.version}` to champion."
    return f"**Not promoted**: `{summary.version}` was kept; champion stays `{summary.champion}`."


def render_markdown(summary: RetrainSummary, manifest: dict[str, Any]) -> str:
    """What a person opening the flow run wants: verdict, numbers, why, lineage, files."""
    lines = [f"# wavecast retrain: {summary.version}", "", _headline(summary), ""]
    lines += ["| forecaster | MSE | RMSE | MAE |", "|---|---:|---:|---:|"]
    for name, m in _score_rows(summary):
        lines.append(f"| {name} | {m['mse']:.3g} | {m['rmse']:.3g} | {m['mae']:.3g} |")
    lines += ["", "## Gate", *[f"- {r}" for r in summary.reasons]]
    lines += ["", "## What changed", *[f"- {c}" for c in summary.changes]]
    series, dataset = manifest["series"], manifest["dataset"]
    lines += [
        "",
        "## Lineage",
        f"- source `{series['source']}` ({series['n_points']} points, "
        f"content hash `{series['content_hash']}`)",
        f"- dataset `{dataset['dataset_id']}`: {dataset['n_train']} train / "
        f"{dataset['n_test']} test windows",
        f"- code `{manifest['code']['revision'] or 'not in git'}`, "
        f"fingerprint `{manifest['code']['fingerprint']}`, flow run `{manifest['flow_run_id']}`",
        "",
        "## Files",
        f"- model directory: `{summary.model_dir}`",
        f"- dataset: `{summary.dataset_dir}`",
        f"- HTML report with plots: `{summary.report}`",
    ]
    return "\n".join(lines) + "\n"


def _inline_png(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'


def render_html(summary: RetrainSummary, manifest: dict[str, Any], images: dict[str, bytes]) -> str:
    """One file that opens anywhere: the markdown's content plus every plot, inlined."""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{m['mse']:.3g}</td>"
        f"<td>{m['rmse']:.3g}</td><td>{m['mae']:.3g}</td></tr>"
        for name, m in _score_rows(summary)
    )
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in (*summary.reasons, *summary.changes))
    figures = "".join(_inline_png(name, png) for name, png in images.items())
    lineage = html.escape(str(manifest["series"] | {"dataset": manifest["dataset"]["dataset_id"]}))
    return (
        "<!doctype html><meta charset='utf-8'>"
        f"<title>wavecast {html.escape(summary.version)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "td,th{padding:.2em .8em;text-align:right}img{max-width:100%}</style>"
        f"<h1>wavecast retrain {html.escape(summary.version)}</h1>"
        f"<p>{html.escape(_headline(summary).replace('**', '').replace('`', ''))}</p>"
        "<table><tr><th>forecaster</th><th>MSE</th><th>RMSE</th><th>MAE</th></tr>"
        f"{rows}</table><ul>{reasons}</ul><p><small>{lineage}</small></p>{figures}"
    )
