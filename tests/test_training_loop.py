"""The suite's one training loop (benchmark/nn/training.py): pretraining, fine-tuning and the
frozen heads train through it — its step, stopping rule, budget, resumption, log intervals and
divergence check — so their behaviour is pinned here once."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.nn.monitor import NonFiniteLossError
from benchmark.nn.training import EarlyStopping, OptimiserStep, TrainingLoop, Validation


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


def toy_loop(model: nn.Module, **kwargs) -> TrainingLoop:
    """A linear model fitted by plain SGD (no optimiser state: a resumed run needs only the weights)."""
    x = torch.linspace(-1, 1, 32).unsqueeze(1)
    y = 3 * x

    def loss(index: torch.Tensor) -> dict[str, torch.Tensor]:
        err = model(x[index]) - y[index]
        return {"loss": err.pow(2).mean(), "trivial/zero": y[index].pow(2).mean()}

    step = OptimiserStep(torch.optim.SGD(model.parameters(), lr=0.1), model.parameters())
    return TrainingLoop(model, step, loss, stage="toy", divergence_hint="lower it", records_per_step=8, **kwargs)


def shuffled(epoch: int):
    """The epoch's four batches of 8, in an order that depends on the epoch only."""
    order = torch.randperm(32, generator=torch.Generator().manual_seed(epoch))
    return [order[i : i + 8] for i in range(0, 32, 8)]


def linear(weight: float = 0.0) -> nn.Linear:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(weight)
    return model


class Recorder:
    def __init__(self):
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.logged.append((step, scalars))


def test_a_loop_by_steps_logs_each_interval_and_a_resumed_one_continues_the_data_order():
    monitor = Recorder()
    whole = toy_loop(linear(), log_every=4, monitor=monitor, prefix="pretrain", progress=False)
    whole.on_interval = lambda interval: {"vs_zero": interval.loss / interval.means["trivial/zero"]}
    whole.run(shuffled, 4, max_steps=10)
    assert whole.step == 10 and [step for step, _ in whole.loss_curve] == [4, 8, 10]  # the last interval is short
    assert [step for step, _ in monitor.logged] == [4, 8, 10]
    first = monitor.logged[0][1]
    assert set(first) == {
        "pretrain/loss",
        "pretrain/vs_zero",
        "pretrain/lr",
        "pretrain/grad_norm",
        "pretrain/throughput_ecgs_per_s",
    }
    assert first["pretrain/lr"] == pytest.approx(0.1) and first["pretrain/grad_norm"] == 0.0  # no clipping asked
    assert whole.loss_curve[-1][1] < whole.loss_curve[0][1]  # it learns

    every2 = toy_loop(linear(), log_every=2, progress=False)
    every2.run(shuffled, 4, max_steps=10)
    interrupted = toy_loop(linear(), log_every=2, progress=False)
    interrupted.run(shuffled, 4, max_steps=6)  # stopped mid-epoch 1, as at a checkpoint
    resumed = toy_loop(
        linear(interrupted.model.weight.item()), log_every=2, progress=False, step=6, loss_curve=interrupted.loss_curve
    )
    resumed.run(shuffled, 4, max_steps=10)
    assert resumed.model.weight.item() == every2.model.weight.item() == whole.model.weight.item()
    assert resumed.loss_curve == every2.loss_curve  # the same batches, in the same order


def test_a_validated_loop_stops_when_patience_runs_out_and_keeps_the_best_epochs_weights():
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])
    seen: list[float] = []
    model = linear()

    def score() -> float:
        seen.append(model.weight.item())
        return next(scores)

    monitor = Recorder()
    loop = toy_loop(model, validation=Validation(score, EarlyStopping(patience=2)), monitor=monitor, progress=False)
    loop.run(shuffled, 4, max_epochs=10)
    assert loop.history == [0.5, 0.7, 0.6, 0.65]  # epoch 3 is the second without a better score: stop
    assert loop.step == 16 and [step for step, _ in monitor.logged] == [4, 8, 12, 16]  # one interval an epoch
    assert monitor.logged[1][1]["train/val_macro_auroc"] == 0.7
    assert loop.best_state is not None and loop.best_state["weight"].item() == seen[1]
    assert model.weight.item() == seen[3]  # the loop leaves the last weights; the caller loads the best


def test_a_non_finite_loss_stops_the_loop_with_its_stage_step_and_curve():
    model = linear()
    step = OptimiserStep(torch.optim.SGD(model.parameters(), lr=0.1), model.parameters())
    calls = iter(range(100))

    def loss(batch: torch.Tensor) -> torch.Tensor:
        value = model(batch.float().unsqueeze(1)).pow(2).mean()
        return value * math.nan if next(calls) >= 5 else value

    loop = TrainingLoop(model, step, loss, stage="pretraining", divergence_hint="lower the lr", records_per_step=8)
    loop.log_every, loop.progress = 2, False
    with pytest.raises(NonFiniteLossError, match="pretraining loss became nan at step 6; lower the lr") as failure:
        loop.run(shuffled, 4, max_steps=10)
    assert failure.value.curve == loop.loss_curve and len(loop.loss_curve) == 2  # the intervals before it


def test_a_loop_needs_a_budget_and_validates_once_an_epoch():
    with pytest.raises(ValueError, match="max_steps or max_epochs"):
        toy_loop(linear(), progress=False).run(shuffled, 4)
    with pytest.raises(ValueError, match="once per epoch"):
        toy_loop(linear(), log_every=2, validation=Validation(lambda: 0.5, EarlyStopping(patience=1)))
