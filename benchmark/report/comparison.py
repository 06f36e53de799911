"""Comparing methods from stored results: :mod:`benchmark.report.stats` applied to saved predictions.

Shared by LEADERBOARD.md and ``python -m benchmark compare``. Two results are compared only
when the evaluation was the same — dataset and its configuration, input, label set, preset,
protocol and its configuration, variant — and, for pretrained methods, the same compute
budget; untrained baselines and external encoders (pretrained elsewhere, compute unknown) join
every budget. Everything else (a method's own settings) is
what is being compared.

Across seeds a method's score is the mean over its seeds. Every CI and p-value comes from one
hierarchical bootstrap that resamples seeds and test records (patients, stratified by label):
:func:`benchmark.report.stats.hierarchical_test`, for the macro AUROC and for each label.

A method with a diverged cell in a table (benchmark/run/results.py) is set apart in
``Table.diverged`` with all its records of that table: it is shown as diverged and neither
ranked, tested nor averaged — the mean of its surviving seeds would flatter it. So is a method
whose pretraining did not learn in some seed (``Table.not_learned``): its final loss stayed above
the preset's ``learned_ratio`` of the best trivial predictor's loss on the same targets
(``PretrainReport.loss_ratio``), so its numbers describe an encoder that learned nothing a
constant does not know, not the method.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from tabulate import tabulate

from benchmark.config import signature
from benchmark.data.contract import DataError
from benchmark.nn import metrics
from benchmark.report import stats
from benchmark.run.presets import PRESETS, REFERENCES
from benchmark.run.results import BOOTSTRAP, ResultStore, is_diverged
from benchmark.storage import atomic_write

#: names the test-set resampling in the key of persisted resamples: a new scheme never reads old ones
RESAMPLING_SCHEME = "stratified-units-v2"
#: the parts of a record's config that define the evaluation (a table holds one value of each); "data" is
#: the content fingerprint of the evaluated data, so the folder it was read from never splits a table
EVALUATION_KEYS = ("dataset", "dataset_config", "data", "input", "label_set", "preset", "protocol", "protocol_config")
#: the reference baselines (not pretrained), compared with every budget
UNTRAINED_REFERENCES = tuple(name for names in REFERENCES.values() for name in names)

log = logging.getLogger("benchmark")


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


def budget_flops_of(record: dict) -> float:
    """The FLOPs of a pretrained result's budget; 0 where it was given in steps."""
    return float(((record.get("compute") or {}).get("pretrain") or {}).get("budget_flops") or 0.0)


def loss_ratio(record: dict) -> float | None:
    """A pretrained result's final pretraining loss over the best trivial predictor's (None: not
    pretrained, or pretrained before the suite measured it)."""
    return ((record.get("compute") or {}).get("pretrain") or {}).get("loss_ratio")


def learned_ratio(preset: str, override: float | None = None) -> float | None:
    """The loss ratio above which a pretraining run did not learn: ``override`` (``--learned-ratio``)
    or the preset's setting (None: not checked)."""
    if override is not None:
        return override
    return PRESETS[preset].learned_ratio if preset in PRESETS else PRESETS["cpu"].learned_ratio


def did_not_learn(record: dict, threshold: float | None) -> bool:
    ratio = loss_ratio(record)
    return threshold is not None and ratio is not None and ratio > threshold


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
    #: methods with a pretraining that did not learn (loss ratio above ``learned_ratio``): all their records
    not_learned: dict[str, list[dict]] = field(default_factory=dict)
    learned_ratio: float | None = None  # the threshold applied

    @property
    def set_apart(self) -> dict[str, list[dict]]:
        """Every method shown but never ranked, tested or averaged (diverged or did not learn)."""
        return {**self.not_learned, **self.diverged}

    @property
    def records(self) -> list[dict]:
        """The records that are compared (methods set apart left out)."""
        return [r for recs in self.by_method.values() for r in recs]


