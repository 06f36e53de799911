"""Cross-lead alignment losses and annealed loss weights, shared by the alignment methods.

Each lead of an ECG is a "view" of the same heart: the alignment methods (``mvmae``, ``align``)
add to their masked reconstruction a loss that pulls the representations of a record's leads
together. Inputs everywhere: lead features ``f`` (B, L, D) and the lead mask ``present``
(B, L); missing leads take part in no term.

Metrics:

* ``mse``, ``cosine_sim``, ``simclr``, ``mix`` — MVMAE's (agostini335/MVMAE,
  ``mm_maes/mm_mae_mmvm.py`` ``feats_mse`` / ``feats_cos_sim`` / ``feats_simclr`` and
  ``mm_maes/utils.py`` ``ContrastiveLoss``) [code], vectorised over all lead pairs at once.
* ``lead_infonce`` — the alignment baseline's [choice]: one multi-positive InfoNCE (supervised
  contrastive form, Khosla et al. 2020) over every lead of the batch, the other leads of the
  same ECG being the positives and the leads of the other ECGs the negatives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_EXCLUDED = -1e9  # logit of a pair that takes no part in a contrastive denominator
METRICS = ("mse", "cosine_sim", "simclr", "mix", "lead_infonce")
SCHEDULES = ("sigmoid", "linear", "constant")


def _pair_mask(present: torch.Tensor) -> torch.Tensor:
    """(L, L, B): both leads of the pair present in record b."""
    p = present.T
    return p[:, None, :] & p[None, :, :]


def mse_alignment(f: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """MVMAE ``feats_mse``: sum over lead pairs (diagonal included) of mean_d (f_m - f_m')^2 on
    L2-normalised features, divided by L^2, averaged over records [code]."""
    z = F.normalize(f.float(), dim=-1).transpose(0, 1)  # (L, B, D)
    diff = (z[:, None] - z[None, :]).pow(2).mean(-1)  # (L, L, B)
    n_leads = f.shape[1]
    return (diff * _pair_mask(present)).sum(dim=(0, 1)).div(n_leads**2).mean()


def cosine_alignment(f: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """MVMAE ``feats_cos_sim``: minus the mean off-diagonal cosine similarity between leads [code]."""
    z = F.normalize(f.float(), dim=-1).transpose(0, 1)
    cos = torch.einsum("mbd,nbd->mnb", z, z)
    n_leads = f.shape[1]
    off_diagonal = ~torch.eye(n_leads, dtype=torch.bool, device=f.device)[..., None]
    return -(cos * (_pair_mask(present) & off_diagonal)).sum(dim=(0, 1)).div(n_leads**2 - n_leads).mean()


def simclr_alignment(f: torch.Tensor, present: torch.Tensor, temperature: float) -> torch.Tensor:
    """MVMAE ``feats_simclr``: NT-Xent between every ordered pair of leads (m, n), averaged [code].

    For pair (m, n) the anchor z_m[b] has the positive z_n[b] and the negatives z_m[c], z_n[c]
    (c != b) of the records where both leads are present. Rows whose pair is absent are left
    out of the mean [choice] (the code averages them in; it never has absent views in practice).
    """
    z = F.normalize(f.float(), dim=-1).transpose(0, 1)  # (L, B, D)
    n_leads, batch = z.shape[:2]
    sim = torch.einsum("mbd,ncd->mnbc", z, z) / temperature  # (L, L, B, B)
    pair = _pair_mask(present)  # (L, L, B)
    eye = torch.eye(batch, dtype=torch.bool, device=f.device)
    within = sim.diagonal(dim1=0, dim2=1).permute(2, 0, 1)[:, None].expand(-1, n_leads, -1, -1)  # sim[m, m]
    valid = pair[:, :, None, :]  # column c usable for pair (m, n)
    # excluded logits get a large finite negative value, not -inf: rows with nothing valid then
    # stay finite (and are dropped below) instead of poisoning the gradient with NaN
    logits = torch.cat([within.masked_fill(~valid | eye, _EXCLUDED), sim.masked_fill(~valid, _EXCLUDED)], dim=-1)
    positive = sim.diagonal(dim1=2, dim2=3)  # (L, L, B)
    loss = torch.logsumexp(logits, dim=-1) - positive
    rows = pair & ~torch.eye(n_leads, dtype=torch.bool, device=f.device)[..., None]
    return torch.where(rows, loss, 0.0).sum() / rows.sum().clamp_min(1)


def lead_infonce(f: torch.Tensor, present: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-positive InfoNCE over all present leads of the batch [choice]: for each lead, the
    other leads of its ECG are positives and the leads of other ECGs negatives."""
    z = F.normalize(f[present].float(), dim=-1)  # (P, D)
    record = torch.arange(len(f), device=f.device)[:, None].expand_as(present)[present]
    sim = z @ z.T / temperature
    self_pair = torch.eye(len(z), dtype=torch.bool, device=f.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(self_pair, -torch.inf), dim=1, keepdim=True)
    positive = (record[:, None] == record[None, :]) & ~self_pair
    n_positive = positive.sum(1)
    has_positive = n_positive > 0  # a single-lead record has nothing to align to
    if not has_positive.any():
        return f.sum() * 0.0
    per_anchor = torch.where(positive, log_prob, 0.0).sum(1) / n_positive.clamp_min(1)
    return -per_anchor[has_positive].mean()


def alignment_loss(f: torch.Tensor, present: torch.Tensor, metric: str, temperature: float = 0.5) -> torch.Tensor:
    if metric == "mse":
        return mse_alignment(f, present)
    if metric == "cosine_sim":
        return cosine_alignment(f, present)
    if metric == "simclr":
        return simclr_alignment(f, present, temperature)
    if metric == "mix":  # MVMAE's equal-weight mix (0.33 each) [code]
        return 0.33 * (
            mse_alignment(f, present) + cosine_alignment(f, present) + simclr_alignment(f, present, temperature)
        )
    if metric == "lead_infonce":
        return lead_infonce(f, present, temperature)
    raise ValueError(f"unknown alignment metric {metric!r}; valid: {', '.join(METRICS)}")


def annealed_weight(
    step: int, total_steps: int, final: float, schedule: str, start_frac: float, steepness: float = 0.02
) -> float:
    """Loss weight at ``step``: 0 until ``start_frac`` of training, rising to ``final`` at the end.

    ``sigmoid`` follows MVMAE's ``SigmoidAnnealing`` [code]: a logistic curve centred on the
    middle of the annealing window with ``steepness`` per unit of the code's schedule, which
    counts epochs. We count one unit per 1 % of the annealing window (one epoch of a 100-epoch
    window) and rescale the curve so that it starts exactly at 0 and ends exactly at ``final``
    [choice]; the code's unscaled curve starts near 0.27·final for a 100-epoch window.
    ``linear`` rises in a straight line; ``constant`` is ``final`` throughout (MVMAE's
    ``NoAnnealing``).
    """
    if schedule == "constant":
        return final
    start = start_frac * total_steps
    if step <= start:
        return 0.0
    progress = min(1.0, (step - start) / (total_steps - start))
    if schedule == "linear":
        return final * progress
    if schedule == "sigmoid":
        k = steepness * 100.0  # schedule units per annealing window
        low, high = _logistic(-k / 2), _logistic(k / 2)
        return final * (_logistic(k * (progress - 0.5)) - low) / (high - low)
    raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
