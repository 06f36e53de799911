"""PNG plots for the leaderboard (matplotlib's object API on the Agg canvas: no pyplot state,
no display needed, identical bytes for identical inputs)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from benchmark.storage import atomic_write


def save_png(fig: Figure, path: Path) -> None:
    """The figure as PNG, written atomically (no tool name in the metadata: equal inputs, equal bytes)."""
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", metadata={"Software": None}))


def curve_plot(
    path: Path,
    title: str,
    xlabel: str,
    series: dict[str, tuple[list, list[float], list[float]]],
    log_x: bool = False,
    categories: list[str] | None = None,
) -> Path:
    """Mean ± sd curves, one per method: ``series[method] = (x, mean, sd)``.

    With ``categories`` the x values are category names placed in that order (e.g. lead sets).
    """
    fig = Figure(figsize=(6.4, 4.0), dpi=110, layout="constrained")
    ax = fig.subplots()
    for method, (x, mean, sd) in series.items():
        positions = [categories.index(v) for v in x] if categories else x
        ax.errorbar(positions, mean, yerr=sd, marker="o", markersize=4, capsize=3, linewidth=1.5, label=method)
    if categories:
        ax.set_xticks(range(len(categories)), categories)
    if log_x:  # ticks at the measured sizes, written as plain numbers
        log_ticks(ax, sorted({v for x, _, _ in series.values() for v in x}), "{:g}")
    return finish(fig, ax, path, title, xlabel, "macro AUROC (test), mean ± sd")


def log_ticks(ax, ticks: list[float], form: str) -> None:
    """A log x axis with ticks at the measured values only."""
    ax.set_xscale("log")
    ax.set_xticks(ticks, [form.format(v) for v in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def finish(fig: Figure, ax, path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    """Title, labels, grid and legend; the figure saved to ``path``."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, path)
    return path


def band_plot(
    path: Path,
    title: str,
    xlabel: str,
    series: dict[str, tuple[list[float], list[float], list[float], list[float]]],
    levels: dict[str, float] | None = None,
) -> Path:
    """Curves with confidence bands on a log x axis: ``series[method] = (x, mean, low, high)``;
    ``levels`` are methods that do not depend on x (untrained references), drawn as dashed lines."""
    fig = Figure(figsize=(6.4, 4.0), dpi=110, layout="constrained")
    ax = fig.subplots()
    for i, (method, (x, mean, low, high)) in enumerate(series.items()):
        ax.plot(x, mean, marker="o", markersize=4, linewidth=1.5, color=f"C{i}", label=method)
        ax.fill_between(x, low, high, color=f"C{i}", alpha=0.2, linewidth=0)
    for j, (method, level) in enumerate((levels or {}).items()):
        ax.axhline(level, color=f"C{len(series) + j}", linestyle="--", linewidth=1, label=method)
    log_ticks(ax, sorted({v for x, *_ in series.values() for v in x}), "{:.2g}")
    return finish(fig, ax, path, title, xlabel, "macro AUROC (test), seed mean, 95 % CI")


@dataclass
class Run:
    """One training run's curve: x (FLOPs or epochs), y, whether it ended diverged, and the
    level of a trivial predictor at each point (pretraining: the loss a constant reaches)."""

    x: list[float]
    y: list[float]
    diverged: bool = False
    reference: list[float] | None = None


#: most methods a training-curve panel's legend lists inside its axes; more go beside them
LEGEND_INSIDE_MAX = 6


def training_curves_plot(
    path: Path,
    title: str,
    pretraining: dict[str, list[Run]],
    finetuning: dict[str, list[Run]],
    learned_ratio: float | None = None,
    threshold_label: str = "learned below",
) -> Path:
    """Pretraining loss against cumulative FLOPs, and fine-tuning validation macro AUROC per
    epoch when there is any; one colour per method, one line per seed, × at the last finite point
    of a diverged run. Where every pretraining run knows its trivial level, the loss is drawn as
    loss / trivial with the trivial level (1) and ``learned_ratio`` as lines, so that methods with
    different objectives share one scale; otherwise the raw loss on a log axis. ``threshold_label``
    names the ``learned_ratio`` line in the legend."""
    as_ratio = bool(pretraining) and all(r.reference for rs in pretraining.values() for r in rs)
    if as_ratio:
        pretraining = {
            m: [Run(r.x, [y / t for y, t in zip(r.y, r.reference or [])], r.diverged) for r in rs]
            for m, rs in pretraining.items()
        }
    panels = [p for p in (pretraining, finetuning) if p]
    # a legend of many lines covers the curves it names: beside the axes then, the figure wider
    outside = max(len(p) for p in panels) > LEGEND_INSIDE_MAX
    fig = Figure(figsize=(6.4 * len(panels) + (3.2 if outside else 0), 4.0), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = {m: f"C{i}" for i, m in enumerate(sorted({*pretraining, *finetuning}))}
    labels = (
        ("pretraining FLOPs", "loss / trivial loss" if as_ratio else "pretraining loss (log scale)", pretraining),
        ("fine-tuning epoch", "validation macro AUROC", finetuning),
    )
    for ax, (xlabel, ylabel, runs) in zip(axes, [item for item in labels if item[2]]):
        for method, method_runs in runs.items():
            for i, run in enumerate(method_runs):
                ax.plot(
                    run.x,
                    run.y,
                    color=colours[method],
                    marker="o",
                    markersize=2.5,
                    linewidth=1.2,
                    alpha=0.8,
                    label=method if i == 0 else None,
                )
                if run.diverged and run.x:
                    ax.plot(run.x[-1], run.y[-1], "x", color=colours[method], markersize=9, markeredgewidth=2)
        if runs is pretraining:
            ax.set_xlim(left=0)
            if as_ratio:
                ax.axhline(1.0, color="0.5", linewidth=1.5, label="trivial predictor")
                if learned_ratio is not None:
                    ax.axhline(learned_ratio, color="0.3", linestyle="--", linewidth=1, label=threshold_label)
                ax.set_ylim(*ratio_limits(runs, learned_ratio))
            elif all(y > 0 for rs in runs.values() for r in rs for y in r.y):
                ax.set_yscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, **({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if outside else {}))
    fig.suptitle(title, fontsize=10)
    save_png(fig, path)
    return path


def ratio_limits(runs: dict[str, list[Run]], learned_ratio: float | None) -> tuple[float, float]:
    """The y range of loss / trivial curves: from just below the lowest ratio (and the learned
    threshold) to just above the trivial level or the highest ratio of any run's second half. A
    run's first intervals, often 10-20 times the trivial loss while the decoder's output settles,
    would otherwise squeeze the part a reader needs (between the threshold and 1) into a sliver."""
    values = [y for rs in runs.values() for r in rs for y in r.y if math.isfinite(y)]
    late = [y for rs in runs.values() for r in rs for y in r.y[len(r.y) // 2 :] if math.isfinite(y)]
    if not values:
        return 0.0, 1.25
    low = min([*values, *([learned_ratio] if learned_ratio is not None else []), 1.0])
    return max(0.0, low - 0.1), max(1.25, 1.1 * max(late, default=1.0))
