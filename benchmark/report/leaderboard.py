"""LEADERBOARD.md, generated from the results store alone (never edited by hand).

* One table per group of comparable results (:func:`benchmark.report.comparison.comparable_tables`:
  same evaluation, same pretraining budget; mismatching configurations get separate tables,
  never averaged together): macro AUROC mean ± sd over seeds, its 95 % bootstrap CI, paired
  bootstrap tests against the best method and the untrained reference (Holm over all tests of
  the table, a marker where a method is significantly below the best), macro AUPRC and the
  compute columns (parameters, FLOPs per step, steps, total FLOPs, wall time, peak memory).
* Where labels are ICD-10 codes: macro AUROC per ICD level and a per-code table in the layout
  of the LAMAE paper's Tables 1/3/4.
* Label-efficiency and reduced-lead sweeps: tables and PNG curves (written beside the markdown).
* Published numbers (:mod:`benchmark.report.reported`) only in tables marked "reported".
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tabulate import tabulate

from benchmark.data.icd import ICD_LEVELS, icd_hierarchy, icd_level, is_valid_code
from benchmark.report import stats
from benchmark.report.comparison import UNTRAINED_REFERENCES, Table, TableStats, comparable_tables
from benchmark.report.plots import curve_plot
from benchmark.report.reported import REPORTED, Reported, reported_for
from benchmark.report.results import ResultStore
from benchmark.storage import atomic_write

N_RESAMPLES = 1000
ALPHA = 0.05
BELOW_BEST = "▼"
SWEEPS = {"label_efficiency": "Label efficiency", "reduced_leads": "Reduced leads"}
_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)")


# -- formatting ----------------------------------------------------------------------------------
def mean_sd(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def si(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    for exponent, prefix in ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if abs(value) >= 10**exponent:
            return f"{value / 10**exponent:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}"


def signed_si(value: float) -> str:
    return ("+" if value >= 0 else "−") + si(abs(value))


def title_of(table: Table, variant: bool = True) -> str:
    parts = [table.dataset, table.label_set, f"preset `{table.preset}`", table.protocol]
    return " · ".join(parts + ([table.variant] if variant and table.variant else []))


def method_order(table: Table) -> list[str]:
    """Best seed-mean macro AUROC first."""

    def mean(method):
        values = [
            r["metrics"]["macro_auroc"] for r in table.by_method[method] if r["metrics"]["macro_auroc"] is not None
        ]
        return np.mean(values) if values else -np.inf

    return sorted(table.by_method, key=lambda m: (-mean(m), m))


# -- compute columns -----------------------------------------------------------------------------
def compute_columns(table: Table, method: str, lamae_encoder: int | None) -> dict[str, str]:
    recs = table.by_method[method]
    compute = recs[0]["compute"]
    pretrain = [r["compute"]["pretrain"] for r in recs if r["compute"].get("pretrain")]
    encoder = compute["encoder_params"]
    delta = "" if lamae_encoder is None or method == "lamae" else f" ({signed_si(encoder - lamae_encoder)})"
    first = pretrain[0] if pretrain else {}
    peaks = [p["peak_memory_mb"] for p in pretrain if p.get("peak_memory_mb") is not None]
    return {
        "params": si(compute["total_params"]),
        "encoder params (Δ lamae)" if lamae_encoder is not None else "encoder params": si(encoder) + delta,
        "FLOPs/step": si(first.get("flops_per_step")),
        "steps": str(first["steps"]) if first else "—",
        "pretrain FLOPs": si(first.get("total_flops")),
        "pretrain time": f"{np.mean([p['wall_s'] for p in pretrain]):.0f} s" if pretrain else "—",
        "peak memory": f"{max(peaks):.0f} MiB" if peaks else ("n/a" if pretrain else "—"),
    }


# -- statistics of one table ---------------------------------------------------------------------
@dataclass
class TableTests:
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    vs_best: dict[str, tuple[stats.Test, float]] = field(default_factory=dict)  # method -> (test, Holm p)
    vs_reference: dict[str, tuple[stats.Test, float]] = field(default_factory=dict)
    reference: str | None = None
    n_resamples: int = 0
    error: str | None = None


def table_tests(table: Table, store: ResultStore, order: list[str]) -> TableTests:
    """CIs and paired bootstrap tests vs the best method and the untrained reference; Holm over
    all tests of the table. A table whose statistics cannot be computed says why."""
    try:
        ts = TableStats(table, store, N_RESAMPLES)
    except (ValueError, OSError) as exc:
        return TableTests(error=str(exc))
    result = TableTests(ci={m: ts.ci(m) for m in order}, n_resamples=len(ts.indices))
    best = order[0]
    result.reference = next((m for m in UNTRAINED_REFERENCES if m in table.by_method), None)
    tests = [("best", m, ts.paired_bootstrap(m, best)) for m in order if m != best]
    if result.reference:
        tests += [("reference", m, ts.paired_bootstrap(m, result.reference)) for m in order if m != result.reference]
    for (kind, method, test), p_holm in zip(tests, stats.holm([t.p for *_, t in tests])):
        target = result.vs_best if kind == "best" else result.vs_reference
        target[method] = (test, float(p_holm))
    return result


def difference_cell(entry: tuple[stats.Test, float] | None, itself: str) -> str:
    if entry is None:
        return itself
    test, p_holm = entry
    return f"{test.estimate:+.4f} (p={p_holm:.3g})"


def main_table(table: Table, store: ResultStore) -> list[str]:
    order = method_order(table)
    tests = table_tests(table, store, order)
    lamae_encoder = table.by_method["lamae"][0]["compute"]["encoder_params"] if "lamae" in table.by_method else None
    rows = []
    for method in order:
        recs = table.by_method[method]
        below = method in tests.vs_best and tests.vs_best[method][1] < ALPHA and tests.vs_best[method][0].estimate < 0
        row = {
            "method": method,
            "macro AUROC": mean_sd([r["metrics"]["macro_auroc"] for r in recs]) + (f" {BELOW_BEST}" if below else ""),
            "95 % CI": "[{:.4f}, {:.4f}]".format(*tests.ci[method]) if method in tests.ci else "n/a",
            "Δ best (p Holm)": difference_cell(tests.vs_best.get(method), "best"),
        }
        if tests.reference:
            row[f"Δ {tests.reference} (p Holm)"] = difference_cell(tests.vs_reference.get(method), "reference")
        row["macro AUPRC"] = mean_sd([r["metrics"]["macro_auprc"] for r in recs])
        row["seeds"] = len(recs)
        rows.append({**row, **compute_columns(table, method, lamae_encoder)})
    lines = [tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)]
    if tests.error:
        lines += ["", f"No confidence intervals or tests: {tests.error}"]
    return lines


def table_meta(table: Table) -> list[str]:
    recs = table.records
    devices = sorted({r["provenance"]["device"] for r in recs})
    dates = sorted(r["provenance"]["finished_at"][:10] for r in recs)
    commits = sorted(
        {
            (r["provenance"]["git"]["commit"] or "unknown")[:10] + ("+dirty" if r["provenance"]["git"]["dirty"] else "")
            for r in recs
        }
    )
    n_test = sorted({r["metrics"]["n_test"] for r in recs})
    seeds = sorted({r["cell"]["seed"] for r in recs})
    return [
        f"- test records: {', '.join(map(str, n_test))}; labels scored: {recs[0]['metrics']['n_labels_scored']}; "
        f"seeds: {', '.join(map(str, seeds))}",
        f"- pretraining budget: {table.budget or 'none (untrained methods only)'}",
        f"- hardware: {'; '.join(devices)}",
        f"- dates: {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else ""),
        f"- code: {', '.join(commits)}",
    ]


# -- ICD reports ---------------------------------------------------------------------------------
def is_icd_label_set(names: list[str]) -> bool:
    try:
        return bool(names) and all(icd_level(n) in ICD_LEVELS for n in names)
    except ValueError:
        return False


def icd_order(names: list[str]) -> list[str]:
    """Hierarchy order of the paper's tables (IX, IX.I05-I09, I07, I071, ...)."""
    ordered, _ = icd_hierarchy([n for n in names if is_valid_code(n)])
    return [n for n in ordered if n in names] + [n for n in names if n not in ordered]