def distinct_results(records: list[dict]) -> list[dict]:
    """Each cell's computation once: a result found in several folders under one signature and
    one cell (a reference evaluated into every point of a budget sweep, whose cell does not depend
    on the budget) is one seed, not one per folder — counted per folder, one seed would look like
    several with no variance between them. The first found is kept. The same computation under
    another cell (a reference at two presets that differ only in pretraining) belongs to each
    preset's tables and is kept in both."""
    distinct: dict[object, dict] = {}
    for record in records:
        key = (record["signature"], tuple(sorted(record["cell"].items()))) if record.get("signature") else id(record)
        distinct.setdefault(key, record)
    return list(distinct.values())


def comparable_tables(records: list[dict], learned: float | None = None) -> list[Table]:
    """Split records into tables of comparable results (see the module docstring); ``learned``
    overrides every preset's ``learned_ratio``."""
    #: (dataset, label set, preset, protocol, variant, evaluation signature) -> records
    groups: dict[tuple[str, str, str, str, str, str], list[dict]] = defaultdict(list)
    for record in distinct_results(records):
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
        # the budgets in increasing FLOPs (as strings, 5.46e+13 would sort after 2.18e+14)
        flops = {label: budget_flops_of(r) for r in group if (label := budget_label(r)) is not None}
        given = sorted(flops, key=lambda label: (flops[label], label))
        budgets: list[str | None] = [*given] if given else [None]
        for budget in budgets:
            table = Table(*key, budget, learned_ratio=learned_ratio(key[2], learned))
            for record in sorted(group, key=lambda r: (r["cell"]["method"], r["cell"]["seed"])):
                if budget_label(record) in (budget, None):
                    table.by_method.setdefault(record["cell"]["method"], []).append(record)
            for method in [m for m, recs in table.by_method.items() if any(map(is_diverged, recs))]:
                table.diverged[method] = table.by_method.pop(method)
            for method, recs in list(table.by_method.items()):
                if any(did_not_learn(r, table.learned_ratio) for r in recs):
                    table.not_learned[method] = table.by_method.pop(method)
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


