"""Optimisation shared by pretraining and fine-tuning: AdamW over timm parameter groups with
layer-wise lr decay, linear warmup and a half-cycle cosine schedule per iteration (MAE's recipe).
Both loops build on it, so their optimisation is one mechanism with different parameters.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from torch import nn

from benchmark.config import require_positive


@dataclass
class OptimConfig:
    """AdamW + linear warmup + half-cycle cosine, per iteration (MAE's recipe)."""

    base_lr: float = 1.5e-4  # lr = base_lr * batch_size / 256
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.95
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.0
    grad_clip: float = 1.0
    layer_decay: float = 1.0  # < 1: layer-wise lr decay (BEiT/MAE fine-tuning)

    def __post_init__(self):
        require_positive(self, "base_lr", "grad_clip")
        if self.weight_decay < 0 or not 0 <= self.warmup_frac < 1 or not 0 <= self.min_lr_frac <= 1:
            raise ValueError(f"need weight_decay >= 0, warmup_frac in [0, 1), min_lr_frac in [0, 1]: {self}")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")


def no_weight_decay_names(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """The parameter names matching the fnmatch ``patterns``, resolved here: timm matches
    wildcards only since 1.0.2x and compares exact names before that, silently decaying
    ``*cls*`` tokens under older versions."""
    return [name for name, _ in model.named_parameters() if any(fnmatch.fnmatch(name, p) for p in patterns)]


def build_optimizer(
    model: nn.Module, cfg: OptimConfig, batch_size: int, total_steps: int, no_weight_decay: tuple[str, ...] = ()
) -> tuple[torch.optim.Optimizer, CosineLRScheduler]:
    """AdamW over timm parameter groups (no decay on 1-D params and on parameters matching the
    ``no_weight_decay`` fnmatch patterns; layer-wise lr scales from ``model.group_matcher`` when
    ``layer_decay`` < 1)."""
    exempt = no_weight_decay_names(model, no_weight_decay)
    if cfg.layer_decay < 1:
        groups = param_groups_layer_decay(model, cfg.weight_decay, exempt, layer_decay=cfg.layer_decay)
    else:
        groups = param_groups_weight_decay(model, cfg.weight_decay, no_weight_decay_list=exempt)
    lr = cfg.base_lr * batch_size / 256
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(cfg.beta1, cfg.beta2))
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=total_steps,
        lr_min=lr * cfg.min_lr_frac,
        warmup_t=int(cfg.warmup_frac * total_steps),
        warmup_lr_init=lr * 1e-3,
        t_in_epochs=False,
    )
    return optimizer, scheduler