def seed_mean_per_label(recs: list[dict]) -> dict[str, float]:
    values = defaultdict(list)
    for record in recs:
        for label, value in record["metrics"]["per_label_auroc"].items():
            values[label].append(value)
    return {label: float(np.mean(v)) for label, v in values.items()}


def icd_reports(table: Table, order: list[str]) -> list[str]:
    per_label = {m: seed_mean_per_label(table.by_method[m]) for m in order}
    labels = icd_order(sorted({label for values in per_label.values() for label in values}))
    level_rows = []
    for level in ICD_LEVELS:
        at_level = [label for label in labels if icd_level(label) == level]
        if at_level:
            level_rows.append(
                {
                    "ICD level": level,
                    "labels": len(at_level),
                    **{m: f"{np.mean([per_label[m][label] for label in at_level]):.4f}" for m in order},
                }
            )
    code_rows = []
    for label in labels:
        values = {m: per_label[m].get(label) for m in order}
        best = max(v for v in values.values() if v is not None)
        code_rows.append(
            {
                "code": label,
                **{
                    m: "n/a" if v is None else (f"**{v:.4f}**" if v == best and len(order) > 1 else f"{v:.4f}")
                    for m, v in values.items()
                },
            }
        )
    return [
        "",
        "Macro AUROC per ICD level (seed mean; a level's macro AUROC is the mean over its codes):",
        "",
        tabulate(level_rows, headers="keys", tablefmt="github", disable_numparse=True),
        "",
        "<details><summary>AUROC per code (seed mean; best in bold; rows in ICD-10 hierarchy order "
        "as the LAMAE paper's Tables 1/3/4)</summary>",
        "",
        tabulate(code_rows, headers="keys", tablefmt="github", disable_numparse=True),
        "",
        "</details>",
    ]


