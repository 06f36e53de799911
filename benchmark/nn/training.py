"""The one training loop of the suite, and what it is made of.

Three trainings use it: pretraining (``benchmark/train/pretrain.py``: a fixed number of steps,
logged every ``log_every`` steps, checkpointed, resumable), fine-tuning (``Finetune.train``:
epochs with validation) and the small heads on frozen, cached features
(:func:`benchmark.nn.frozen_head.fit_frozen_head`: epochs with validation). Their data, budget
and bookkeeping differ; the rest is written once here:

* :class:`OptimiserStep`: the learning-rate schedule's update, the forward pass under the
  mixed-precision rule (:func:`autocast`), ``zero_grad``, ``backward``, gradient clipping by
  global norm (the norm before clipping summed for the monitor) and ``optimizer.step``;
* :class:`EarlyStopping`: the best validation epoch (an undefined score, NaN, ranks below every
  other; the first epoch is kept whatever its score) and when patience runs out;
* :class:`TrainingLoop`: epochs of batches through the step, the budget (steps or epochs, and
  resuming mid-epoch at a step), one log interval's measurements (the mean loss and every other
  output of the forward over the steps and the torchrun processes, gradient norm, learning rate,
  throughput) with the divergence check, the progress bar and the monitor, validation with early
  stopping keeping the best epoch's weights, and the hooks where a loop adds its own (pretraining's
  checkpoints, the first epoch's profile).

DDP itself wraps the forward (the callers pass a ``DistributedDataParallel`` forward); the loop
averages what it logs across processes. The frozen heads take their step without autocast and
without clipping [choice: small heads on cached full-precision features, as they were trained
before this module existed].
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch
from tqdm.auto import tqdm

from benchmark.nn import distributed
from benchmark.nn.monitor import TrainingMonitor, check_finite, max_lr

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


@dataclass
class Interval:
    """What a loop measured over one log interval (``log_every`` steps, or an epoch)."""

    step: int  # the loop's steps when it ended
    loss: float  # the mean training loss over its steps and the torchrun processes
    means: dict[str, float]  # the same mean of each other scalar the forward returned
    grad_norm: float  # the mean global gradient norm before clipping (0 without clipping)
    lr: float  # the largest learning rate of the optimiser's groups at its end
    records_per_s: float  # training throughput (validation not counted)


@dataclass
class Validation:
    """Validation at the end of every epoch, with early stopping: ``score()`` is the model's
    validation score now (higher is better), logged as ``name``."""

    score: Callable[[], float]
    stopping: EarlyStopping
    name: str = "val_macro_auroc"


@dataclass
class TrainingLoop:
    """Train ``model`` by ``forward(batch)`` (the loss, or a dict of scalars holding it under
    ``"loss"``) through ``optimiser_step``, over epochs of ``batches(epoch)`` (which shuffles;
    ``steps_per_epoch`` of them), until ``max_steps`` steps or ``max_epochs`` epochs, whichever
    comes first.

    Every ``log_every`` steps — or at every epoch's end when ``log_every`` is None, as a loop
    with ``validation`` must be — the loop measures an :class:`Interval`, raises
    :class:`NonFiniteLossError` (``stage``, ``divergence_hint``) when its loss is not finite,
    appends ``(step, loss)`` to ``loss_curve``, validates (keeping the best epoch's weights in
    ``best_state``, on the CPU, and stopping when patience runs out), and logs ``prefix``-ed
    scalars to ``monitor`` and the progress bar: the loss, learning rate, gradient norm,
    throughput, the validation score and whatever ``on_interval(interval)`` returns.

    Hooks: ``before_step(step)``; ``after_step(step)`` (after the step's log, where pretraining
    writes its checkpoint); ``epoch_context(epoch)`` around an epoch (pretraining's profiler).
    A resumed loop starts at ``step`` with its ``loss_curve`` and ``wall_s`` so far; the epoch's
    batches before ``step`` are skipped, so it continues the data order it left.
    """

    model: torch.nn.Module  # put in training mode at every epoch's start; its weights are kept
    optimiser_step: OptimiserStep
    forward: Callable[[Any], Any]
    stage: str  # names the loop in a divergence: "pretraining", "fine-tuning", ...
    divergence_hint: str  # how to avoid the divergence
    records_per_step: int  # the global batch, for the throughput
    prefix: str = "train"  # of the monitor's scalars
    monitor: TrainingMonitor = field(default_factory=TrainingMonitor)
    monitor_offset: int = 0  # added to the step of every logged interval (candidates that follow on)
    log_every: int | None = None
    validation: Validation | None = None
    on_interval: Callable[[Interval], dict[str, float]] | None = None
    before_step: Callable[[int], None] | None = None
    after_step: Callable[[int], None] | None = None
    epoch_context: Callable[[int], AbstractContextManager] | None = None
    progress: bool = True
    desc: str = "train"
    step: int = 0
    wall_s: float = 0.0
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    history: list[float] = field(default_factory=list)  # validation scores, per epoch
    best_state: dict[str, torch.Tensor] | None = None
    _started: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self):
        if self.validation is not None and self.log_every is not None:
            raise ValueError("a validated loop logs once per epoch, where it validates: leave log_every None")

    def run(
        self,
        batches: Callable[[int], Iterable],
        steps_per_epoch: int,
        *,
        max_steps: int | None = None,
        max_epochs: int | None = None,
    ) -> None:
        """Train until the budget is spent or validation stops the loop."""
        if max_steps is None and max_epochs is None:
            raise ValueError("a training loop needs max_steps or max_epochs")
        by_steps = max_epochs is None
        epoch, skip = divmod(self.step, steps_per_epoch)
        self._started = time.perf_counter() - self.wall_s
        bar = tqdm(
            total=max_steps if by_steps else max_epochs,
            initial=self.step if by_steps else epoch,
            desc=self.desc,
            unit="step" if by_steps else "epoch",
            disable=not (self.progress and distributed.is_main()),
            dynamic_ncols=True,
            leave=False,
        )
        sums = _Sums(self.model, self.optimiser_step, self.records_per_step)
        try:
            while (max_steps is None or self.step < max_steps) and (max_epochs is None or epoch < max_epochs):
                self.model.train()
                if self.log_every is None:  # the epoch is the interval: its throughput leaves validation out
                    sums.started = time.perf_counter()
                with self.epoch_context(epoch) if self.epoch_context else contextlib.nullcontext():
                    for batch in _skip(batches(epoch), skip):
                        if self.before_step is not None:
                            self.before_step(self.step)
                        sums.add(self.optimiser_step.step(self.forward, batch, index=self.step))
                        self.step += 1
                        if by_steps:
                            bar.update(1)
                        if self.log_every is not None and (self.step % self.log_every == 0 or self.step == max_steps):
                            self._log(sums.interval(self.step), bar)
                        if self.after_step is not None:
                            self.after_step(self.step)
                        if max_steps is not None and self.step >= max_steps:
                            break
                if self.log_every is None and sums.steps:
                    stop = self._log(sums.interval(self.step), bar, epoch)
                    if not by_steps:
                        bar.update(1)
                    if stop:
                        break
                epoch, skip = epoch + 1, 0
        finally:
            bar.close()
        self.wall_s = self.elapsed_s()

    def elapsed_s(self) -> float:
        """Seconds of training so far, a resumed run's earlier ones included."""
        return time.perf_counter() - self._started

    def _log(self, interval: Interval, bar, epoch: int | None = None) -> bool:
        """Check, record and log one interval, validating at an epoch's end; whether to stop."""
        curve = self.history if self.validation is not None else self.loss_curve
        check_finite(self.stage, interval.step, interval.loss, self.divergence_hint, curve, self.elapsed_s())
        self.loss_curve.append((interval.step, interval.loss))
        extra = self.on_interval(interval) if self.on_interval is not None else {}
        scalars = {
            "loss": interval.loss,
            **extra,
            "lr": interval.lr,
            "grad_norm": interval.grad_norm,
            "throughput_ecgs_per_s": interval.records_per_s,
        }
        stop = False
        if self.validation is not None and epoch is not None:
            score = self.validation.score()
            self.history.append(score)
            scalars[self.validation.name] = score
            if self.validation.stopping.improved(epoch, score):
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            else:
                stop = self.validation.stopping.should_stop(epoch)
        self.monitor.log(self.monitor_offset + interval.step, {f"{self.prefix}/{k}": v for k, v in scalars.items()})
        shown = ["loss", *extra, *([self.validation.name] if self.validation is not None else [])]
        bar.set_postfix({k: f"{scalars[k]:.4f}" for k in shown})
        return stop


class _Sums:
    """The running sums of one log interval, on the device: the only host sync is the interval's end."""

    def __init__(self, model: torch.nn.Module, optimiser_step: OptimiserStep, records_per_step: int):
        self.optimiser_step, self.records_per_step = optimiser_step, records_per_step
        device = next(iter(model.parameters()), torch.zeros(())).device
        self.loss = torch.zeros((), device=device)
        self.others: dict[str, torch.Tensor] = {}
        self.steps, self.started = 0, time.perf_counter()

    def add(self, out: torch.Tensor | dict[str, torch.Tensor]) -> None:
        outputs = dict(out) if isinstance(out, dict) else {"loss": out}
        self.loss += outputs.pop("loss").detach()
        for name, value in outputs.items():
            self.others[name] = self.others.get(name, 0.0) + value.detach().float()
        self.steps += 1

    def interval(self, step: int) -> Interval:
        """The interval ending at ``step``; starts the next one."""
        n, now = self.steps, time.perf_counter()
        interval = Interval(
            step,
            distributed.mean_across_ranks(self.loss).item() / n,
            {name: distributed.mean_across_ranks(total).item() / n for name, total in sorted(self.others.items())},
            self.optimiser_step.mean_grad_norm(n),
            max_lr(self.optimiser_step.optimizer),
            n * self.records_per_step / max(now - self.started, 1e-9),
        )
        self.loss.zero_()
        self.others.clear()
        self.steps, self.started = 0, now
        return interval


def _skip(batches: Iterable, count: int) -> Iterator:
    for i, batch in enumerate(batches):
        if i >= count:
            yield batch
