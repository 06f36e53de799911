"""Comparing methods from stored results: :mod:`benchmark.report.stats` applied to saved predictions.

Shared by LEADERBOARD.md and ``python -m benchmark compare``. Two results are compared only
when the evaluation was the same — dataset and its configuration, input, label set, preset,
protocol and its configuration, variant — and, for pretrained methods, the same compute
budget; untrained baselines and external encoders (pretrained elsewhere, compute unknown) join
every budget. Everything else (a method's own settings) is
what is being compared.

Across seeds a method's score is the mean over its seeds: the bootstrap statistic is the
seed-mean macro AUROC on each shared resample of the test set, and DeLong tests the
seed-mean AUROC of a label (a linear contrast of correlated AUCs).

A method with a diverged cell in a table (benchmark/report/results.py) is set apart in
``Table.diverged`` with all its records of that table: it is shown as diverged and neither
ranked, tested nor averaged — the mean of its surviving seeds would flatter it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from tabulate import tabulate

from benchmark.config import signature
from benchmark.data.contract import DataError
from benchmark.presets import REFERENCES
from benchmark.report import stats
from benchmark.report.results import ResultStore, is_diverged

#: the parts of a record's config that define the evaluation (a table holds one value of each); "data" is
#: the content fingerprint of the evaluated data, so the folder it was read from never splits a table
EVALUATION_KEYS = ("dataset", "dataset_config", "data", "input", "label_set", "preset", "protocol", "protocol_config")
#: the reference baselines (not pretrained), compared with every budget
UNTRAINED_REFERENCES = tuple(name for names in REFERENCES.values() for name in names)


def variant_name(record: dict) -> str:
    return record["cell"].get("variant", "")


def evaluation_signature(record: dict) -> str:
    return signature({k: record["config"].get(k) for k in EVALUATION_KEYS})


def is_external(record: dict) -> bool:
    """A result of an encoder pretrained elsewhere (benchmark/method/external.py): its pretraining
    compute is unknown, so it joins every budget's table but is never ranked as if matched."""
    return bool((record["compute"].get("pretrain") or {}).get("external"))


def budget_label(record: dict) -> str | None:
    """The pretraining budget a result was produced under (None: not pretrained here)."""
    pretrain = record["compute"].get("pretrain")
    if not pretrain or is_external(record):
        return None
    if pretrain.get("budget_flops") is not None:
        return f"{pretrain['budget_flops']:.3g} FLOPs ({pretrain['budget']})"
    return f"{pretrain['steps']} steps per method"


@dataclass
class Table:
    """Results that may be compared with each other: one evaluation, one budget."""

    dataset: str
    label_set: str
    preset: str
    protocol: str
    variant: str
    evaluation: str  # evaluation_signature
    budget: str | None
    by_method: dict[str, list[dict]] = field(default_factory=dict)  # records sorted by seed
    diverged: dict[str, list[dict]] = field(default_factory=dict)  # methods with a diverged cell: all their records

    @property
    def records(self) -> list[dict]:
        """The records that are compared (diverged methods left out)."""
        return [r for recs in self.by_method.values() for r in recs]


def comparable_tables(records: list[dict]) -> list[Table]:
    """Split records into tables of comparable results (see the module docstring)."""
    #: (dataset, label set, preset, protocol, variant, evaluation signature) -> records
    groups: dict[tuple[str, str, str, str, str, str], list[dict]] = defaultdict(list)
    for record in records:
        cell = record["cell"]
        groups[
            (
                cell["dataset"],
                cell["label_set"],
                cell["preset"],
                cell["protocol"],
                variant_name(record),
                evaluation_signature(record),
            )
        ].append(record)
    tables = []
    for key, group in sorted(groups.items()):
        given = sorted({label for r in group if (label := budget_label(r)) is not None})
        budgets: list[str | None] = [*given] if given else [None]
        for budget in budgets:
            table = Table(*key, budget)
            for record in sorted(group, key=lambda r: (r["cell"]["method"], r["cell"]["seed"])):
                if budget_label(record) in (budget, None):
                    table.by_method.setdefault(record["cell"]["method"], []).append(record)
            for method in [m for m, recs in table.by_method.items() if any(map(is_diverged, recs))]:
                table.diverged[method] = table.by_method.pop(method)
            tables.append(table)
    return tables