# -- reported numbers ----------------------------------------------------------------------------
def reported_table(entries: list[Reported]) -> str:
    """One table per source and data: methods (and single codes) x protocols."""
    blocks = []
    for source, data in dict.fromkeys((r.source, r.data) for r in entries):
        chosen = [r for r in entries if (r.source, r.data) == (source, data)]
        protocols = list(dict.fromkeys(r.protocol for r in chosen))
        rows = {}
        for r in chosen:
            name = r.method if r.label == "macro" else f"{r.method}, code {r.label}"
            rows.setdefault(name, {"method (reported)": name})[r.protocol] = f"{r.auroc:.4f}"
        blocks.append(
            f"*{source}* — {data}, macro AUROC unless a code is named:\n\n"
            + tabulate(
                [{p: row.get(p, "—") for p in ["method (reported)", *protocols]} for row in rows.values()],
                headers="keys",
                tablefmt="github",
                disable_numparse=True,
            )
        )
    return "\n\n".join(blocks)


# -- sweeps --------------------------------------------------------------------------------------
def sweep_of(record: dict) -> str | None:
    return (record["config"].get("variant") or {}).get("sweep")


@dataclass
class Point:
    label: str  # column / x tick, e.g. "10%" or "I+II"
    x: float  # sort key / position: training records, or -number of leads
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # method -> scores


def sweep_point(record: dict, sweep: str) -> tuple[str, float]:
    variant = record["config"].get("variant") or {}
    params = variant.get("params", {})
    if sweep == "label_efficiency":
        n = record["details"].get("n_train", 0)
        return params.get("train_size", "100%"), n
    leads = params.get("leads")
    return (variant["name"].removeprefix("leads-") if leads else "all"), -(len(leads) if leads else 12)


