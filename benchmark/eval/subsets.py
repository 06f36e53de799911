"""Stratified training subsets for label-efficiency sweeps.

A subset of a multi-label training split must keep at least one positive of every label that
has one, or the probe cannot learn that label and its test AUROC means nothing. The scheme,
greedy and documented rather than optimal (cf. iterative stratification, Sechidis, Tsoumakas &
Vlahavas 2011, which balances folds, not one small draw):

1. **Coverage**: labels from rarest to most common; if the subset has no positive of a label
   yet, add one of its positive records at random.
2. **Stratified fill**: every other record belongs to the stratum of its rarest positive label
   (records without positives form their own stratum); the remaining quota is allocated to the
   strata in proportion to their sizes (largest remainders) and drawn at random within each.

A requested size below what coverage needs is raised to it; the actual size is recorded.
Everything is drawn from ``numpy.random.default_rng([subset_seed, size])``.
"""

from __future__ import annotations

import re

import numpy as np

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)(%?)$")


def parse_train_size(text: str) -> tuple[float, bool]:
    """``"10%"`` -> (0.1, True): a fraction of the training split; ``"250"`` -> (250, False): records."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"training-set size {text!r}: use a percentage (10%) or a number of records (250)")
    value, is_fraction = float(match.group(1)), bool(match.group(2))
    if is_fraction and not 0 < value <= 100:
        raise ValueError(f"training-set size {text!r}: a percentage must be in (0, 100]")
    if not is_fraction and (value < 1 or value != int(value)):
        raise ValueError(f"training-set size {text!r}: a record count must be a whole number >= 1")
    return (value / 100, True) if is_fraction else (value, False)


def n_records(size: str, n_available: int) -> int:
    """Number of records a size means for a split of ``n_available`` records (at most all)."""
    value, is_fraction = parse_train_size(size)
    return min(n_available, max(1, round(value * n_available)) if is_fraction else int(value))


def is_full(size: str, n_available: int) -> bool:
    return n_records(size, n_available) == n_available


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted positions (into ``labels`` (N, K)) of a subset of ``size`` records (or more, if
    keeping a positive of every label needs more) chosen by the scheme above."""
    labels = np.asarray(labels).astype(bool)
    n = len(labels)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng([seed, size])
    counts = labels.sum(axis=0)
    chosen = np.zeros(n, dtype=bool)
    for k in np.argsort(counts, kind="stable"):
        if counts[k] and not (chosen & labels[:, k]).any():
            chosen[rng.choice(np.flatnonzero(labels[:, k]))] = True

    quota = size - chosen.sum()
    if quota > 0:
        rarity = np.where(labels, counts[None, :], np.iinfo(np.int64).max)
        stratum = np.where(labels.any(axis=1), rarity.argmin(axis=1), labels.shape[1])
        free = np.flatnonzero(~chosen)
        strata, sizes = np.unique(stratum[free], return_counts=True)
        exact = quota * sizes / sizes.sum()
        take = np.floor(exact).astype(int)
        remainder_order = np.argsort(-(exact - take), kind="stable")
        take[remainder_order[: quota - take.sum()]] += 1
        for s, k in zip(strata, take):
            members = free[stratum[free] == s]
            chosen[rng.choice(members, size=k, replace=False)] = True
    return np.flatnonzero(chosen)
