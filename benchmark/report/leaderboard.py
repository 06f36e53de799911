"""LEADERBOARD.md, generated from the results store alone (never edited by hand).

* One table per group of comparable results (:func:`benchmark.report.comparison.comparable_tables`:
  same evaluation, same pretraining budget; mismatching configurations get separate tables,
  never averaged together): macro AUROC mean ± sd over seeds, its 95 % bootstrap CI, paired
  bootstrap tests against the best method and every reference baseline in the table (Holm over
  all tests of the table, a marker where a method is significantly below the best), macro
  AUPRC, the hyper-parameter each seed chose on validation, and the compute columns
  (parameters, FLOPs per step, steps, pretraining FLOPs, the protocol's own training FLOPs and
  the total where it trains, wall time, peak memory).
* Where labels are ICD-10 codes: macro AUROC per ICD level and a per-code table in the layout
  of the LAMAE paper's Tables 1/3/4.
* Ablation ladders (``--methods ladder:lamae``): the rungs present in a table, tested in pairs
  against the ladder's anchor (Holm over the ladder), with a verdict per rung.
* Label-efficiency and reduced-lead sweeps: tables and PNG curves (written beside the markdown).
* Training curves, one figure per table: pretraining loss against cumulative pretraining FLOPs
  for all its methods (matched compute shows as curves ending at the same FLOPs) and, where the
  protocol trains, the validation macro AUROC per fine-tuning epoch.
* A method with a diverged cell is shown as diverged, not ranked, tested or averaged.
* Published numbers (:mod:`benchmark.report.reported`) only in tables marked "reported".
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tabulate import tabulate

from benchmark.config import signature
from benchmark.data.icd import ICD_LEVELS, icd_hierarchy, icd_level, is_valid_code
from benchmark.ladder import LADDER_PREFIX, LADDERS, Rung
from benchmark.report import stats
from benchmark.report.comparison import (
    EVALUATION_KEYS,
    UNTRAINED_REFERENCES,
    Table,
    TableStats,
    comparable_tables,
)
from benchmark.report.plots import Run, curve_plot, training_curves_plot
from benchmark.report.reported import REPORTED, Reported, reported_for
from benchmark.report.results import ResultStore, is_diverged
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


def diverged_note(recs: list[dict]) -> str:
    """``diverged: seed 1 (pretraining, step 340, loss nan)``, for a method's records of one table."""
    failures = [
        f"seed {r['cell']['seed']} ({r['failure']['stage']}, step {r['failure']['step']}, loss {r['failure']['loss']})"
        for r in recs
        if is_diverged(r)
    ]
    return "diverged: " + "; ".join(failures)


def seeds_column(recs: list[dict]) -> str:
    failed = sum(map(is_diverged, recs))
    return f"{len(recs) - failed} + {failed} diverged" if failed else str(len(recs))


# -- tuning and compute columns ------------------------------------------------------------------
TUNED_NAMES = {"base_lr": "lr", "l2": "l2"}


def compact(value: float) -> str:
    """A grid value in few characters: 3e-4, 0.1, 100."""
    if value == 0 or 0.01 <= abs(value) < 1000:
        return f"{value:g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


#: marks of a choice at the edge of the values tried (benchmark/eval/tuning.py): the grid did not
#: bracket it, even after the extensions its protocol allows
EDGE_MARKS = {"low": "↓", "high": "↑", "only": "↕"}


def edge_of(tuning: dict) -> str | None:
    """Where a recorded choice sits among the values tried: "low", "high", "only" or None (interior).
    Derived from the values, so results written before grids were extended are marked too."""
    low, high = min(tuning["grid"]), max(tuning["grid"])
    if low == high:
        return "only"
    return "low" if tuning["chosen"] == low else "high" if tuning["chosen"] == high else None