def sweep_sections(tables: list[Table], sweep: str, plots_dir: Path, link_base: Path) -> tuple[list[str], list[Path]]:
    """A table and a PNG curve per group of comparable tables that hold points of ``sweep``;
    returns the markdown lines and the plots written."""
    groups: dict[tuple, list[Table]] = defaultdict(list)
    for table in tables:
        groups[(table.dataset, table.label_set, table.preset, table.protocol, table.evaluation, table.budget)].append(
            table
        )
    lines, plots = [], []
    for key, group in groups.items():
        if not any(sweep_of(r) == sweep for t in group for r in t.records):
            continue
        points: dict[str, Point] = {}
        for table in group:
            for record in table.records:
                if table.variant and sweep_of(record) != sweep:
                    continue
                label, x = sweep_point(record, sweep)
                point = points.setdefault(label, Point(label, 0.0))
                point.values[record["cell"]["method"]].append(record["metrics"]["macro_auroc"])
                point.x = max(point.x, x) if sweep == "label_efficiency" else x
        ordered = sorted(points.values(), key=lambda p: p.x)
        methods = sorted({m for p in ordered for m in p.values})
        heading = title_of(group[0], variant=False)
        plot_title = heading.replace("`", "")
        columns = [f"{p.label} (n={p.x:.0f})" if sweep == "label_efficiency" else p.label for p in ordered]
        rows = [
            {
                "method": m,
                **{
                    c: mean_sd(p.values.get(m, [])) + (f" ({len(p.values[m])})" if p.values.get(m) else "")
                    for c, p in zip(columns, ordered)
                },
            }
            for m in methods
        ]
        slug = "_".join([sweep, *key[:4], key[4][:6]]).replace("/", "-").replace(" ", "")
        series = {
            m: (
                [p.x if sweep == "label_efficiency" else p.label for p in ordered if p.values.get(m)],
                [float(np.mean(p.values[m])) for p in ordered if p.values.get(m)],
                [
                    float(np.std(p.values[m], ddof=1)) if len(p.values[m]) > 1 else 0.0
                    for p in ordered
                    if p.values.get(m)
                ],
            )
            for m in methods
        }
        if sweep == "label_efficiency":
            path = curve_plot(plots_dir / f"{slug}.png", plot_title, "training records (log scale)", series, log_x=True)
        else:
            path = curve_plot(
                plots_dir / f"{slug}.png", plot_title, "leads present", series, categories=[p.label for p in ordered]
            )
        plots.append(path)
        lines += [
            "",
            f"### {SWEEPS[sweep]}: {heading}",
            "",
            f"- pretraining budget: {group[0].budget or 'none (untrained methods only)'}; cells: macro AUROC "
            f"mean ± sd (number of results: seeds" + (" × subset seeds" if sweep == "label_efficiency" else "") + ")",
            "",
            tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True),
            "",
            f"![{SWEEPS[sweep]}: {heading}]({path.relative_to(link_base).as_posix()})",
        ]
    return lines, plots