def persisted_resamples(
    store: ResultStore,
    dataset: str,
    label_set: str,
    y_true: np.ndarray,
    record_ids: np.ndarray,
    patient_ids: np.ndarray | None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Test-set resamples (counts per record, :func:`benchmark.report.stats.bootstrap_counts`),
    generated once and persisted, so that every method (and every later leaderboard) is scored
    on the same resamples. Keyed by the test records, their labels (unknowns included), their
    patients, the number of resamples, the seed and the resampling scheme."""
    digest = hashlib.sha256(RESAMPLING_SCHEME.encode())
    parts = [np.asarray(record_ids).astype(str), np.asarray(y_true, dtype=np.float64)]
    parts += [] if patient_ids is None else [np.asarray(patient_ids).astype(str)]
    for part in parts:
        digest.update(repr(part.shape).encode() + part.tobytes())
    digest.update(f"{n_resamples}:{seed}:{patient_ids is not None}".encode())
    path = store.root / BOOTSTRAP / dataset / label_set / f"{digest.hexdigest()[:16]}.npz"
    try:
        with np.load(path) as saved:
            return saved["counts"]
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        log.warning("%s is damaged; drawing the resamples again (they are a pure function of the key)", path)
    counts = stats.bootstrap_counts(y_true, n_resamples, seed, patient_ids)
    atomic_write(path, lambda h: np.savez_compressed(h, counts=counts, n_resamples=n_resamples, seed=seed))
    return counts


class TableStats:
    """Seed-mean scores, CIs and tests of the methods of one table, all from one hierarchical
    bootstrap (:func:`benchmark.report.stats.hierarchical_test`).

    The test-set resamples come from :meth:`ResultStore.bootstrap` (persisted and shared); all
    records of the table must have scored the same test records with the same labels. Records are
    resampled by patient when every result stored its test records' patient ids (``units`` says
    which: "patients" or "records"; results written before patient ids were stored fall back to
    records).
    """

    def __init__(self, table: Table, store: ResultStore, n_resamples: int = 1000, seed: int = 0):
        self.table, self.seed = table, seed
        first = table.records[0]
        reference = store.predictions(first)
        self.y_true, self.record_ids = reference["y_true"], reference["record_ids"]
        self.label_names = label_names_of(first)
        self.scored = metrics.scorable_labels(self.y_true)
        self.scores: dict[str, np.ndarray] = {}  # method -> (seeds, N, K)
        patients = []
        for method, recs in table.by_method.items():
            per_seed = []
            for record in recs:
                preds = store.predictions(record)
                if not (
                    np.array_equal(preds["record_ids"], self.record_ids)
                    and np.array_equal(preds["y_true"], self.y_true, equal_nan=True)
                ):
                    raise DataError(
                        f"{record['_path']} and {first['_path']} scored different test records or labels; "
                        f"they cannot be compared"
                    )
                per_seed.append(preds["y_score"].astype(np.float64))
                patients.append(preds.get("patient_ids"))
            self.scores[method] = np.stack(per_seed)
        known = [p for p in patients if p is not None]
        if known and any(not np.array_equal(p, known[0]) for p in known):
            raise DataError(f"the results of table {table.dataset} · {table.protocol} name different patients")
        self.patient_ids = known[0] if len(known) == len(patients) else None
        self.units = "records" if self.patient_ids is None else "patients"
        self.n_units = len(np.unique(self.patient_ids)) if self.patient_ids is not None else len(self.record_ids)
        self.counts = persisted_resamples(
            store, table.dataset, table.label_set, self.y_true, self.record_ids, self.patient_ids, n_resamples, seed
        )
        self._per_label: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def n_resamples(self) -> int:
        return len(self.counts)

    def seeds(self, method: str) -> tuple[int, ...]:
        return tuple(r["cell"]["seed"] for r in self.table.by_method[method])

    def per_label(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-label AUROC of each seed: on the whole test set (S, K) and per resample (S, B, K)."""
        if method not in self._per_label:
            point = np.stack([metrics.per_label_auroc(self.y_true, s) for s in self.scores[method]])
            resampled = np.stack([stats.bootstrap_auroc(self.y_true, s, self.counts) for s in self.scores[method]])
            self._per_label[method] = point, resampled
        return self._per_label[method]

    def macro(self, method: str) -> stats.SeedScores:
        """Macro AUROC (mean over the scored labels) per seed and per resample."""
        point, resampled = self.per_label(method)
        labels = np.flatnonzero(self.scored)
        return stats.SeedScores(
            self.seeds(method), point[:, labels].mean(axis=1), np.nanmean(resampled[:, :, labels], axis=2)
        )

    def label(self, method: str, k: int) -> stats.SeedScores:
        point, resampled = self.per_label(method)
        return stats.SeedScores(self.seeds(method), point[:, k], resampled[:, :, k])

    def ci(self, method: str, level: float = 0.95) -> tuple[float, float]:
        """CI of the seed-mean macro AUROC (clipped to [0, 1], as pROC clips an AUC's CI)."""
        low, high = stats.hierarchical_test(self.macro(method), level=level, seed=self.seed).ci
        return max(0.0, low), min(1.0, high)

    def difference(self, a: str, b: str) -> stats.Test:
        """Seed-mean macro AUROC of a minus b, with its hierarchical-bootstrap CI and p."""
        return stats.hierarchical_test(self.macro(a), self.macro(b), seed=self.seed)

    def per_label_differences(self, a: str, b: str) -> list[tuple[str, float, float, stats.Test]]:
        """(label, seed-mean AUROC of a, of b, test of the difference) per scored label."""
        rows = []
        for k in np.flatnonzero(self.scored):
            sa, sb = self.label(a, int(k)), self.label(b, int(k))
            rows.append(
                (self.label_names[k], sa.estimate, sb.estimate, stats.hierarchical_test(sa, sb, seed=self.seed))
            )
        return rows

    def resampling_note(self) -> str:
        """What was resampled, for footnotes."""
        if self.units == "patients":
            unit = f"{self.n_units} patients ({len(self.record_ids)} records)"
        else:
            unit = (
                f"{len(self.record_ids)} records (no patient ids stored with these results: written before they "
                "were, so records of one patient are resampled as if independent)"
            )
        return f"{self.n_resamples} resamples of {unit}, stratified by label"


