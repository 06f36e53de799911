"""Real PTB-XL NORM records and the synthetic default, side by side: tables and a figure.

    python docs/synthetic_calibration.py [--ptbxl ../shared/data/ptbxl] [--ptbxl1000 ../shared/data/ptbxl1000]

writes ``docs/synthetic_calibration.md`` and ``docs/synthetic_calibration.png``. Every statistic
is measured by ``benchmark/data/ecg_stats.py`` in the same way on both sides: PTB-XL records whose
diagnostic superclass is NORM alone, and the normal (condition-free) records among the first
``--n-synthetic`` of the synthetic default. The generator was fitted to the NORM records with
ecg_id 1-500 (``--ptbxl``, 500 Hz: in sample); the NORM records 501-999 of ``--ptbxl1000`` (100 Hz
only, the benchmark's rate) were never seen by the fit and test it (out of sample). Each distance
comes with a percentile bootstrap CI (patients resampled) and the distance between random halves
of real records (what sampling alone gives). Needs ``neurokit2`` (a core dependency).
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


def table(columns: list[tuple[str, ecg_stats.RecordStats]]) -> list[str]:
    """Per-lead and interval statistics, one column per (title, statistics)."""
    head = "| lead pair | " + " | ".join(title for title, _ in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    lines = [head, rule]
    for a, b in PAIRS:
        i, j = LEADS.index(a), LEADS.index(b)
        lines.append(f"| {a}–{b} | " + " | ".join(f"{s.mean_correlation[i, j]:.2f}" for _, s in columns) + " |")
    for name, title in PER_LEAD.items():
        lines += [
            "",
            f"**{title}**, per lead: median [interquartile range]",
            "",
            head.replace("lead pair", "lead"),
            rule,
        ]
        for k, lead in enumerate(LEADS):
            lines.append(f"| {lead} | " + " | ".join(quartiles(getattr(s, name)[:, k]) for _, s in columns) + " |")
    lines += ["", "**Intervals** (lead II, neurokit2 delineation): median [interquartile range]", ""]
    lines += [head.replace("lead pair", ""), rule]
    for name, (title, unit, scale) in INTERVAL_UNITS.items():
        lines.append(
            f"| {title} ({unit}) | " + " | ".join(quartiles(getattr(s, name), scale, 0) for _, s in columns) + " |"
        )
    lines += ["", "Records: " + ", ".join(f"{len(s.heart_rate)} {title}" for title, s in columns) + ".", ""]
    return lines


def floor_text(stats: ecg_stats.RecordStats, patients: np.ndarray, resamples: int) -> str:
    low, median, high = np.percentile(ecg_stats.split_half_distances(stats, patients, resamples), [5, 50, 95])
    return f"{median:.2f} [{low:.2f}, {high:.2f}]"


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
    fig.suptitle(
        "Real PTB-XL NORM records 1-500, the fit half (blue), and the synthetic default's normal records (orange), 500 Hz"
    )
    fig.savefig(path, dpi=90)
    plt.close(fig)


def synthetic_normal(n: int, fs: int) -> tuple[ecg_stats.RecordStats, np.ndarray]:
    config = SyntheticConfig()
    batch = generate(config, np.arange(n), fs)
    normal = batch.true_labels.sum(1) == 0
    stats = ecg_stats.record_stats(
        batch.signals[normal], batch.lead_mask[normal], fs, progress=True, desc=f"synthetic {fs} Hz"
    )
    return stats, (np.arange(n) // config.records_per_patient)[normal].astype(str)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ptbxl", type=Path, default=REPO.parent / "shared" / "data" / "ptbxl", help="PTB-XL folder")
    parser.add_argument(
        "--ptbxl1000",
        type=Path,
        default=REPO.parent / "shared" / "data" / "ptbxl1000",
        help="PTB-XL folder holding ecg_ids 501-999 at 100 Hz (the held-out half)",
    )
    parser.add_argument("--cache-dir", type=Path, default=default_cache_root(), help="where PTB-XL is prepared")
    parser.add_argument("--n-synthetic", type=int, default=1000, help="synthetic records generated (normal ones kept)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples and random half splits")
    parser.add_argument("--out", type=Path, default=DOCS, help="folder of the .md and .png")
    args = parser.parse_args(argv)
    for folder, option in ((args.ptbxl, "--ptbxl"), (args.ptbxl1000, "--ptbxl1000")):
        if not (folder / "ptbxl_database.csv").is_file():
            print(
                f"error: {folder} has no ptbxl_database.csv; pass {option} PATH of a PTB-XL v1.0.3 folder",
                file=sys.stderr,
            )
            return 2
    started = time.perf_counter()
    fit = ecg_stats.ptbxl_norm(args.ptbxl, FS, args.cache_dir, progress=True)
    if fit.ecg_ids.max() > ecg_stats.FIT_LAST_ECG_ID:
        print(
            f"error: {args.ptbxl} holds records after ecg_id {ecg_stats.FIT_LAST_ECG_ID}, which the fit never saw; "
            "pass the folder of records 1-500 (../shared/data/ptbxl)",
            file=sys.stderr,
        )
        return 2
    real = ecg_stats.record_stats(fit.signals, fit.lead_mask, FS, progress=True, desc="PTB-XL NORM 1-500, 500 Hz")
    synthetic, synthetic_patients = synthetic_normal(args.n_synthetic, FS)
    fit_100, held = ecg_stats.ptbxl_norm(args.ptbxl1000, 100, args.cache_dir, progress=True).halves()
    real_100 = ecg_stats.record_stats(fit_100.signals, fit_100.lead_mask, 100, progress=True, desc="NORM 1-500, 100 Hz")
    held_100 = ecg_stats.record_stats(held.signals, held.lead_mask, 100, progress=True, desc="NORM 501-999, 100 Hz")
    synthetic_100, patients_100 = synthetic_normal(args.n_synthetic, 100)
    n = args.resamples

    def distance(a, units_a, b, units_b) -> str:
        return str(ecg_stats.distance_with_ci(a, b, units_a, units_b, n_resamples=n))

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# The synthetic default against real ECGs",
        "",
        f"Generated by `python docs/synthetic_calibration.py` at commit {commit or 'unknown'} (generator version "
        f"{GENERATOR_VERSION}) on {platform.machine()} in {time.perf_counter() - started:.0f} s. Real: PTB-XL records "
        "whose diagnostic superclass is NORM alone. The generator was **fitted** to those with ecg_id 1-500 "
        f"(`{args.ptbxl.name}/`, datasets/synthetic.py); those with ecg_id 501-999 (`{args.ptbxl1000.name}/`, 100 Hz "
        "only; patients of the fit half left out) were never seen by the fit and **test** it. Synthetic: the normal "
        f"records among the first {args.n_synthetic} of the default config. Everything is measured by "
        "`benchmark/data/ecg_stats.py` (its docstring defines each statistic).",
        "",
        "## Inter-lead correlation: Frobenius distance of the mean matrices",
        "",
        f"Each distance with its 95 % percentile bootstrap CI ({n} resamples of patients on both sides); the floor is "
        f"the distance between two random halves (by patient) of one set of real records, median [5 %, 95 %] over {n} "
        "splits: what sampling alone puts between two real samples of that size. Two finite samples of one "
        "population are never at distance 0, and resampling adds noise to both means, so a distance's bootstrap "
        "distribution lies above it: read each CI beside its floor.",
        "",
        "| | 100 Hz (the benchmark's rate) | 500 Hz |",
        "|---|---|---|",
        f"| synthetic vs held-out real (501-999, out of sample) | {distance(synthetic_100, patients_100, held_100, held.patient_ids)} | no held-out records at 500 Hz |",
        f"| real fit half vs held-out real (the real between-halves distance) | {distance(real_100, fit_100.patient_ids, held_100, held.patient_ids)} | — |",
        f"| random halves of the held-out real records (floor) | {floor_text(held_100, held.patient_ids, n)} | — |",
        f"| synthetic vs real fit half (1-500, in sample) | {distance(synthetic_100, patients_100, real_100, fit_100.patient_ids)} | {distance(synthetic, synthetic_patients, real, fit.patient_ids)} |",
        f"| random halves of the real fit half (floor) | {floor_text(real_100, fit_100.patient_ids, n)} | {floor_text(real, fit.patient_ids, n)} |",
        "",
        "Records 501-999 differ from 1-500 by more than sampling does (the between-halves distance lies above the "
        "random-halves floor), so the fair yardstick of the synthetic's out-of-sample distance is the real "
        "between-halves distance beside it; tests/test_synthetic_calibration.py asserts the synthetic distance is "
        "at most its upper CI bound.",
        "",
        "## Per-lead statistics and intervals",
        "",
        "The figure `synthetic_calibration.png` shows the in-sample 500 Hz columns.",
        "",
        "![real and synthetic statistics](synthetic_calibration.png)",
        "",
        *table(
            [
                ("real 1-500, 500 Hz (fit)", real),
                ("synthetic, 500 Hz", synthetic),
                ("real 501-999, 100 Hz (held out)", held_100),
                ("synthetic, 100 Hz", synthetic_100),
            ]
        ),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    figure(real, synthetic, args.out / "synthetic_calibration.png")
    atomic_write(args.out / "synthetic_calibration.md", "\n".join(lines))
    print(f"wrote {args.out / 'synthetic_calibration.md'} and {args.out / 'synthetic_calibration.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
