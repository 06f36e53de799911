"""Matched compute: budget syntax, steps per method, and the measured-FLOPs cache."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from benchmark.config import ConfigError, parse_overrides
from benchmark.run.build import build_method, method_spec
from benchmark.run.presets import PRESETS, Preset
from benchmark.run.runner import plan_budgets
from benchmark.train import budget as budget_module
from benchmark.train.budget import FlopsMeter, parse_budget, plan_pretraining


@pytest.mark.parametrize(
    "text, flops, method, steps",
    [
        ("steps", None, None, None),
        ("lamae", None, "lamae", None),
        ("600@lamae", None, "lamae", 600),
        ("3.2e15", 3.2e15, None, None),
        ("120T", 120e12, None, None),
        ("5g", 5e9, None, None),
    ],
)
def test_budget_syntax(text, flops, method, steps):
    parsed = parse_budget(text)
    assert (parsed.flops, parsed.method, parsed.method_steps) == (flops, method, steps)
    assert parsed.matched == (text != "steps")


@pytest.mark.parametrize("text", ["", "0", "0@lamae", "-5", "12X", "600@", "@lamae", "1e15 FLOPs"])
def test_bad_budgets_are_refused_with_the_valid_forms(text):
    with pytest.raises(ValueError, match="STEPS@METHOD"):
        parse_budget(text)
    with pytest.raises(ConfigError, match="budget"):
        PRESETS["smoke"].with_overrides(parse_overrides([f"pretrain.budget={text}"]))


def smoke_preset():
    return PRESETS["smoke"].with_overrides(parse_overrides(["pretrain.steps=200"]))


@pytest.fixture(scope="module")
def meter(tmp_path_factory):
    """Measurements shared by this module's tests (counting FLOPs costs several steps)."""
    return FlopsMeter(tmp_path_factory.mktemp("flops"), torch.device("cpu"))


def test_matched_budgets_agree_within_5_percent_and_costlier_methods_get_fewer_steps(meter):
    preset = smoke_preset()
    # LAMAE encoding 80 % of each lead (not half) makes its steps clearly costlier than the default's;
    # ind_p's twelve small encoders and decoders are cheaper
    specs = [method_spec(name, preset) for name in ("lamae", "lamae[mask_ratio=0.2]", "ind_p", "random_init")]
    plans = plan_budgets(specs, preset, meter)
    assert "random_init" not in plans  # nothing to pretrain
    budget = plans["lamae"].total_flops
    assert plans["lamae"].steps == 200 and plans["lamae"].budget_flops == budget
    for name, plan in plans.items():
        assert plan.budget_flops == budget
        assert abs(plan.total_flops / budget - 1) <= 0.05, (name, plan)
        assert plan.budget_error == pytest.approx(plan.total_flops / budget - 1)
    assert plans["lamae[mask_ratio=0.2]"].flops_per_step > 1.2 * plans["lamae"].flops_per_step
    assert plans["lamae[mask_ratio=0.2]"].steps < 200 * 0.85
    assert plans["ind_p"].flops_per_step < plans["lamae"].flops_per_step and plans["ind_p"].steps > 200


def test_flop_and_step_budgets(meter):
    preset = smoke_preset()
    lamae = build_method("lamae", preset)
    per_step = meter(lamae, 16)
    absolute = plan_pretraining(lamae, 200, 16, parse_budget(f"{per_step * 50:.6e}"), meter, None)
    assert absolute.steps == 50
    equal_steps = plan_pretraining(lamae, 200, 16, parse_budget("steps"), meter, None)
    assert equal_steps.steps == 200 and equal_steps.budget_flops is None and equal_steps.total_flops == 200 * per_step
    with pytest.raises(ValueError, match="does not pretrain"):
        plan_pretraining(lamae, 200, 16, parse_budget("random_init"), meter, lambda name: build_method(name, preset))


def test_flop_measurements_are_cached_per_configuration(tmp_path, monkeypatch):
    preset = smoke_preset()
    meter = FlopsMeter(tmp_path, torch.device("cpu"))
    first = meter(build_method("lamae", preset), 16)
    monkeypatch.setattr(budget_module, "pretrain_step_flops", lambda *a: pytest.fail("measured twice"))
    assert meter(build_method("lamae", preset), 16) == first
    assert len(list(tmp_path.glob("lamae_*.json"))) == 1
    monkeypatch.setattr(budget_module, "pretrain_step_flops", lambda *a: 123)
    assert meter(build_method("lamae[la_depth=1]", preset), 16) == 123  # new config


