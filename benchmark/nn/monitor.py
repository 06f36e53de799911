"""What a training loop reports while it runs: scalars per log interval, and divergence.

Pretraining and fine-tuning call one :class:`TrainingMonitor` per run with the scalars of each
log interval (loss, learning rate, throughput, gradient norm, validation metric). The monitor
passes them on to whoever listens — TensorBoard event files with ``--log tensorboard``, the
run-state file that ``python -m benchmark status`` and the ETA read — and does nothing when
nobody does. The loops keep their own curves (they go into the result); the monitor never
changes what a result is.

A loss that becomes NaN or infinite raises :class:`NonFiniteLossError`, which carries the stage,
the step and the curve so far; the runner records the cell as *diverged* (shown as such in the
leaderboard, never averaged in) instead of stopping the whole run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmark.config import ConfigError

#: ``--log`` choices (only TensorBoard so far); each is an optional dependency
LOGGERS: tuple[str, ...] = ("tensorboard",)
INSTALL_HINT = "pip install 'ecgbench[tensorboard]' (or pip install tensorboard)"


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite: the run diverged."""

    def __init__(self, stage: str, step: int, loss: float, hint: str, curve: list | None = None, wall_s: float = 0.0):
        super().__init__(f"{stage} loss became {loss} at step {step}; {hint}")
        self.stage, self.step, self.loss, self.hint = stage, step, loss, hint
        self.curve = list(curve or [])  # the loop's curve before the divergence (pretraining: loss; fine-tuning: val)
        self.wall_s = wall_s

    def as_record(self) -> dict:
        """JSON-safe description for the cell's result (the loss as text: JSON has no NaN)."""
        return {"stage": self.stage, "step": self.step, "loss": str(self.loss), "message": str(self)}


def check_finite(stage: str, step: int, loss: float, hint: str, curve: list | None = None, wall_s: float = 0.0) -> None:
    if not math.isfinite(loss):
        raise NonFiniteLossError(stage, step, loss, hint, curve, wall_s)


def require_tensorboard() -> None:
    """Fail before any work when ``--log tensorboard`` is asked for without the package."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (imports the tensorboard package)
    except ImportError:
        raise ConfigError(f"--log tensorboard needs the tensorboard package: {INSTALL_HINT}") from None


def max_lr(optimizer: torch.optim.Optimizer) -> float:
    """The largest learning rate of the optimiser's groups (the head's or top layer's under
    layer-wise decay; the one lr of pretraining)."""
    return max(group["lr"] for group in optimizer.param_groups)


class TrainingMonitor:
    """Scalars of one training run, per log interval, to TensorBoard and/or progress callbacks.

    ``tensorboard_dir``: write event files there (``--log tensorboard``); ``on_start(step,
    total)`` and ``on_log(step, total, scalars)``: called when the loop starts (or resumes) and at
    every log interval (the run-state heartbeat and ETA). Without any it is a no-op, the default
    for protocols run outside the runner.
    """

    def __init__(
        self,
        tensorboard_dir: Path | None = None,
        on_log: Callable[[int, int, dict[str, float]], None] | None = None,
        on_start: Callable[[int, int], None] | None = None,
    ):
        self.tensorboard_dir, self.on_log, self.on_start = tensorboard_dir, on_log, on_start
        self.total = 0
        self._writer: Any = None  # a SummaryWriter, imported only when asked for

    def start(self, step: int, total: int) -> None:
        """Begin (or resume at ``step``) a run of ``total`` steps; a resumed run's events at or
        after ``step`` (written after its last checkpoint) are purged, so curves never fold back."""
        self.total = total
        if self.tensorboard_dir is not None and self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.tensorboard_dir), purge_step=step or None, flush_secs=30)
        if self.on_start is not None:
            self.on_start(step, total)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if self._writer is not None:
            for tag, value in scalars.items():
                self._writer.add_scalar(tag, value, step)
        if self.on_log is not None:
            self.on_log(step, self.total, scalars)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TrainingMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
