"""The step and the stopping rule every training loop shares (benchmark/nn/training.py):
pretraining, fine-tuning and the frozen heads take their optimiser steps and keep their best
epoch through them, so their behaviour is pinned here once."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.nn.training import EarlyStopping, OptimiserStep


def test_the_first_epoch_is_kept_and_an_undefined_score_ranks_below_every_other():
    stopping = EarlyStopping(patience=2)
    assert stopping.improved(0, math.nan) and stopping.best_epoch == 0
    assert stopping.improved(1, 0.3)
    assert not stopping.improved(2, math.nan) and not stopping.improved(3, 0.3)  # equal is not better
    assert stopping.best_epoch == 1 and stopping.best_score == 0.3
    assert not stopping.should_stop(2) and stopping.should_stop(3)


def test_patience_counts_from_the_end_of_the_warmup():
    stopping = EarlyStopping(patience=2, min_epochs=5)
    assert stopping.improved(0, 0.9)
    assert not any(stopping.should_stop(epoch) for epoch in range(1, 6))  # the best epoch 0 lies in the warmup
    assert stopping.should_stop(6)


class Schedule:
    def __init__(self):
        self.updates: list[int] = []

    def step_update(self, num_updates: int) -> None:
        self.updates.append(num_updates)


def test_a_step_clips_the_global_norm_and_reports_it_before_clipping():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = Schedule()
    step = OptimiserStep(
        optimizer, model.parameters(), grad_clip=0.5, schedule=schedule, amp_device=torch.device("cpu")
    )
    x = torch.full((1, 4), 3.0)  # d(sum(w.x))/dw = x: norm 6 before clipping
    out = step.step(lambda inputs: {"loss": model(inputs).sum(), "other": torch.ones(())}, x, index=7)
    assert set(out) == {"loss", "other"} and schedule.updates == [7]
    assert torch.allclose(model.weight, torch.full((1, 4), 1.0 - 0.25))  # clipped to norm 0.5: 0.25 each
    step.step(lambda inputs: model(inputs).sum(), x, index=8)
    assert step.mean_grad_norm(2) == pytest.approx(6.0)  # both steps' norms, before clipping
    assert step.mean_grad_norm(1) == 0.0  # the interval restarted


def test_an_unclipped_step_leaves_the_gradient_whole_and_a_scheduled_one_needs_its_index():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    step = OptimiserStep(torch.optim.SGD(model.parameters(), lr=1.0), model.parameters())
    step.step(lambda: model(torch.full((1, 4), 3.0)).sum())
    assert torch.allclose(model.weight, torch.full((1, 4), -3.0))
    scheduled = OptimiserStep(torch.optim.SGD(model.parameters(), lr=1.0), model.parameters(), schedule=Schedule())
    with pytest.raises(ValueError, match="index"):
        scheduled.step(lambda: model(torch.ones(1, 4)).sum())