def label_descriptions(records: list[dict]) -> dict[str, str]:
    """What each label of these results means (recorded with every result; for results written
    before that, the ICD-10-CM description of a label that is an ICD code), shown beside its code."""
    from benchmark.data.icd import icd_description

    described: dict[str, str] = {}
    for record in records:
        for label in record.get("label_names") or list((record.get("metrics") or {}).get("per_label_auroc", {})):
            if label in described:
                continue
            text = (record.get("label_descriptions") or {}).get(label)
            if text is None:
                try:
                    text = icd_description(label)
                except ValueError:  # not an ICD-10 label: no name known
                    text = ""
            described[label] = text
    return described


def label_names_of(record: dict) -> list[str]:
    if "label_names" in record:
        return record["label_names"]
    if record["metrics"]["labels_not_scored"]:
        raise DataError(
            f"{record['_path']}: written before label names were stored and has unscored labels; "
            f"re-run its cell with --rerun"
        )
    return list(record["metrics"]["per_label_auroc"])


class TableStats:
    """Seed-mean scores, bootstrap CIs and paired tests for the methods of one table.

    The bootstrap indices come from :meth:`ResultStore.bootstrap` (persisted and shared); all
    records of the table must have scored the same test records with the same labels.
    """

    def __init__(self, table: Table, store: ResultStore, n_resamples: int = 1000, seed: int = 0):
        self.table = table
        first = table.records[0]
        reference = store.predictions(first)
        self.y_true, self.record_ids = reference["y_true"], reference["record_ids"]
        self.label_names = label_names_of(first)
        self.scored = stats.scored_labels(self.y_true)
        self.scores: dict[str, np.ndarray] = {}  # method -> (seeds, N, K)
        for method, recs in table.by_method.items():
            per_seed = []
            for record in recs:
                preds = store.predictions(record)
                if not (
                    np.array_equal(preds["record_ids"], self.record_ids)
                    and np.array_equal(preds["y_true"], self.y_true)
                ):
                    raise DataError(
                        f"{record['_path']} and {first['_path']} scored different test records or labels; "
                        f"they cannot be compared"
                    )
                per_seed.append(preds["y_score"].astype(np.float64))
            self.scores[method] = np.stack(per_seed)
        self.indices = store.bootstrap(table.dataset, table.label_set, self.y_true, self.record_ids, n_resamples, seed)
        self._resampled: dict[str, np.ndarray] = {}

    def seeds(self, method: str) -> list[int]:
        return [r["cell"]["seed"] for r in self.table.by_method[method]]

    def macro(self, method: str) -> np.ndarray:
        """(seeds,) macro AUROC of each seed (as recorded)."""
        return np.array([r["metrics"]["macro_auroc"] for r in self.table.by_method[method]], dtype=np.float64)

    def resampled(self, method: str) -> np.ndarray:
        """(B,) seed-mean macro AUROC on each bootstrap resample."""
        if method not in self._resampled:
            per_seed = [
                np.nanmean(stats.bootstrap_auroc(self.y_true, s, self.indices), axis=1) for s in self.scores[method]
            ]
            self._resampled[method] = np.mean(per_seed, axis=0)
        return self._resampled[method]

    def ci(self, method: str, level: float = 0.95) -> tuple[float, float]:
        return stats.percentile_ci(self.resampled(method), level)

    def paired_bootstrap(self, a: str, b: str) -> stats.Test:
        return stats.paired_bootstrap(self.macro(a).mean(), self.macro(b).mean(), self.resampled(a), self.resampled(b))

    def across_seeds(self, a: str, b: str) -> tuple[stats.Test | None, list[int]]:
        """Paired t-test over the seeds both methods have (None if fewer than 2)."""
        common = sorted(set(self.seeds(a)) & set(self.seeds(b)))
        if len(common) < 2:
            return None, common

        def at_common_seeds(method: str) -> np.ndarray:
            return self.macro(method)[[self.seeds(method).index(s) for s in common]]

        return stats.paired_t_test(at_common_seeds(a), at_common_seeds(b)), common

    def delong_per_label(self, a: str, b: str) -> list[tuple[str, float, float, stats.Test]]:
        """(label, seed-mean AUROC of a, of b, DeLong test of the difference) per scored label."""
        sa, sb = self.scores[a], self.scores[b]
        weights = np.r_[np.full(len(sa), 1 / len(sa)), np.full(len(sb), -1 / len(sb))]
        rows = []
        for k in np.flatnonzero(self.scored):
            columns = np.concatenate([sa[:, :, k], sb[:, :, k]])
            auc, _ = stats.delong(self.y_true[:, k], columns)
            test = stats.delong_contrast(self.y_true[:, k], columns, weights)
            rows.append((self.label_names[k], float(auc[: len(sa)].mean()), float(auc[len(sa) :].mean()), test))
        return rows


