"""Self-supervised pretraining: a fixed number of optimiser steps over the pretraining split,
checkpointed so that a killed run resumes where it stopped and gives the same weights."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from benchmark.config import ConfigError, require_positive
from benchmark.data.contract import ECGArrays
from benchmark.data.loader import epochs_on, make_loader
from benchmark.method.base import Method
from benchmark.nn import distributed
from benchmark.nn.layers import TRIVIAL
from benchmark.nn.monitor import TrainingMonitor
from benchmark.nn.training import Interval, OptimiserStep, TrainingLoop
from benchmark.storage import DamagedFileError, atomic_torch_save, read_torch
from benchmark.train.budget import parse_budget
from benchmark.train.optim import OptimConfig, build_optimizer
from benchmark.train.runtime import rng_state, set_rng_state

log = logging.getLogger("benchmark")


@dataclass
class PretrainConfig:
    steps: int = 2000  # of every method ('steps' budget) or of the budget's reference method
    budget: str = "steps"  # matched compute, see benchmark/train/budget.py: steps | lamae | 600@lamae | 3.2e15
    batch_size: int = 64
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every: int = 200
    log_every: int = 25
    num_workers: int = 0
    compile: bool = False  # torch.compile the loss (worth it on GPUs for long runs)

    def __post_init__(self):
        require_positive(self, "steps", "batch_size", "checkpoint_every", "log_every")
        parse_budget(self.budget)
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


@dataclass
class PretrainReport:
    """What a pretraining run did. ``trivial_curve`` holds, per log interval, the mean loss of each
    trivial predictor on the same masked targets as the loss (the ``trivial/*`` entries of
    ``Method.pretrain_loss``); ``loss_ratio`` is the final loss over the lowest of them at the end
    (``start_ratio`` the same in the first interval): near 1, the run learned nothing a constant
    does not know."""

    steps: int
    wall_s: float
    final_loss: float
    loss_curve: list[tuple[int, float]]
    peak_memory_mb: float | None = None
    trivial_curve: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    @property
    def trivial_loss(self) -> float | None:
        """The lowest trivial predictor's loss in the last log interval."""
        return min(self.trivial_curve[-1][1].values()) if self.trivial_curve else None

    @property
    def loss_ratio(self) -> float | None:
        return loss_ratio(self.loss_curve, self.trivial_curve, -1)

    @property
    def start_ratio(self) -> float | None:
        return loss_ratio(self.loss_curve, self.trivial_curve, 0)

    def as_record(self) -> dict:
        """The report with its derived values, for the result record."""
        return {
            **self.__dict__,
            "trivial_loss": self.trivial_loss,
            "loss_ratio": self.loss_ratio,
            "start_ratio": self.start_ratio,
        }


def loss_ratio(
    loss_curve: list[tuple[int, float]], trivial_curve: list[tuple[int, dict[str, float]]], at: int
) -> float | None:
    """Loss over the lowest trivial predictor's loss at log interval ``at`` (None without one)."""
    if not loss_curve or not trivial_curve or not trivial_curve[at][1]:
        return None
    trivial = min(trivial_curve[at][1].values())
    return loss_curve[at][1] / trivial if trivial > 0 else None


class _LossModule(nn.Module):
    """DistributedDataParallel synchronises gradients through ``forward``; this routes
    ``forward`` to the method's pretraining loss (the loss and its trivial references)."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, batch) -> dict[str, torch.Tensor]:
        out = self.method.pretrain_loss(batch)
        return {k: v for k, v in out.items() if k == "loss" or k.startswith(TRIVIAL)}


def _loss_function(method: Method, device: torch.device, compile_model: bool):
    module = distributed.data_parallel(_LossModule(method), device, find_unused_parameters=True)
    return torch.compile(module, dynamic=True) if compile_model else module


def _checkpoint(path: Path, keys: tuple[str, ...], otherwise: str) -> dict | None:
    """The checkpoint at ``path``; None when there is none, or (said in the log) when it is
    damaged (a truncated file, a foreign format): the caller then does ``otherwise``."""
    if not path.exists():
        return None
    try:
        state = read_torch(path, otherwise)
        missing = [key for key in keys if key not in state] if isinstance(state, dict) else list(keys)
        if missing:
            raise DamagedFileError(f"{path} lacks {', '.join(missing)}; {otherwise}")
    except DamagedFileError as exc:
        log.warning("%s", exc)
        return None
    return state


def pretrain(
    method: Method,
    arrays: ECGArrays,
    cfg: PretrainConfig,
    seed: int,
    device: torch.device,
    checkpoint_dir: Path,
    progress: bool = True,
    profile_to: Path | None = None,
    monitor: TrainingMonitor | None = None,
) -> PretrainReport:
    """Train ``method.pretrain_loss`` for ``cfg.steps`` steps; resumable from ``checkpoint_dir``.

    ``final.pt`` holds the finished weights and report (reused as is); ``last.pt`` holds the
    latest periodic state (weights, optimiser, step, RNG) to resume from; a damaged one (truncated
    by a full disk or a copy) is named in the log and ignored: the model is pretrained again, or
    from step 0 (the weights of a fresh run). Under ``torchrun``
    each rank trains on its shard of every global batch and only rank 0 writes checkpoints.
    With ``profile_to``, the first epoch is traced with torch.profiler into that folder (the
    runner gives each pretrained model its own: ``PROFILE/<method's file name>_seed<seed>/``).
    Every ``log_every``
    steps the mean loss joins the loss curve and ``monitor`` gets loss, learning rate,
    throughput and gradient norm; a non-finite mean loss raises ``NonFiniteLossError``.
    """
    final_path, last_path = checkpoint_dir / "final.pt", checkpoint_dir / "last.pt"
    state = _checkpoint(final_path, ("model", "report"), "pretraining again (the checkpoint is replaced when done)")
    if state is not None:
        method.load_state_dict(state["model"])
        return PretrainReport(**state["report"])

    method.to(device).train()
    optimizer, scheduler = build_optimizer(method, cfg.optim, cfg.batch_size, cfg.steps, method.no_weight_decay)
    loader = make_loader(
        arrays,
        arrays.splits["pretrain"],
        method.input_spec.window,
        distributed.local_batch_size(cfg.batch_size),
        train=True,
        seed=seed,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        rank=distributed.rank(),
        world_size=distributed.world_size(),
    )
    if len(loader) == 0:
        raise ConfigError(
            f"{arrays.name}: the pretraining split ({len(arrays.splits['pretrain'])} records) is smaller than one "
            f"batch of {cfg.batch_size}; lower --set pretrain.batch_size or pretrain on more data (--pretrain-data)"
        )
    step, loss_curve, elapsed = 0, [], 0.0
    trivial_curve: list[tuple[int, dict[str, float]]] = []
    state = _checkpoint(
        last_path, ("model", "optimizer", "step", "loss_curve", "wall_s", "rng"), "restarting pretraining from step 0"
    )
    if state is not None:
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, loss_curve, elapsed = state["step"], state["loss_curve"], state["wall_s"]
        trivial_curve = state.get("trivial_curve", [])
        set_rng_state(state["rng"])
    loss_function = _loss_function(method, device, cfg.compile)
    profiler = Profiler(profile_to, device) if profile_to is not None else None
    first_epoch = step // len(loader)
    monitor = monitor or TrainingMonitor()
    monitor.start(step, cfg.steps)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def with_ratio(interval: Interval) -> dict[str, float]:
        """The interval's trivial losses join their curve; its loss / trivial is logged."""
        trivial_curve.append((interval.step, {k.removeprefix(TRIVIAL): v for k, v in interval.means.items()}))
        ratio = loss_ratio(loop.loss_curve, trivial_curve, -1)
        return {"loss_vs_trivial": ratio} if ratio else {}

    def checkpoint(step: int) -> None:
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            if distributed.is_main():
                atomic_torch_save(
                    {
                        "model": method.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "step": step,
                        "loss_curve": loop.loss_curve,
                        "trivial_curve": trivial_curve,
                        "rng": rng_state(),
                        "wall_s": loop.elapsed_s(),
                    },
                    last_path,
                )
            distributed.barrier()

    loop = TrainingLoop(
        method,
        OptimiserStep(
            optimizer, method.parameters(), grad_clip=cfg.optim.grad_clip, schedule=scheduler, amp_device=device
        ),
        loss_function,
        stage="pretraining",
        divergence_hint="lower the learning rate (--set pretrain.optim.base_lr=...)",
        records_per_step=cfg.batch_size,
        prefix="pretrain",
        monitor=monitor,
        log_every=cfg.log_every,
        on_interval=with_ratio,
        before_step=lambda step: method.on_train_step(step, cfg.steps),
        after_step=checkpoint,
        # trace the first epoch only
        epoch_context=lambda epoch: profiler if profiler and epoch == first_epoch else contextlib.nullcontext(),
        progress=progress,
        desc=f"pretrain {method.name}",
        step=step,
        wall_s=elapsed,
        loss_curve=loss_curve,
    )
    loop.run(epochs_on(loader, device), len(loader), max_steps=cfg.steps)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    report = PretrainReport(loop.step, loop.wall_s, loop.loss_curve[-1][1], loop.loss_curve, peak, trivial_curve)
    if distributed.is_main():
        atomic_torch_save({"model": method.state_dict(), "report": report.__dict__}, final_path)
        last_path.unlink(missing_ok=True)
    distributed.barrier()
    return report


class Profiler:
    """torch.profiler over one epoch: a Chrome trace (chrome://tracing, Perfetto) and a table of
    the most expensive operators, written to ``directory``."""

    def __init__(self, directory: Path, device: torch.device):
        self.directory = directory
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profile = torch.profiler.profile(activities=activities, record_shapes=True, profile_memory=True)
        self.sort_by = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"

    def __enter__(self):
        self.profile.__enter__()
        return self

    def __exit__(self, *exc):
        self.profile.__exit__(*exc)
        self.directory.mkdir(parents=True, exist_ok=True)
        suffix = f"_rank{distributed.rank()}" if distributed.world_size() > 1 else ""
        self.profile.export_chrome_trace(str(self.directory / f"pretrain_trace{suffix}.json"))
        table = self.profile.key_averages().table(sort_by=self.sort_by, row_limit=40)
        (self.directory / f"pretrain_top_ops{suffix}.txt").write_text(table)
        return False
