"""The classification loss of every downstream head, for targets with unknown labels.

Targets come from :meth:`benchmark.data.contract.ECGArrays.targets`: 0/1, and NaN where the
record's source never annotates the label (CPSC 2018's records in the CinC Challenge name 9
classes; a transfer task pools sources with different vocabularies). An unknown label is not a
negative: it contributes nothing to the loss (nor to any metric, benchmark/nn/metrics.py).
Where every label is known this is the plain binary cross-entropy with logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def known_bce(logits: torch.Tensor, targets: torch.Tensor, per_label: bool = False) -> torch.Tensor:
    """Binary cross-entropy with logits over the known entries of ``targets`` (NaN = unknown).

    ``per_label=False``: the mean over all known entries (a scalar; PyTorch's mean reduction when
    all are known). ``per_label=True``: (K,) each label's mean over the records where it is known
    (0 for a label known nowhere), so that each label's logistic fit sees its own records only.
    """
    known = ~torch.isnan(targets)
    losses = F.binary_cross_entropy_with_logits(
        logits, torch.nan_to_num(targets, nan=0.0), weight=known.to(logits.dtype), reduction="none"
    )
    if per_label:
        return losses.sum(dim=0) / known.sum(dim=0).clamp_min(1)
    return losses.sum() / known.sum().clamp_min(1)


def known_per_label(targets: torch.Tensor) -> torch.Tensor:
    """(K,) how many records know each label (at least 1: a divisor)."""
    return (~torch.isnan(targets)).sum(dim=0).clamp_min(1)