def tuned_cell(recs: list[dict]) -> str:
    """The hyper-parameter each seed's protocol chose on validation, e.g. ``lr 3e-4 ×2, 1e-3↑``
    (↑/↓: the highest/lowest value tried)."""
    chosen = [r["details"]["tuning"] for r in recs if (r.get("details") or {}).get("tuning")]
    if not chosen:
        return "—"
    counts: dict[tuple[float, str], int] = defaultdict(int)
    for tuning in chosen:
        counts[(tuning["chosen"], EDGE_MARKS.get(edge_of(tuning) or "", ""))] += 1
    values = ", ".join(compact(v) + mark + (f" ×{n}" if n > 1 else "") for (v, mark), n in sorted(counts.items()))
    return f"{TUNED_NAMES.get(chosen[0]['param'], chosen[0]['param'])} {values}"


# -- fine-tuning beside the linear probe ---------------------------------------------------------
#: the protocol whose scores a fine-tuning table shows beside its own (Δ FT − LP)
PROBE_PROTOCOL = "linear"
FT_MINUS_LP = "linear probe (Δ FT − LP)"


def same_evaluation_but_protocol(record: dict, other: dict) -> bool:
    keys = [k for k in EVALUATION_KEYS if k not in ("protocol", "protocol_config")]
    return all(record["config"].get(k) == other["config"].get(k) for k in keys)


def linear_probe_scores(table: Table, tables: list[Table]) -> dict[str, dict[int, float]] | None:
    """For a fine-tuning table: each method's linear-probe macro AUROC per seed, from the linear
    tables of the same data, input, label set, preset, variant and pretraining budget (the same
    pretrained encoders); None for other tables. A method probed under several linear settings
    there is left out: which probe it would be compared with is ambiguous."""
    if table.protocol != "finetune" or not table.records:
        return None
    scores: dict[str, dict[int, set[float]]] = defaultdict(lambda: defaultdict(set))
    for other in tables:
        if (
            other.protocol == PROBE_PROTOCOL
            and other.variant == table.variant
            and other.budget == table.budget
            and other.records
            and same_evaluation_but_protocol(other.records[0], table.records[0])
        ):
            for method, recs in other.by_method.items():
                for record in recs:
                    scores[method][record["cell"]["seed"]].add(record["metrics"]["macro_auroc"])
    return {
        method: {seed: values.pop() for seed, values in by_seed.items()}
        for method, by_seed in scores.items()
        if all(len(values) == 1 for values in by_seed.values())
    }


def ft_minus_lp_cell(recs: list[dict], probe: dict[int, float] | None) -> str:
    """``0.7612 (+0.0123)``: the linear probe's seed-mean macro AUROC and the seed-mean of the
    paired difference fine-tuning − linear probe, over the seeds with both results."""
    fine_tuned = {r["cell"]["seed"]: r["metrics"]["macro_auroc"] for r in recs}
    seeds = sorted(seed for seed in fine_tuned if probe and seed in probe and fine_tuned[seed] is not None)
    if not probe or not seeds:
        return "—"
    delta = float(np.mean([fine_tuned[seed] - probe[seed] for seed in seeds]))
    lp = float(np.mean([probe[seed] for seed in seeds]))
    common = "" if len(seeds) == len(recs) else f", seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}"
    return f"{lp:.4f} ({delta:+.4f}{common})"


def downstream_flops(record: dict) -> float | None:
    return ((record["compute"].get("downstream") or {}).get("flops")) if record.get("compute") else None