def test_budget_sweep_points_are_multiples_of_the_preset_budget_or_flop_counts():
    from benchmark.train.budget import budget_at, parse_budget_points

    assert parse_budget_points("0.25x,1x,4x") == ["0.25x", "1x", "4x"]
    assert parse_budget_points("3e12, 120T") == ["3e12", "120T"]
    assert budget_at("0.25x", "lamae", 600) == ("150@lamae", 600)
    assert budget_at("4x", "600@lamae[la_skip=true]", 100) == ("2400@lamae[la_skip=true]", 100)
    assert budget_at("2x", "3e12", 600) == ("6e+12", 600)
    assert budget_at("0.5x", "steps", 600) == ("steps", 300)
    assert budget_at("120T", "lamae", 600) == ("120T", 600)
    for budget in ("lamae", "600@lamae", "3e12", "steps"):  # 1x is the preset's run itself
        assert budget_at("1x", budget, 600) == budget_at("1.0x", budget, 600) == (budget, 600)
    for bad in ("0x", "-1x", "4", "fourx", "1x", "1x,1x", "0"):
        with pytest.raises(ValueError, match="0.25x,1x,4x"):
            parse_budget_points(bad)


@pytest.mark.parametrize("argv", [["--budgets", "0x,1x"], ["--budgets", "1x,2x", "--budget", "steps"]])
def test_bad_budget_sweeps_are_one_line_and_exit_2(argv, tmp_path, capsys):
    from benchmark.cli import main

    assert main(["run", "--methods", "lamae", "--preset", "smoke", "--results", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "budget" in err[0]


@pytest.mark.slow
def test_a_budget_sweep_runs_each_point_into_its_folder_and_adds_the_budget_section(tmp_path):
    from conftest import run_cli

    out = tmp_path / "sweep"
    common = ["--preset", "smoke", "--protocols", "linear", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    result = run_cli("run", "--methods", "lamae,ind_p", "--budgets", "0.5x,1x", "--results", str(out), *common)
    assert result.returncode == 0, result.stderr[-3000:]
    for point, steps, budget in (("0.5x", 3, "3@lamae"), ("1x", 6, "lamae")):  # smoke: LAMAE's FLOPs in 6 steps
        record = json.loads((out / f"budget-{point}/synthetic/conditions/smoke/lamae/linear_seed0.json").read_text())
        assert record["compute"]["pretrain"]["steps"] == steps
        assert record["config"]["pretrain"]["budget"] == budget
    board = (tmp_path / "sweep.md").read_text()
    assert "## Pretraining budget" in board and board.count("## synthetic · conditions · preset `smoke` · linear") == 2
    again = run_cli("run", "--methods", "lamae,ind_p", "--budgets", "0.5x,1x", "--results", str(out), *common)
    assert again.stderr.count("finished already, 0 to run") == 2  # each point resumes on its own
    plain = run_cli("run", "--methods", "lamae,ind_p", "--results", str(out / "budget-1x"), *common)
    assert "4 cells: 4 finished already, 0 to run" in plain.stderr  # the 1x point is the preset's run (+2 refs)


def test_the_cpu_long_preset_is_the_regime_studys_32x_runs(meter):
    """docs/pretraining-regime.md: the study's "32x" runs (19,200 steps of the LAMAE of the earlier
    masking) are `cpu-long`'s computation — the `cpu` preset with nothing changed but the budget, and
    the same steps (so the same schedules) for each method."""
    cpu, long = PRESETS["cpu"], PRESETS["cpu-long"]
    assert list(PRESETS) == ["smoke", "cpu", "cpu-long", "paper"]  # `list` shows them by scale
    differ = {f.name for f in dataclasses.fields(Preset) if getattr(cpu, f.name) != getattr(long, f.name)}
    assert differ == {"name", "description", "pretrain"}
    assert dataclasses.replace(long.pretrain, steps=cpu.pretrain.steps) == cpu.pretrain
    plans = plan_budgets([method_spec(name, long) for name in ("lamae", "ind_p", "st_mem")], long, meter)
    assert {name: plan.steps for name, plan in plans.items()} == {"lamae": 12_150, "ind_p": 16_310, "st_mem": 18_555}
    study = plan_budgets([method_spec("lamae[la_mask_ratio=0.5,mask_ratio=0.75]", cpu)], cpu, meter)
    study_budget = 19_200 * study["lamae[la_mask_ratio=0.5,mask_ratio=0.75]"].flops_per_step  # the 32x runs'
    assert plans["lamae"].budget_flops == pytest.approx(study_budget, rel=1e-4)
