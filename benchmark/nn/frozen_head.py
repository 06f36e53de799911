"""Training a small trainable head on frozen, cached encoder outputs.

Frozen protocols whose head is more than a linear map (an attention-pooling probe, a learned
mixture of layers) cannot use the closed-form logistic fit of the linear probe; they share
this loop: mini-batch AdamW on cached inputs, early stopping on validation macro AUROC, the
best epoch's weights kept (the suite's one training loop,
:class:`benchmark.nn.training.TrainingLoop`). Everything stays on one device, so it is fast and
deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from benchmark.config import require_positive
from benchmark.data.contract import DataError
from benchmark.nn.losses import known_bce
from benchmark.nn.metrics import macro_auroc
from benchmark.nn.training import EarlyStopping, OptimiserStep, TrainingLoop, Validation


@dataclass
class FrozenHeadConfig:
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 10

    def __post_init__(self):
        require_positive(self, "epochs", "batch_size", "lr", "patience")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class FittedHead:
    head: nn.Module  # with the best validation epoch's weights
    val_macro_auroc: float
    best_epoch: int
    history: list[float]


@torch.no_grad()
def predict_scores(head: nn.Module, inputs: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    head.eval()
    return torch.cat(
        [torch.sigmoid(head(inputs[i : i + batch_size])).float().cpu() for i in range(0, len(inputs), batch_size)]
    ).numpy()


def fit_frozen_head(
    head: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: FrozenHeadConfig,
    seed: int,
    progress: bool = True,
    desc: str = "frozen head",
) -> FittedHead:
    """Fit ``head`` (inputs -> logits) with BCE over the known labels (NaN = unknown); ``train``/``val``
    are (inputs, labels) on one device."""
    x, y = train
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stopping = EarlyStopping(cfg.patience)

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        return known_bce(head(x[index]).float(), y[index].float())

    def batches(epoch: int):
        order = torch.randperm(len(x), generator=generator).to(x.device)
        return (order[start : start + cfg.batch_size] for start in range(0, len(x), cfg.batch_size))

    def validate() -> float:
        return macro_auroc(val[1].cpu().numpy(), predict_scores(head, val[0]))

    loop = TrainingLoop(
        head,
        OptimiserStep(optimizer, head.parameters()),
        batch_loss,
        stage=desc,
        divergence_hint=f"lower the learning rate of the {desc} (its FrozenHeadConfig.lr, {cfg.lr:g})",
        records_per_step=cfg.batch_size,
        validation=Validation(validate, stopping),
        progress=progress,
        desc=desc,
    )
    loop.run(batches, math.ceil(len(x) / cfg.batch_size), max_epochs=cfg.epochs)
    if np.isnan(stopping.best_score):  # every epoch's AUROC was NaN
        raise DataError(
            f"{desc}: validation macro AUROC is undefined ({len(val[1])} validation records, no label with both "
            "positive and negative records), so no epoch can be chosen; use a larger validation split"
        )
    assert loop.best_state is not None  # the first epoch is always kept
    head.load_state_dict(loop.best_state)
    return FittedHead(head, stopping.best_score, stopping.best_epoch, loop.history)