def compute_columns(table: Table, recs: list[dict], method: str, lamae_encoder: int | None) -> dict[str, str]:
    compute = recs[0]["compute"]
    pretrain = [r["compute"]["pretrain"] for r in recs if r["compute"].get("pretrain")]
    encoder = compute["encoder_params"]
    delta = "" if lamae_encoder is None or method == "lamae" else f" ({signed_si(encoder - lamae_encoder)})"
    first = pretrain[0] if pretrain else {}
    peaks = [p["peak_memory_mb"] for p in pretrain if p.get("peak_memory_mb") is not None]
    columns = {
        "params": si(compute["total_params"]),
        "encoder params (Δ lamae)" if lamae_encoder is not None else "encoder params": si(encoder) + delta,
        "FLOPs/step": si(first.get("flops_per_step")),
        "steps": str(first["steps"]) if first else "—",
        "pretrain FLOPs": si(first.get("total_flops")),
    }
    if any(downstream_flops(r) is not None for r in table.records):
        # what the protocol's own training spent (all learning-rate candidates), beside pretraining
        spent = [f for f in map(downstream_flops, recs) if f is not None]
        columns["downstream FLOPs"] = si(float(np.mean(spent))) if spent else "—"
        columns["total FLOPs"] = si(first.get("total_flops", 0) + float(np.mean(spent))) if spent else "—"
    columns["pretrain time"] = f"{np.mean([p['wall_s'] for p in pretrain]):.0f} s" if pretrain else "—"
    columns["peak memory"] = f"{max(peaks):.0f} MiB" if peaks else ("n/a" if pretrain else "—")
    return columns


# -- statistics of one table ---------------------------------------------------------------------
@dataclass
class TableTests:
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    vs_best: dict[str, tuple[stats.Test, float]] = field(default_factory=dict)  # method -> (test, Holm p)
    #: reference baseline -> method -> (test, Holm p)
    vs_reference: dict[str, dict[str, tuple[stats.Test, float]]] = field(default_factory=dict)
    n_resamples: int = 0
    error: str | None = None


def table_stats(table: Table, store: ResultStore) -> TableStats | str:
    """The table's statistics, or why they cannot be computed."""
    try:
        return TableStats(table, store, N_RESAMPLES)
    except (ValueError, OSError) as exc:
        return str(exc)


def table_tests(table: Table, ts: TableStats | str, order: list[str]) -> TableTests:
    """CIs and paired bootstrap tests vs the best method and every reference baseline in the
    table; Holm over all tests of the table. A table whose statistics cannot be computed says why."""
    if isinstance(ts, str):
        return TableTests(error=ts)
    result = TableTests(ci={m: ts.ci(m) for m in order}, n_resamples=len(ts.indices))
    best = order[0]
    tests = [("best", m, ts.paired_bootstrap(m, best)) for m in order if m != best]
    for reference in (m for m in UNTRAINED_REFERENCES if m in table.by_method):
        result.vs_reference[reference] = {}
        tests += [(reference, m, ts.paired_bootstrap(m, reference)) for m in order if m != reference]
    for (kind, method, test), p_holm in zip(tests, stats.holm([t.p for *_, t in tests])):
        target = result.vs_best if kind == "best" else result.vs_reference[kind]
        target[method] = (test, float(p_holm))
    return result


def difference_cell(entry: tuple[stats.Test, float] | None, itself: str) -> str:
    if entry is None:
        return itself
    test, p_holm = entry
    return f"{test.estimate:+.4f} (p={stats.format_p(p_holm)})"


def main_table(table: Table, ts: TableStats | str, probes: dict[str, dict[int, float]] | None = None) -> list[str]:
    """The table's rows; ``probes`` (fine-tuning tables: :func:`linear_probe_scores`) adds each
    method's linear probe and Δ FT − LP."""
    order = method_order(table)
    tests = table_tests(table, ts, order) if order else TableTests()
    every = {**table.by_method, **table.diverged}
    lamae_encoder = every["lamae"][0]["compute"]["encoder_params"] if "lamae" in every else None
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
        for reference, vs in tests.vs_reference.items():
            row[f"Δ {reference} (p Holm)"] = difference_cell(vs.get(method), "reference")
        row["macro AUPRC"] = mean_sd([r["metrics"]["macro_auprc"] for r in recs])
        if probes is not None:
            row[FT_MINUS_LP] = ft_minus_lp_cell(recs, probes.get(method))
        row["seeds"] = seeds_column(recs)
        row["tuned on val"] = tuned_cell(recs)
        rows.append({**row, **compute_columns(table, recs, method, lamae_encoder)})
    for method, recs in sorted(table.diverged.items()):  # shown, never ranked or averaged
        row = {"method": method, "macro AUROC": diverged_note(recs), "95 % CI": "—", "Δ best (p Holm)": "not ranked"}
        for reference in tests.vs_reference:
            row[f"Δ {reference} (p Holm)"] = "—"
        row.update({"macro AUPRC": "—", **({FT_MINUS_LP: "—"} if probes is not None else {})})
        row.update({"seeds": seeds_column(recs), "tuned on val": "—"})
        rows.append({**row, **compute_columns(table, recs, method, lamae_encoder)})
    lines = [tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)]
    if table.diverged:
        lines += [
            "",
            f"{', '.join(sorted(table.diverged))}: a training loss became NaN or infinite in the seeds named; "
            "the method is left out of the ranking, the tests and the means (its finished seeds alone would "
            "flatter it).",
        ]
    if tests.error:
        lines += ["", f"No confidence intervals or tests: {tests.error}"]
    return lines


