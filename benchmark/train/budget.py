"""Matched-compute pretraining: turn a compute budget into a number of steps per method.

A method that spends more FLOPs per step (more leads encoded, a bigger decoder) gets fewer
steps, so every method spends the same total pretraining FLOPs (docs/design.md). FLOPs per step
are counted on the real model and batch shape by rules this suite owns and pins
(:mod:`benchmark.train.flops`: forward + backward at the preset's batch size), so the same model
gets the same number of steps under every torch version. The budget is ``pretrain.budget``
(``--budget``):

* ``steps`` — no matching: every method runs ``pretrain.steps`` steps (FLOPs still recorded);
* ``lamae`` (any method name) — the FLOPs that method spends in ``pretrain.steps`` steps
  (the presets' default: matched to LAMAE, the method this suite was built around);
* ``600@lamae`` — the FLOPs of 600 steps of that method, whatever ``pretrain.steps`` says;
  a method variant works in both forms (``lamae[la_tokens=patch]``, ``600@lamae[la_tokens=patch]``);
* ``3.2e15``, ``3.2P``, ``120T``, ``5e12`` — a FLOP count (SI suffixes K, M, G, T, P, E).

steps = round(budget / FLOPs per step), at least 1; the achieved total is within half a step
of the budget and recorded with it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.config import ConfigError, signature
from benchmark.method.base import Method
from benchmark.storage import DamagedFileError, atomic_write, read_json
from benchmark.train.flops import RULES, pretrain_step_flops, synthetic_batch

log = logging.getLogger("benchmark")

SI = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_FLOPS = re.compile(r"^(\d+(?:\.\d*)?(?:e\+?\d+)?)([KMGTPE]?)$", re.IGNORECASE)
_STEPS_OF = re.compile(r"^(\d+)@([A-Za-z_][\w-]*(?:\[.*\])?)$")
_METHOD = re.compile(r"^[A-Za-z_][\w-]*(?:\[.*\])?$")  # a method or a variant, lamae[la_tokens=patch]


@dataclass(frozen=True)
class Budget:
    """A parsed ``pretrain.budget``: exactly one of ``flops`` or ``method`` set, or neither
    (``steps``: every method runs the configured steps)."""

    text: str
    flops: float | None = None
    method: str | None = None  # reference method ...
    method_steps: int | None = None  # ... and its steps (None: pretrain.steps)

    @property
    def matched(self) -> bool:
        return self.flops is not None or self.method is not None


def parse_budget(text: str) -> Budget:
    text = text.strip()
    if text == "steps":
        return Budget(text)
    if match := _FLOPS.match(text):
        flops = float(match.group(1)) * SI.get(match.group(2).upper(), 1.0)
        if flops > 0:
            return Budget(text, flops=flops)
    elif match := _STEPS_OF.match(text):
        if int(match.group(1)) > 0:
            return Budget(text, method=match.group(2), method_steps=int(match.group(1)))
    elif _METHOD.match(text):
        return Budget(text, method=text)
    raise ValueError(
        f"budget {text!r}: use 'steps' (no matching), a method name (its FLOPs in pretrain.steps "
        f"steps, e.g. lamae), STEPS@METHOD (e.g. 600@lamae) or a FLOP count (e.g. 3.2e15, 120T)"
    )


_MULTIPLE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)x$", re.IGNORECASE)


def parse_budget_points(text: str) -> list[str]:
    """``--budgets 0.25x,1x,4x`` (multiples of the preset's budget) or FLOP counts (``3e12,1.2e13``):
    the points of a pretraining-budget sweep, each checked; a ValueError names the valid form."""
    points = [p.strip() for p in text.split(",") if p.strip()]
    for point in points:
        multiple = _MULTIPLE.match(point)
        try:
            flops = parse_budget(point).flops if _FLOPS.match(point) else None
        except ValueError:  # a FLOP count of 0
            flops = None
        if not ((multiple and float(multiple.group(1)) > 0) or flops):
            raise ValueError(
                f"budget point {point!r}: give positive multiples of the preset's budget (0.25x,1x,4x) or FLOP "
                f"counts (3e12,1.2e13, 120T)"
            )
    if len(set(points)) != len(points) or len(points) < 2:
        raise ValueError(f"--budgets {text!r}: give at least two distinct points, e.g. 0.25x,1x,4x")
    return points


def budget_at(point: str, budget: str, steps: int) -> tuple[str, int]:
    """The ``pretrain.budget`` and ``pretrain.steps`` of one sweep point, from the preset's
    ``budget`` and ``steps``: ``k x`` scales the budget (``lamae`` -> ``round(k * steps)@lamae``,
    ``600@lamae`` -> ``round(k * 600)@lamae``, a FLOP count -> k times it, ``steps`` -> k times the
    steps); a FLOP count replaces it. ``1x`` is the preset's budget as written, so the sweep's 1x
    point has the identity of the run without ``--budgets`` and reuses its cells and checkpoints
    (a run into ``RESULTS/budget-1x/`` is that point) instead of recomputing them."""
    multiple = _MULTIPLE.match(point)
    if not multiple:
        return point, steps
    k = float(multiple.group(1))
    if k == 1:
        return budget, steps
    parsed = parse_budget(budget)
    if parsed.flops is not None:
        return f"{k * parsed.flops:.6g}", steps
    if parsed.method is not None:
        return f"{max(1, round(k * (parsed.method_steps or steps)))}@{parsed.method}", steps
    return budget, max(1, round(k * steps))


@dataclass(frozen=True)
class PretrainPlan:
    """How long one method pretrains and what that costs."""

    steps: int
    flops_per_step: int
    budget: str  # the budget as given
    budget_flops: float | None  # None for the 'steps' budget

    @property
    def total_flops(self) -> int:
        return self.steps * self.flops_per_step

    @property
    def budget_error(self) -> float | None:
        """Relative deviation of the achieved total from the budget."""
        return None if self.budget_flops is None else self.total_flops / self.budget_flops - 1.0

    def as_record(self) -> dict:
        return {
            "steps": self.steps,
            "flops_per_step": self.flops_per_step,
            "total_flops": self.total_flops,
            "budget": self.budget,
            "budget_flops": self.budget_flops,
            "budget_error": self.budget_error,
            "flop_rules": RULES,
        }


class FlopsMeter:
    """FLOPs per pretraining step by the suite's own counting rules (:mod:`benchmark.train.flops`),
    once per (method, config, input, batch size, rules); cached as JSON under ``cache_dir``. The
    key holds no library version: the count depends on the model and the batch only."""

    def __init__(self, cache_dir: Path | None, device: torch.device):
        self.cache_dir, self.device = cache_dir, device

    def __call__(self, method: Method, batch_size: int) -> int:
        key = signature(
            {
                "method": method.name,
                "config": method.config,
                "input": method.input_spec,
                "batch_size": batch_size,
                "rules": RULES,
            }
        )
        path = None if self.cache_dir is None else self.cache_dir / f"{method.name}_{key}.json"
        if path is not None and path.exists():
            try:
                return int(read_json(path, "it is measured again")["flops_per_step"])
            except (DamagedFileError, KeyError, TypeError, ValueError) as exc:
                log.warning("%s", exc if isinstance(exc, DamagedFileError) else f"{path} is damaged; measuring again")
        method.to(self.device)
        flops = pretrain_step_flops(method, synthetic_batch(method, batch_size).to(self.device))
        if path is not None:  # ranks and concurrent runs may race: each writes the same value atomically
            record = {"flops_per_step": flops, "method": method.name, "batch_size": batch_size, "rules": RULES}
            atomic_write(path, json.dumps(record))
        return flops


def plan_pretraining(
    method: Method,
    steps: int,
    batch_size: int,
    budget: Budget,
    measure: FlopsMeter,
    build_reference,
    name: str | None = None,
) -> PretrainPlan:
    """Steps for ``method`` under ``budget``. ``build_reference(name)`` instantiates the
    reference method of a method-relative budget (measured at the same batch size); ``name`` is
    the method's name in the run (a variant such as ``lamae[la_tokens=patch]`` is not the
    reference ``lamae`` although its class is)."""
    flops_per_step = measure(method, batch_size)
    if not budget.matched:
        return PretrainPlan(steps, flops_per_step, budget.text, None)
    if budget.flops is not None:
        budget_flops = budget.flops
    else:
        reference = method if budget.method == (name or method.name) else build_reference(budget.method)
        if not reference.pretrains:
            raise ConfigError(f"budget {budget.text!r}: {budget.method} does not pretrain; name a pretraining method")
        budget_flops = float(measure(reference, batch_size) * (budget.method_steps or steps))
    plan = PretrainPlan(max(1, round(budget_flops / flops_per_step)), flops_per_step, budget.text, budget_flops)
    error = plan.budget_error  # never None here: the plan has budget_flops
    if error is not None and abs(error) > 0.05:
        log.warning(
            "%s: %d steps spend %.3g FLOPs, %.1f %% off the budget of %.3g (budget too small for whole steps)",
            name or method.name,
            plan.steps,
            plan.total_flops,
            100 * error,
            budget_flops,
        )
    return plan
