"""PNG plots for the leaderboard (matplotlib's object API on the Agg canvas: no pyplot state,
no display needed, identical bytes for identical inputs)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter


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
        ax.set_xscale("log")
        ticks = sorted({v for x, _, _ in series.values() for v in x})
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("macro AUROC (test), mean ± sd")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    return path