# -- ablation ladders ----------------------------------------------------------------------------
def ladder_table(table: Table, ts: TableStats | str) -> list[str]:
    """Each ablation ladder whose anchor and at least one rung are in the table: one row per rung
    present, its difference to the anchor (seed-mean macro AUROC) with the paired-bootstrap 95 %
    CI and p-value, Holm-adjusted over the ladder's rows, the across-seed paired t-test and a
    verdict, so "does the anchor's idea help?" has an answer with its uncertainty."""
    lines = []
    for anchor, rungs in LADDERS.items():
        members = [(rung, m) for rung in rungs[1:] for m in sorted(table.by_method) if rung.matches(m)]
        if anchor not in table.by_method or not members:
            continue
        lines += [
            "",
            f'Ablation ladder of `{anchor}` (`--methods {LADDER_PREFIX}{anchor}`; README, section "Method '
            'variants and the ablation ladder"): '
            f"each row changes one part of {anchor} at the same pretraining budget. Δ = row − {anchor}, "
            "seed-mean macro AUROC, with the paired-bootstrap 95 % CI; p Holm-adjusted over the ladder's rows; "
            "across seeds: paired t-test over the common seeds (unadjusted).",
            "",
        ]
        if isinstance(ts, str):
            lines.append(f"No tests: {ts}")
            continue
        rows = [ladder_row(table, rungs[0], anchor, anchor) | {"Δ (95 % CI)": "anchor"}]
        tests = [ts.paired_bootstrap(m, anchor) for _, m in members]
        for (rung, method), test, p_holm in zip(members, tests, stats.holm([t.p for t in tests])):
            seeds_test, _ = ts.across_seeds(method, anchor)
            if p_holm >= ALPHA:
                verdict = "no significant difference"
            else:
                verdict = f"{anchor} higher" if test.estimate < 0 else f"{method} higher"
            rows.append(
                ladder_row(table, rung, method, anchor)
                | {
                    "Δ (95 % CI)": f"{test.estimate:+.4f} [{test.ci[0]:+.4f}, {test.ci[1]:+.4f}]",
                    "p Holm": stats.format_p(p_holm),
                    "across seeds": "—"
                    if seeds_test is None
                    else f"{seeds_test.estimate:+.4f} (p={stats.format_p(seeds_test.p)})",
                    "verdict": verdict,
                }
            )
        columns = ["rung", "method", "macro AUROC", "Δ (95 % CI)", "p Holm", "across seeds", "verdict"]
        columns += ["encoder params", "what the difference measures"]
        table_rows = [{c: row.get(c, "—") for c in columns} for row in rows]
        lines.append(tabulate(table_rows, headers="keys", tablefmt="github", disable_numparse=True))
    return lines


