"""Multi-label classification metrics (scikit-learn), robust to labels absent from a split."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def scorable_labels(y_true: np.ndarray) -> np.ndarray:
    """Boolean (K,): labels with at least one positive and one negative (AUROC defined)."""
    positives = y_true.sum(axis=0)
    return (positives > 0) & (positives < len(y_true))


def per_label_auroc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """AUROC per label; NaN where the label has a single class in ``y_true``."""
    ok = scorable_labels(y_true)
    out = np.full(y_true.shape[1], np.nan)
    for k in np.flatnonzero(ok):
        out[k] = roc_auc_score(y_true[:, k], y_score[:, k])
    return out


def per_label_auprc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    ok = scorable_labels(y_true)
    out = np.full(y_true.shape[1], np.nan)
    for k in np.flatnonzero(ok):
        out[k] = average_precision_score(y_true[:, k], y_score[:, k])
    return out


def macro_auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    values = per_label_auroc(y_true, y_score)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def classification_report(y_true: np.ndarray, y_score: np.ndarray, label_names: list[str]) -> dict:
    """Macro AUROC (primary), macro AUPRC, and per-label values of both, JSON-ready."""
    auroc, auprc = per_label_auroc(y_true, y_score), per_label_auprc(y_true, y_score)
    ok = np.isfinite(auroc)
    return {
        "macro_auroc": float(np.mean(auroc[ok])) if ok.any() else None,
        "macro_auprc": float(np.mean(auprc[ok])) if ok.any() else None,
        "n_labels_scored": int(ok.sum()),
        "labels_not_scored": [n for n, good in zip(label_names, ok) if not good],
        "per_label_auroc": {n: float(v) for n, v, good in zip(label_names, auroc, ok) if good},
        "per_label_auprc": {n: float(v) for n, v, good in zip(label_names, auprc, ok) if good},
        "n_test": int(len(y_true)),
    }
