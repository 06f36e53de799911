"""Multi-label classification metrics (scikit-learn), robust to labels absent from a split and to
labels a record's source never annotates.

``y_true`` is 0/1, or float with NaN where the label is unknown for that record (a source that
never annotates it: :meth:`benchmark.data.contract.ECGArrays.targets`): such a record counts in
neither the positives nor the negatives of that label's AUROC and AUPRC.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def known_entries(y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positive, known), both bool and shaped as ``y_true``: NaN is unknown, > 0.5 positive."""
    y = np.asarray(y_true, dtype=np.float64)
    known = np.isfinite(y)
    return known & (y > 0.5), known


def scorable_labels(y_true: np.ndarray) -> np.ndarray:
    """Boolean (K,): labels with a known positive and a known negative (AUROC defined)."""
    positive, known = known_entries(y_true)
    return positive.any(axis=0) & (known & ~positive).any(axis=0)


def _per_label(metric, y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    positive, known = known_entries(y_true)
    out = np.full(positive.shape[1], np.nan)
    for k in np.flatnonzero(scorable_labels(y_true)):
        rows = known[:, k]
        out[k] = metric(positive[rows, k], np.asarray(y_score)[rows, k])
    return out


def per_label_auroc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """AUROC per label over the records where it is known; NaN where it has a single class."""
    return _per_label(roc_auc_score, y_true, y_score)


def per_label_auprc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    return _per_label(average_precision_score, y_true, y_score)


def macro_auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    values = per_label_auroc(y_true, y_score)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def classification_report(y_true: np.ndarray, y_score: np.ndarray, label_names: list[str]) -> dict:
    """Macro AUROC (primary), macro AUPRC, and per-label values of both, JSON-ready. ``n_known``:
    per label, the test records whose source annotates it (only where some do not)."""
    auroc, auprc = per_label_auroc(y_true, y_score), per_label_auprc(y_true, y_score)
    ok = np.isfinite(auroc)
    _, known = known_entries(y_true)
    report = {
        "macro_auroc": float(np.mean(auroc[ok])) if ok.any() else None,
        "macro_auprc": float(np.mean(auprc[ok])) if ok.any() else None,
        "n_labels_scored": int(ok.sum()),
        "labels_not_scored": [n for n, good in zip(label_names, ok) if not good],
        "per_label_auroc": {n: float(v) for n, v, good in zip(label_names, auroc, ok) if good},
        "per_label_auprc": {n: float(v) for n, v, good in zip(label_names, auprc, ok) if good},
        "n_test": int(len(y_true)),
    }
    if not known.all():
        report["n_known"] = {n: int(c) for n, c in zip(label_names, known.sum(axis=0))}
    return report