def ladder_row(table: Table, rung: Rung, method: str, anchor: str) -> dict[str, str]:
    params = table.by_method[method][0]["compute"]["encoder_params"]
    anchor_params = table.by_method[anchor][0]["compute"]["encoder_params"]
    return {
        "rung": rung.label,
        "method": method,
        "macro AUROC": mean_sd([r["metrics"]["macro_auroc"] for r in table.by_method[method]]),
        "encoder params": si(params) + ("" if method == anchor else f" ({100 * (params / anchor_params - 1):+.0f} %)"),
        "what the difference measures": rung.question,
    }


def table_meta(table: Table) -> list[str]:
    recs = table.records or [r for rs in table.diverged.values() for r in rs]
    devices = sorted({r["provenance"]["device"] for r in recs})
    dates = sorted(r["provenance"]["finished_at"][:10] for r in recs)
    commits = sorted(
        {
            (r["provenance"]["git"]["commit"] or "unknown")[:10] + ("+dirty" if r["provenance"]["git"]["dirty"] else "")
            for r in recs
        }
    )
    scored = [r for r in recs if not is_diverged(r)]
    n_test = sorted({r["metrics"]["n_test"] for r in scored})
    seeds = sorted({r["cell"]["seed"] for r in recs})
    return [
        f"- test records: {', '.join(map(str, n_test)) or 'none scored'}; labels scored: "
        f"{scored[0]['metrics']['n_labels_scored'] if scored else 0}; seeds: {', '.join(map(str, seeds))}",
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
        *reported_labels(table, per_label),
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


def reported_labels(table: Table, per_label: dict[str, dict[str, float]]) -> list[str]:
    """Single labels a source reports for this dataset and protocol (the LAMAE paper's IX, I48, ...)
    beside the same labels measured here by the methods that measure the source's columns."""
    rows = []
    measured_labels = {label for values in per_label.values() for label in values}
    single = [r for r in reported_for(table.dataset, table.protocol) if r.label in measured_labels]
    for r in single:
        measured = [f"`{m}` {per_label[m][r.label]:.4f}" for m in r.ours if r.label in per_label.get(m, {})]
        rows.append(
            {
                "label": r.label,
                "reported": f"{r.method} {r.auroc:.4f}",
                "measured here (seed mean)": "; ".join(measured) or "not run: " + measured_as({"": r.ours}),
            }
        )
    if not rows:
        return []
    return [
        "",
        f"Single labels reported by {', '.join(dict.fromkeys(r.source for r in single))} (not measured here; other "
        "data version and model scale), beside "
        "the AUROC of the same label measured here — each a single label, not a macro average:",
        "",
        tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True),
    ]


# -- reported numbers ----------------------------------------------------------------------------
def measured_as(per_protocol: dict[str, tuple[str, ...]]) -> str:
    """The methods of this suite that measure a reported method, per protocol where they differ."""

    def names(methods: tuple[str, ...]) -> str:
        return " or ".join(f"`{m}`" for m in methods) or "—"

    if len(set(per_protocol.values())) == 1:
        return names(next(iter(per_protocol.values())))
    return "; ".join(f"{protocol}: {names(methods)}" for protocol, methods in per_protocol.items())


def reported_table(entries: list[Reported]) -> str:
    """One table per source and data: methods (and single labels) x protocols, with the methods
    of this suite that measure the same thing."""
    blocks = []
    for source, data in dict.fromkeys((r.source, r.data) for r in entries):
        chosen = [r for r in entries if (r.source, r.data) == (source, data)]
        protocols = list(dict.fromkeys(r.protocol for r in chosen))
        rows: dict[str, dict[str, str]] = {}
        ours: dict[str, dict[str, tuple[str, ...]]] = {}
        for r in chosen:
            name = r.method if r.label == "macro" else f"{r.method}, label {r.label}"
            rows.setdefault(name, {"method (reported)": name})[r.protocol] = f"{r.auroc:.4f}"
            ours.setdefault(name, {})[r.protocol] = r.ours
        columns = ["method (reported)", *protocols, "measured here as"]
        table = [
            {c: row.get(c, "—") for c in columns[:-1]} | {columns[-1]: measured_as(ours[n])} for n, row in rows.items()
        ]
        what = "macro AUROC"
        if any(r.label != "macro" for r in chosen):
            what += ", or the AUROC of the one label named (a single label, never a macro average: IX is the chapter-level label)"
        blocks.append(
            f"*{source}* — {data}; {what}:\n\n"
            + tabulate(table, headers="keys", tablefmt="github", disable_numparse=True)
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
    diverged: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))  # method -> its records here


