"""Real PTB-XL NORM records and the synthetic default, side by side: a table and a figure.

    python docs/synthetic_calibration.py [--ptbxl ../shared/data/ptbxl] [--n-synthetic 1000]

writes ``docs/synthetic_calibration.md`` and ``docs/synthetic_calibration.png``. Every statistic
is measured by ``benchmark/data/ecg_stats.py`` in the same way on both sides: all PTB-XL records
whose diagnostic superclass is NORM alone, and the normal (condition-free) records among the
first ``--n-synthetic`` of the synthetic default, both at 500 Hz. Needs ``neurokit2``
(``pip install 'ecgbench[features]'``).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmark.data import ecg_stats  # noqa: E402
from benchmark.data.contract import LEADS, default_cache_root  # noqa: E402
from benchmark.storage import atomic_write  # noqa: E402
from ecgbench_datasets.synthetic import GENERATOR_VERSION, SyntheticConfig, generate  # noqa: E402

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
FS = 500
PAIRS = (("I", "V6"), ("aVL", "V5"), ("aVR", "V6"), ("I", "III"), ("I", "aVL"), ("V1", "V6"), ("V2", "V4"))
PER_LEAD = {
    "low_frequency": "variance below 0.67 Hz (share)",
    "noise_share": "noise share (beat-averaging residual)",
    "amplitude": "median-beat peak-to-peak (mV)",
}
INTERVAL_UNITS = {
    "heart_rate": ("heart rate", "bpm", 1.0),
    "pr": ("PR", "ms", 1e3),
    "qrs": ("QRS", "ms", 1e3),
    "qt": ("QT", "ms", 1e3),
}


def quartiles(values: np.ndarray, scale: float = 1.0, digits: int = 2) -> str:
    q1, q2, q3 = scale * np.nanpercentile(values, [25, 50, 75], axis=0)
    return f"{q2:.{digits}f} [{q1:.{digits}f}, {q3:.{digits}f}]"


def table(real: ecg_stats.RecordStats, synthetic: ecg_stats.RecordStats, n: tuple[int, int], header: str) -> str:
    lines = [
        header,
        "",
        f"Frobenius distance of the mean inter-lead correlation matrices: **{ecg_stats.correlation_distance(real, synthetic):.2f}**",
        "",
    ]
    lines += ["| lead pair | real | synthetic |", "|---|---|---|"]
    for a, b in PAIRS:
        i, j = LEADS.index(a), LEADS.index(b)
        lines.append(f"| {a}–{b} | {real.mean_correlation[i, j]:.2f} | {synthetic.mean_correlation[i, j]:.2f} |")
    for name, title in PER_LEAD.items():
        lines += ["", f"**{title}**, per lead: median [interquartile range]", ""]
        lines += ["| lead | real | synthetic |", "|---|---|---|"]
        r, s = getattr(real, name), getattr(synthetic, name)
        for k, lead in enumerate(LEADS):
            lines.append(f"| {lead} | {quartiles(r[:, k])} | {quartiles(s[:, k])} |")
    lines += ["", "**Intervals** (lead II, neurokit2 delineation): median [interquartile range]", ""]
    lines += ["| | real | synthetic |", "|---|---|---|"]
    for name, (title, unit, scale) in INTERVAL_UNITS.items():
        lines.append(
            f"| {title} ({unit}) | {quartiles(getattr(real, name), scale, 0)} | {quartiles(getattr(synthetic, name), scale, 0)} |"
        )
    lines += ["", f"Records: {n[0]} real, {n[1]} synthetic.", ""]
    return "\n".join(lines)


def figure(real: ecg_stats.RecordStats, synthetic: ecg_stats.RecordStats, path: Path) -> None:
    fig = plt.figure(figsize=(16, 9.5), layout="constrained")
    grid = fig.add_gridspec(3, 4)
    for col, (title, stats) in enumerate((("real PTB-XL NORM", real), ("synthetic (normal records)", synthetic))):
        ax = fig.add_subplot(grid[0, col])
        image = ax.imshow(stats.mean_correlation, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(f"mean inter-lead correlation: {title}", fontsize=9)
        ax.set_xticks(range(len(LEADS)), LEADS, fontsize=7, rotation=90)
        ax.set_yticks(range(len(LEADS)), LEADS, fontsize=7)
    ax = fig.add_subplot(grid[0, 2])
    ax.imshow(synthetic.mean_correlation - real.mean_correlation, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_title(f"synthetic - real (Frobenius {ecg_stats.correlation_distance(real, synthetic):.2f})", fontsize=9)
    ax.set_xticks(range(len(LEADS)), LEADS, fontsize=7, rotation=90)
    ax.set_yticks(range(len(LEADS)), LEADS, fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.8)
    panels = [(grid[0, 3], "amplitude"), (grid[1, 0:2], "low_frequency"), (grid[1, 2:4], "noise_share")]
    for cell, name in panels:
        ax = fig.add_subplot(cell)
        positions = np.arange(len(LEADS))
        for offset, stats, color in ((-0.2, real, "tab:blue"), (0.2, synthetic, "tab:orange")):
            values = getattr(stats, name)
            columns = [v[np.isfinite(v)] for v in values.T]
            parts = ax.boxplot(
                columns,
                positions=positions + offset,
                widths=0.35,
                showfliers=False,
                patch_artist=True,
                medianprops={"color": "black"},
            )
            for box in parts["boxes"]:
                box.set_facecolor(color)
        ax.set_xticks(positions, LEADS, fontsize=8)
        ax.set_title(PER_LEAD[name], fontsize=9)
    for col, (name, (title, unit, scale)) in enumerate(INTERVAL_UNITS.items()):
        ax = fig.add_subplot(grid[2, col])
        values = [scale * v[np.isfinite(v)] for v in (getattr(real, name), getattr(synthetic, name))]
        low, high = min(np.percentile(v, 1) for v in values), max(np.percentile(v, 99) for v in values)
        step = 2.0 if name == "heart_rate" else 2 * scale / FS  # intervals come in whole samples: bins of two
        bins = np.arange(low - step / 2, high + step, step)
        for v, color, label in zip(values, ("tab:blue", "tab:orange"), ("real", "synthetic")):
            ax.hist(v, bins=bins, density=True, alpha=0.55, color=color, label=label)
        ax.set_title(f"{title} ({unit})", fontsize=9)
        ax.set_yticks([])
    ax.legend(fontsize=8)
    fig.suptitle("Real PTB-XL NORM records (blue) and the synthetic default's normal records (orange), 500 Hz")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ptbxl", type=Path, default=REPO.parent / "shared" / "data" / "ptbxl", help="PTB-XL folder")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_root(), help="where PTB-XL is prepared")
    parser.add_argument("--n-synthetic", type=int, default=1000, help="synthetic records generated (normal ones kept)")
    parser.add_argument("--out", type=Path, default=DOCS, help="folder of the .md and .png")
    args = parser.parse_args(argv)
    if not (args.ptbxl / "ptbxl_database.csv").is_file():
        print(
            f"error: {args.ptbxl} has no ptbxl_database.csv; pass --ptbxl PATH of a PTB-XL v1.0.3 folder",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    signals, mask = ecg_stats.ptbxl_norm(args.ptbxl, FS, args.cache_dir, progress=True)
    real = ecg_stats.record_stats(signals, mask, FS, progress=True, desc="PTB-XL NORM")
    batch = generate(SyntheticConfig(), np.arange(args.n_synthetic), FS)
    normal = batch.true_labels.sum(1) == 0
    synthetic = ecg_stats.record_stats(
        batch.signals[normal], batch.lead_mask[normal], FS, progress=True, desc="synthetic"
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    header = (
        "# The synthetic default against real ECGs\n\n"
        f"Generated by `python docs/synthetic_calibration.py` at commit {commit or 'unknown'} (generator version "
        f"{GENERATOR_VERSION}) on {platform.machine()} in {time.perf_counter() - started:.0f} s. Real: every PTB-XL record "
        f"of `{args.ptbxl.name}/` whose diagnostic superclass is NORM alone; synthetic: the normal records among the first "
        f"{args.n_synthetic} of the default config. Both at {FS} Hz, measured by `benchmark/data/ecg_stats.py` (its "
        "docstring defines each statistic). The figure is `synthetic_calibration.png`.\n\n"
        "![real and synthetic statistics](synthetic_calibration.png)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    figure(real, synthetic, args.out / "synthetic_calibration.png")
    atomic_write(
        args.out / "synthetic_calibration.md", table(real, synthetic, (len(signals), int(normal.sum())), header)
    )
    print(f"wrote {args.out / 'synthetic_calibration.md'} and {args.out / 'synthetic_calibration.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