def format_comparison(table_stats: TableStats, a: str, b: str) -> str:
    """The report of ``python -m benchmark compare A B`` for one table."""
    t = table_stats.table
    n_resamples = len(table_stats.indices)
    title = " · ".join(x for x in (t.dataset, t.label_set, f"preset {t.preset}", t.protocol, t.variant) if x)
    lines = [
        title,
        "=" * len(title),
        f"test records {len(table_stats.y_true)}, labels scored {int(table_stats.scored.sum())}"
        + (f", budget {t.budget}" if t.budget else ""),
        "",
    ]
    summary = [
        [
            m,
            len(table_stats.seeds(m)),
            f"{table_stats.macro(m).mean():.4f}",
            f"{table_stats.macro(m).std(ddof=1):.4f}" if len(table_stats.seeds(m)) > 1 else "—",
            "[{:.4f}, {:.4f}]".format(*table_stats.ci(m)),
        ]
        for m in (a, b)
    ]
    lines += [tabulate(summary, headers=["method", "seeds", "macro AUROC", "sd", "95 % CI"]), ""]

    boot = table_stats.paired_bootstrap(a, b)
    lines.append(
        f"paired bootstrap ({n_resamples} resamples, seed-mean macro AUROC): {a} - {b} = "
        f"{boot.estimate:+.4f}, 95 % CI [{boot.ci[0]:+.4f}, {boot.ci[1]:+.4f}], p = {stats.format_p(boot.p, 4)}"
    )
    seeds_test, common = table_stats.across_seeds(a, b)
    if seeds_test is None:
        lines.append(f"across seeds: needs at least 2 seeds run by both methods (common: {common or 'none'})")
    else:
        lines.append(
            f"across seeds (paired t-test over seeds {','.join(map(str, common))}): mean difference "
            f"{seeds_test.estimate:+.4f}, 95 % CI [{seeds_test.ci[0]:+.4f}, {seeds_test.ci[1]:+.4f}], "
            f"t = {seeds_test.statistic:.3f}, p = {stats.format_p(seeds_test.p, 4)}"
        )

    per_label = table_stats.delong_per_label(a, b)
    adjusted = stats.holm([test.p for *_, test in per_label])
    names = label_descriptions(t.records)
    rows = [
        [
            label,
            names.get(label, "")[:40],
            f"{auc_a:.4f}",
            f"{auc_b:.4f}",
            f"{test.estimate:+.4f}",
            f"{test.statistic:.2f}",
            stats.format_p(test.p, 4),
            stats.format_p(p_holm, 4) + (" *" if p_holm < 0.05 else ""),
        ]
        for (label, auc_a, auc_b, test), p_holm in zip(per_label, adjusted)
    ]
    lines += [
        "",
        f"DeLong per label (seed-mean AUROC; Holm over {len(rows)} labels; * p_Holm < 0.05):",
        tabulate(rows, headers=["label", "name", a, b, "difference", "z", "p", "p (Holm)"]),
    ]
    return "\n".join(lines)