def sweep_point(record: dict, sweep: str) -> tuple[str, float]:
    variant = record["config"].get("variant") or {}
    params = variant.get("params", {})
    if sweep == "label_efficiency":  # a diverged cell has no details: its variant knows the size
        n = (record.get("details") or {}).get("n_train") or variant.get("n_train", 0)
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
        every = [(t, r, False) for t in group for r in t.records]
        every += [(t, r, True) for t in group for recs in t.diverged.values() for r in recs]
        if not any(sweep_of(r) == sweep for _, r, _ in every):
            continue
        points: dict[str, Point] = {}
        for table, record, set_apart in every:
            if table.variant and sweep_of(record) != sweep:
                continue
            label, x = sweep_point(record, sweep)
            point = points.setdefault(label, Point(label, 0.0))
            if set_apart:
                point.diverged[record["cell"]["method"]].append(record)
            else:
                point.values[record["cell"]["method"]].append(record["metrics"]["macro_auroc"])
            point.x = max(point.x, x) if sweep == "label_efficiency" else x
        ordered = sorted(points.values(), key=lambda p: p.x)
        methods = sorted({m for p in ordered for m in [*p.values, *p.diverged]})
        heading = title_of(group[0], variant=False)
        plot_title = heading.replace("`", "")
        columns = [f"{p.label} (n={p.x:.0f})" if sweep == "label_efficiency" else p.label for p in ordered]
        rows = [
            {
                "method": m,
                **{
                    c: f"diverged ({seeds_column(p.diverged[m])})"
                    if p.diverged.get(m)
                    else mean_sd(p.values.get(m, [])) + (f" ({len(p.values[m])})" if p.values.get(m) else "")
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
            if any(p.values.get(m) for p in ordered)
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


# -- training curves -----------------------------------------------------------------------------
CURVES_NOTE = (
    "Training curves: pretraining loss (log scale) against cumulative pretraining FLOPs, one line per "
    "seed; each method's loss is its own objective, so compare shapes and where they end (matched compute "
    "ends every method at the same FLOPs), not levels. Where the protocol fine-tunes: validation macro "
    "AUROC per epoch. × marks a run whose loss became NaN or infinite."
)


def training_runs(table: Table) -> tuple[dict[str, list[Run]], dict[str, list[Run]]]:
    """Per method, the pretraining loss curves (x = cumulative FLOPs) and the fine-tuning
    validation curves (x = epoch) of the table's records."""
    pretraining: dict[str, list[Run]] = defaultdict(list)
    finetuning: dict[str, list[Run]] = defaultdict(list)
    for method, recs in sorted({**table.by_method, **table.diverged}.items()):
        for record in recs:
            failed = record["failure"]["stage"] if is_diverged(record) else None
            pretrain = record["compute"].get("pretrain") or {}
            if pretrain.get("loss_curve") and pretrain.get("flops_per_step"):
                steps, losses = zip(*pretrain["loss_curve"])
                flops = [step * pretrain["flops_per_step"] for step in steps]
                pretraining[method].append(Run(flops, list(losses), failed == "pretraining"))
            history = (record.get("details") or {}).get("val_history")
            if history or failed == "fine-tuning":
                finetuning[method].append(
                    Run(list(range(1, len(history or []) + 1)), list(history or []), failed == "fine-tuning")
                )
    return pretraining, finetuning


def curves_section(table: Table, plots_dir: Path, link_base: Path) -> tuple[list[str], Path | None]:
    pretraining, finetuning = training_runs(table)
    if not pretraining and not finetuning:
        return [], None
    slug = "_".join(
        [
            "curves",
            table.dataset,
            table.label_set,
            table.preset,
            table.protocol,
            signature([table.evaluation, table.budget])[:8],
        ]
    ).replace("/", "-")
    path = training_curves_plot(plots_dir / f"{slug}.png", title_of(table).replace("`", ""), pretraining, finetuning)
    return [
        "",
        CURVES_NOTE,
        "",
        f"![Training curves: {title_of(table)}]({path.relative_to(link_base).as_posix()})",
    ], path


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
        "macro AUROC to the best method and to each reference baseline, p of pROC's paired bootstrap test (the "
        "difference over the standard deviation of its resampled values, against the normal), Holm-adjusted over "
        f"all tests of the table; {BELOW_BEST} = significantly below the best (p < {ALPHA}). The references are "
        "not pretrained: `random_init` is a frozen randomly initialised encoder and `ecg_features` classical ECG "
        "measurements (rhythm, intervals, per-lead amplitudes and ST levels), both read by the same probes; "
        "`scratch` (LAMAE's architecture) and `xresnet1d` (the PTB-XL benchmark's CNN) are trained on the labels "
        "alone by the fine-tuning recipe of every method (the same epochs, patience, warmup and learning-rate "
        "grid; compute rule: equal epochs, no FLOP cap) — a pretraining method is only useful where it beats "
        f"them. **{FT_MINUS_LP}**, in fine-tuning tables: the method's own linear probe (seed mean) and the "
        "seed mean of fine-tuning − linear probe, over the seeds with both results. **tuned on val**: the "
        "probe's L2 strength or the fine-tuning learning rate each seed chose on validation from the grid every "
        "method gets (×n: chosen by n seeds); a choice at the grid's edge extends the grid one step that way until "
        "it is interior or the protocol's limit is hit, and ↑/↓ mark a choice still at the highest/lowest value "
        "tried (↕: the only one), whose optimum may lie beyond. Compute: parameters (with the decoder), encoder "
        "parameters used "
        "downstream, counted FLOPs of one pretraining step (forward + backward), steps, total pretraining FLOPs, "
        "the FLOPs of the protocol's own training (all learning-rate candidates) and the total, wall time and peak "
        "CUDA memory (n/a on CPU). Only results with the same evaluation settings and pretraining budget share a "
        "table.",
    ]
    main = [t for t in tables if not t.variant]
    for table in main:
        order = method_order(table)
        ts = table_stats(table, store) if order else "no finished results"
        probes = linear_probe_scores(table, tables)
        lines += ["", f"## {title_of(table)}", "", *table_meta(table), "", *main_table(table, ts, probes)]
        lines += ladder_table(table, ts)
        if order and is_icd_label_set(
            table.records[0].get("label_names") or list(table.records[0]["metrics"]["per_label_auroc"])
        ):
            lines += icd_reports(table, order)
        curves, curves_plot = curves_section(table, plots_dir, link_base)
        lines += curves
        plots += [curves_plot] if curves_plot else []
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
        for method in [*method_order(table), *sorted(table.diverged)]:
            recs = table.by_method.get(method) or table.diverged[method]
            pretrain = recs[0]["compute"].get("pretrain") or {}
            diverged = method in table.diverged
            rows.append(
                {
                    "method": method,
                    "macro AUROC": diverged_note(recs)
                    if diverged
                    else mean_sd([r["metrics"]["macro_auroc"] for r in recs]),
                    "macro AUPRC": "—" if diverged else mean_sd([r["metrics"]["macro_auprc"] for r in recs]),
                    "seeds": seeds_column(recs),
                    "pretrain steps": pretrain.get("steps", "—"),
                    "pretrain FLOPs": si(pretrain.get("total_flops")),
                }
            )
        blocks.append(f"{title_of(table)}\n{tabulate(rows, headers='keys', tablefmt=tablefmt, disable_numparse=True)}")
    return "\n\n".join(blocks)