# -- the document --------------------------------------------------------------------------------
def render(
    records: list[dict], store: ResultStore, source: str, plots_dir: Path, link_base: Path
) -> tuple[str, list[Path]]:
    """The markdown (links relative to ``link_base``) and the plots written to ``plots_dir``."""
    tables = comparable_tables(records)
    plots = []
    lines = [
        "# Leaderboard",
        "",
        f"Generated by `python -m benchmark leaderboard` from `{source}` ({len(records)} result files). "
        "Do not edit by hand: re-run the benchmark and regenerate.",
        "",
        "Macro AUROC on the test split, mean ± sd over seeds. **95 % CI**: percentile bootstrap of the seed-mean "
        f"macro AUROC over {N_RESAMPLES} resamples of the test records (resamples without a positive for a label "
        "are redrawn; the same resamples for every method). **Δ best / Δ reference**: difference of the seed-mean "
        f"macro AUROC to the best method and to the untrained reference, paired bootstrap p-value, Holm-adjusted "
        f"over all tests of the table; {BELOW_BEST} = significantly below the best (p < {ALPHA}). `random_init` is a "
        "frozen randomly initialised encoder and `scratch` the same architecture trained without pretraining — a "
        "pretraining method is only useful where it beats them. Compute: parameters (with the decoder), "
        "encoder parameters used downstream, measured FLOPs of one pretraining step (forward + backward), steps, "
        "total pretraining FLOPs, wall time and peak CUDA memory (n/a on CPU). Only results with the same "
        "evaluation settings and pretraining budget share a table.",
    ]
    main = [t for t in tables if not t.variant]
    for table in main:
        order = method_order(table)
        lines += ["", f"## {title_of(table)}", "", *table_meta(table), "", *main_table(table, store)]
        if is_icd_label_set(
            table.records[0].get("label_names") or list(table.records[0]["metrics"]["per_label_auroc"])
        ):
            lines += icd_reports(table, order)
        published = reported_for(table.dataset, table.protocol)
        if published:
            lines += [
                "",
                "Reported in the literature (not measured here; other data versions and model scales):",
                "",
                reported_table(published),
            ]
    for sweep in SWEEPS:
        section, written = sweep_sections(tables, sweep, plots_dir, link_base)
        plots += written
        if section:
            lines += ["", f"## {SWEEPS[sweep]}", *section]
    lines += [
        "",
        "## Reported in the literature (not measured here)",
        "",
        "Published numbers for context (docs/method_specs.md §6), on the sources' data versions, label sets and "
        "model scales; never compared with or averaged into the measured tables above.",
        "",
        reported_table(list(REPORTED)),
    ]
    return "\n".join(lines) + "\n", plots


def plots_dir_for(path: Path) -> Path:
    """Where the PNG plots of a leaderboard file go: ``LEADERBOARD.md`` -> ``leaderboard_plots/``."""
    return path.parent / f"{path.stem.lower()}_plots"


def linked_plots(path: Path) -> set[Path]:
    """The plots an existing leaderboard file embeds (its own, written when it was generated)."""
    if not path.is_file():
        return set()
    return {(path.parent / link).resolve() for link in _IMAGE_LINK.findall(path.read_text())}


def write_leaderboard(results_dir: Path, path: Path) -> int:
    """Regenerate ``path`` and its plots from ``results_dir``; returns the number of results used.

    Plots the previous version of ``path`` embedded and this one does not (their results are gone)
    are deleted; no other file is touched, whoever wrote it.
    """
    store = ResultStore(results_dir)
    records = list(store.records())
    plots = plots_dir_for(path)
    previous = linked_plots(path)
    text, written = render(records, store, str(results_dir), plots, path.parent)
    atomic_write(path, text)
    for stale in previous - {p.resolve() for p in written}:
        if stale.parent == plots.resolve():
            stale.unlink(missing_ok=True)
    return len(records)


def summary_table(records: list[dict], tablefmt: str = "simple") -> str:
    """The table ``run`` prints at the end: plain protocols, mean ± sd over seeds."""
    blocks = []
    for table in comparable_tables(records):
        if table.variant:
            continue
        rows = []
        for method in method_order(table):
            recs = table.by_method[method]
            pretrain = recs[0]["compute"].get("pretrain") or {}
            rows.append(
                {
                    "method": method,
                    "macro AUROC": mean_sd([r["metrics"]["macro_auroc"] for r in recs]),
                    "macro AUPRC": mean_sd([r["metrics"]["macro_auprc"] for r in recs]),
                    "seeds": len(recs),
                    "pretrain steps": pretrain.get("steps", "—"),
                    "pretrain FLOPs": si(pretrain.get("total_flops")),
                }
            )
        blocks.append(f"{title_of(table)}\n{tabulate(rows, headers='keys', tablefmt=tablefmt, disable_numparse=True)}")
    return "\n\n".join(blocks)
