"""Self-supervised pretraining: a fixed number of optimiser steps over the pretraining split,
checkpointed so that a killed run resumes where it stopped and gives the same weights."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .budget import parse_budget
from .data import ECGArrays, make_loader
from .method import Method
from .training import OptimConfig, require_positive, atomic_torch_save, autocast, build_optimizer, rng_state, set_rng_state


@dataclass
class PretrainConfig:
    steps: int = 2000  # of every method ('steps' budget) or of the budget's reference method
    budget: str = "steps"  # matched compute, see benchmark/budget.py: steps | lamae | 600@lamae | 3.2e15
    batch_size: int = 64
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every: int = 200
    log_every: int = 25
    num_workers: int = 0

    def __post_init__(self):
        require_positive(self, "steps", "batch_size", "checkpoint_every", "log_every")
        parse_budget(self.budget)
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


@dataclass
class PretrainReport:
    steps: int
    wall_s: float
    final_loss: float
    loss_curve: list[tuple[int, float]]
    peak_memory_mb: float | None = None


class NonFiniteLossError(RuntimeError):
    pass


def pretrain(method: Method, arrays: ECGArrays, cfg: PretrainConfig, seed: int, device: torch.device,
             checkpoint_dir: Path, progress: bool = True) -> PretrainReport:
    """Train ``method.pretrain_loss`` for ``cfg.steps`` steps; resumable from ``checkpoint_dir``.

    ``final.pt`` holds the finished weights and report (reused as is); ``last.pt`` holds the
    latest periodic state (weights, optimiser, scheduler, RNG, step) to resume from.
    """
    final_path, last_path = checkpoint_dir / "final.pt", checkpoint_dir / "last.pt"
    if final_path.exists():
        state = torch.load(final_path, map_location="cpu", weights_only=False)
        method.load_state_dict(state["model"])
        return PretrainReport(**state["report"])

    method.to(device).train()
    optimizer, scheduler = build_optimizer(method, cfg.optim, cfg.batch_size, cfg.steps, method.no_weight_decay)
    loader = make_loader(arrays, arrays.splits["pretrain"], method.input_spec.window, cfg.batch_size,
                         train=True, seed=seed, num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    if len(loader) == 0:
        raise ValueError(f"{arrays.name}: pretraining split ({len(arrays.splits['pretrain'])} records) "
                         f"is smaller than one batch of {cfg.batch_size}")
    step, loss_curve, elapsed = 0, [], 0.0
    if last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, loss_curve, elapsed = state["step"], state["loss_curve"], state["wall_s"]
        set_rng_state(state["rng"])

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, desc=f"pretrain {method.name}", unit="step",
               disable=not progress, dynamic_ncols=True)
    running = torch.zeros((), device=device)
    epoch, skip = divmod(step, len(loader))
    while step < cfg.steps:
        loader.batch_sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i < skip:
                continue
            batch = batch.to(device, non_blocking=True)
            method.on_train_step(step, cfg.steps)
            scheduler.step_update(step)
            with autocast(device):
                loss = method.pretrain_loss(batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            running += loss.detach()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
                mean_loss = running.item() / n  # the only host sync: once per log interval
                if not math.isfinite(mean_loss):
                    raise NonFiniteLossError(f"{method.name}: pretraining loss became {mean_loss} at step {step}; "
                                             f"lower the learning rate (--set pretrain.base_lr=...)")
                loss_curve.append((step, mean_loss))
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                running.zero_()
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                atomic_torch_save({"model": method.state_dict(), "optimizer": optimizer.state_dict(),
                                   "step": step, "loss_curve": loss_curve, "rng": rng_state(),
                                   "wall_s": time.perf_counter() - started}, last_path)
            if step >= cfg.steps:
                break
        epoch, skip = epoch + 1, 0
    bar.close()
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    report = PretrainReport(step, time.perf_counter() - started, loss_curve[-1][1], loss_curve, peak)
    atomic_torch_save({"model": method.state_dict(), "report": report.__dict__}, final_path)
    last_path.unlink(missing_ok=True)
    return report

