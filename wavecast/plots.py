"""The tutorial's three figures, drawn on Figure objects so no global pyplot state is touched."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def new_figure() -> Figure:
    """Imported here: matplotlib costs ~40 MB and ~0.3 s, which cache hits never need."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.5))
    # Fixed margins, not tight_layout: that renders every figure twice (~0.1 s each). Titles
    # are placed at y=1 too: matplotlib's automatic placement measures every tick label.
    figure.subplots_adjust(left=0.11, right=0.97, bottom=0.14, top=0.91)
    return figure


def _finish(
    figure: Figure,
    axes: Axes,
    labels: tuple[str, str],
    title: str,
    path: Path,
    legend_at: Literal["best", "upper left"] = "best",
) -> Path:
    """Axis labels, title, grid and legend, as every figure here has them; then save."""
    _decorate(axes, labels, title, legend_at)
    figure.savefig(path, dpi=110)
    return path


def _decorate(
    axes: Axes, labels: tuple[str, str], title: str, legend_at: Literal["best", "upper left"]
) -> None:
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    axes.set_title(title, y=1.0)
    axes.grid(alpha=0.3)
    axes.legend(loc=legend_at)


def plot_loss(losses: Sequence[float], path: Path) -> Path:
    """Training loss by epoch, on a log scale where the interesting part of the curve lives."""
    from matplotlib.ticker import LogFormatter

    figure = new_figure()
    axes = figure.subplots()
    axes.plot(np.arange(1, len(losses) + 1), losses, label="train loss (MSE)")
    axes.set_yscale("log")
    axes.minorticks_off()  # dozens of minor tick artists: ~0.1 s to draw, little to read
    # Labels as plain "1e-04": the default's mathtext 10^-4 costs ~0.2 s to lay out once.
    axes.yaxis.set_major_formatter(LogFormatter())
    return _finish(figure, axes, ("epoch", "MSE"), "Training loss", path)


def plot_forecasts(
    starts: np.ndarray,
    truth: np.ndarray,
    forecasts: Mapping[str, np.ndarray],
    title: str,
    path: Path,
) -> Path:
    """Truth against each named forecast on the test windows, by window start."""
    figure = new_figure()
    axes = figure.subplots()
    axes.plot(starts, truth, label="truth", linewidth=2.5, color="black", alpha=0.35)
    for name, values in forecasts.items():
        axes.plot(starts, values, label=name, linewidth=1.2)
    return _finish(figure, axes, ("window start", "value"), title, path)


def fan_figure(
    observed_at: np.ndarray,
    history: np.ndarray,
    target_at: np.ndarray,
    forecast: np.ndarray,
    bands: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    x_label: str,
) -> Figure:
    """The last observations, then the forecast and its intervals, widest band palest; on
    the series' dates (datetime64 positions) or its indices."""
    figure = new_figure()
    axes = figure.subplots()
    axes.plot(observed_at, history, color="black", linewidth=1.2, label="observed")
    for alpha, (name, (low, high)) in zip((0.18, 0.32, 0.46), bands.items(), strict=False):
        axes.fill_between(target_at, low, high, color="tab:blue", alpha=alpha, label=name)
    axes.plot(target_at, forecast, color="tab:blue", marker="o", markersize=3, label="forecast")
    if np.asarray(target_at).dtype.kind == "M":
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

        locator = AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    _decorate(axes, (x_label, "value"), title, "upper left")
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    return path


def plot_realized_error(
    target_index: np.ndarray,
    relative_error: np.ndarray,
    ratio: np.ndarray,
    window: int,
    threshold: float,
    title: str,
    path: Path,
) -> Path:
    """Each realized target's error in held-out RMSEs, the windowed ratio the verdict reads,
    and the threshold it is held to."""
    figure = new_figure()
    axes = figure.subplots()
    axes.scatter(target_index, relative_error, s=10, alpha=0.5, label="|error| / held-out RMSE")
    axes.plot(target_index, ratio, color="tab:blue", label=f"error ratio, last {window} targets")
    axes.axhline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}x")
    axes.axhline(1.0, color="gray", linewidth=0.8)
    labels = ("target (index in the series)", "error / held-out RMSE")
    return _finish(figure, axes, labels, title, path)