def seeds_text(test: stats.Test) -> str:
    """The variance parts of a hierarchical test: ``seeds 41 %, df 4.3``."""
    seed_variance, test_variance = test.parts or (0.0, 0.0)
    total = seed_variance + test_variance
    share = f"seeds {100 * seed_variance / total:.0f} % of the variance" if total > 0 else "no spread"
    return f"{share}, df {'∞' if np.isinf(test.df) else f'{test.df:.1f}'}"


def format_comparison(table_stats: TableStats, a: str, b: str) -> str:
    """The report of ``python -m benchmark compare A B`` for one table."""
    t = table_stats.table
    title = " · ".join(x for x in (t.dataset, t.label_set, f"preset {t.preset}", t.protocol, t.variant) if x)
    lines = [
        title,
        "=" * len(title),
        f"test records {len(table_stats.y_true)}, labels scored {int(table_stats.scored.sum())}"
        + (f", budget {t.budget}" if t.budget else ""),
        f"hierarchical bootstrap: seeds and test records resampled; {table_stats.resampling_note()}",
        "",
    ]
    summary = []
    for m in (a, b):
        scores = table_stats.macro(m)
        summary.append(
            [
                m,
                ",".join(map(str, scores.seeds)),
                f"{scores.estimate:.4f}",
                f"{np.std(scores.point, ddof=1):.4f}" if len(scores.seeds) > 1 else "—",
                "[{:.4f}, {:.4f}]".format(*table_stats.ci(m)),
            ]
        )
    lines += [tabulate(summary, headers=["method", "seeds", "macro AUROC", "sd", "95 % CI"]), ""]
    test = table_stats.difference(a, b)
    lines.append(
        f"{a} - {b} (seed-mean macro AUROC) = {test.estimate:+.4f}, 95 % CI [{test.ci[0]:+.4f}, {test.ci[1]:+.4f}], "
        f"t = {test.statistic:.3f}, p = {stats.format_p(test.p, 4)} ({seeds_text(test)})"
    )
    if len(table_stats.seeds(a)) == 1 or len(table_stats.seeds(b)) == 1:
        lines.append("a method with one seed contributes no seed variance: run more seeds to include it")

    per_label = table_stats.per_label_differences(a, b)
    adjusted = stats.holm([test.p for *_, test in per_label])
    names = label_descriptions(t.records)
    rows = [
        [
            label,
            names.get(label, "")[:40],
            f"{auc_a:.4f}",
            f"{auc_b:.4f}",
            f"{test.estimate:+.4f}",
            f"[{test.ci[0]:+.4f}, {test.ci[1]:+.4f}]",
            stats.format_p(test.p, 4),
            stats.format_p(p_holm, 4) + (" *" if p_holm < 0.05 else ""),
        ]
        for (label, auc_a, auc_b, test), p_holm in zip(per_label, adjusted)
    ]
    lines += [
        "",
        f"per label (seed-mean AUROC, the same hierarchical bootstrap; Holm over {len(rows)} labels; * p_Holm < 0.05):",
        tabulate(rows, headers=["label", "name", a, b, "difference", "95 % CI", "p", "p (Holm)"]),
    ]
    return "\n".join(lines)
