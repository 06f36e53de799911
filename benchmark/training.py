"""Pieces every training loop shares: device choice, seeding, optimiser and schedule, atomic
checkpoints. Pretraining and fine-tuning both build on these, so their optimisation is the
same mechanism with different parameters."""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from torch import nn

from .config import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} was requested but no CUDA GPU is visible; use --device cpu")
    return device


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed); full precision on CPU for determinism."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def require_positive(config: object, *names: str) -> None:
    """Validation helper for config dataclasses: each named field must be > 0."""
    for name in names:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")


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


def build_optimizer(model: nn.Module, cfg: OptimConfig, batch_size: int, total_steps: int,
                    no_weight_decay: tuple[str, ...] = ()) -> tuple[torch.optim.Optimizer, CosineLRScheduler]:
    """AdamW over timm parameter groups (no decay on 1-D params and ``no_weight_decay``
    patterns; layer-wise lr scales from ``model.group_matcher`` when ``layer_decay`` < 1)."""
    if cfg.layer_decay < 1:
        groups = param_groups_layer_decay(model, cfg.weight_decay, no_weight_decay, layer_decay=cfg.layer_decay)
    else:
        groups = param_groups_weight_decay(model, cfg.weight_decay, no_weight_decay_list=no_weight_decay)
    lr = cfg.base_lr * batch_size / 256
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(cfg.beta1, cfg.beta2))
    scheduler = CosineLRScheduler(
        optimizer, t_initial=total_steps, lr_min=lr * cfg.min_lr_frac,
        warmup_t=int(cfg.warmup_frac * total_steps), warmup_lr_init=lr * 1e-3, t_in_epochs=False,
    )
    return optimizer, scheduler


def atomic_torch_save(obj: object, path: Path) -> None:
    """Write to a temporary file and rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
