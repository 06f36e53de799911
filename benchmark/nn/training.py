"""What every training loop of the suite shares: the optimiser step and early stopping.

Three loops train weights: pretraining (``benchmark/train/pretrain.py``, a fixed number of
steps), fine-tuning (``Finetune.train``, epochs with validation) and the small heads on frozen,
cached features (:func:`benchmark.nn.frozen_head.fit_frozen_head`). Their data and stopping
differ; how a step is taken and how the best epoch is kept do not, so they are written once here:

* :class:`OptimiserStep`: the learning-rate schedule's update, the forward pass under the
  mixed-precision rule (:func:`autocast`), ``zero_grad``, ``backward``, gradient clipping by
  global norm (the norm before clipping summed for the monitor) and ``optimizer.step``;
* :class:`EarlyStopping`: the best validation epoch (an undefined score, NaN, ranks below every
  other; the first epoch is kept whatever its score) and when patience runs out.

The frozen heads take their step without autocast and without clipping [choice: small heads on
cached full-precision features, as they were trained before this module existed].
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch

T = TypeVar("T", torch.Tensor, dict[str, torch.Tensor])


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed); full precision on CPU for determinism."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class StepSchedule(Protocol):
    def step_update(self, num_updates: int) -> Any: ...


class OptimiserStep:
    """One optimiser step of a loop: ``step(forward, *inputs, index=...)`` runs
    ``forward(*inputs)`` (the loss, or a dict holding it under ``"loss"``) and returns its output;
    ``index`` is the step's number in the loop's schedule.

    ``grad_clip``: clip the gradients' global norm to it (None: no clipping, and no norm kept);
    ``schedule``: its ``step_update(index)`` sets the learning rate first (timm's schedulers);
    ``amp_device``: run ``forward`` under :func:`autocast` for that device (None: full precision).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        parameters: Iterable[torch.Tensor],
        *,
        grad_clip: float | None = None,
        schedule: StepSchedule | None = None,
        amp_device: torch.device | None = None,
    ):
        self.optimizer, self.parameters = optimizer, list(parameters)
        self.grad_clip, self.schedule, self.amp_device = grad_clip, schedule, amp_device
        device = self.parameters[0].device if self.parameters else torch.device("cpu")
        self._grad_norms = torch.zeros((), device=device)  # summed on the device: no host sync a step

    def step(self, forward: Callable[..., T], *inputs: Any, index: int | None = None) -> T:
        if self.schedule is not None:
            if index is None:
                raise ValueError("a scheduled step needs its index")
            self.schedule.step_update(index)
        with autocast(self.amp_device) if self.amp_device is not None else contextlib.nullcontext():
            out = forward(*inputs)
        loss = out["loss"] if isinstance(out, dict) else out
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            self._grad_norms += torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip).detach()
        self.optimizer.step()
        return out

    def mean_grad_norm(self, steps: int) -> float:
        """The mean gradient norm (before clipping) over the ``steps`` steps since the last call;
        starts the next interval."""
        mean = self._grad_norms.item() / max(steps, 1)
        self._grad_norms.zero_()
        return mean


@dataclass
class EarlyStopping:
    """The best epoch of a validation score (higher is better) and when to stop: after
    ``patience`` epochs without a better one, counted from epoch ``min_epochs - 1`` at the
    earliest (a warmup's epochs never stop training)."""

    patience: int
    min_epochs: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1

    def improved(self, epoch: int, score: float) -> bool:
        """Whether ``epoch``'s ``score`` is the best so far (it becomes the best)."""
        if self.best_epoch >= 0 and _rank(score) <= _rank(self.best_score):
            return False
        self.best_score, self.best_epoch = score, epoch
        return True

    def should_stop(self, epoch: int) -> bool:
        return epoch - max(self.best_epoch, self.min_epochs - 1) >= self.patience


def _rank(score: float) -> float:
    return -math.inf if math.isnan(score) else score
