"""One fine-tuning recipe for every method, and grids that bracket their choice (issue 21, items
1 and 2): benchmark/eval/protocols/finetune.py, benchmark/eval/tuning.py, the probes' grids and
the leaderboard's Δ FT − LP column and edge marks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_baselines import built, context, quick_finetune
from test_leaderboard import table_rows, write_cell

from benchmark.eval.protocols.finetune import COMPUTE_RULE, Finetune, FinetuneConfig, Recipe
from benchmark.eval.protocols.linear import LinearProbeConfig, fit_probe
from benchmark.eval.tuning import Tuning
from benchmark.registry import METHODS
from benchmark.report.leaderboard import write_leaderboard
from benchmark.run.presets import PRESETS
from benchmark.run.results import ResultStore

FINE_TUNED = [name for name in METHODS.names() if "finetune" in METHODS.get(name).evaluations]


# -- item 1: one recipe ------------------------------------------------------------------------------
def budget_of(details: dict) -> dict:
    """What must be equal for every method of a fine-tuning table."""
    recipe = details["recipe"]
    return {k: recipe[k] for k in ("compute_rule", "max_epochs", "patience", "warmup_epochs", "early_stopping")}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_gives_supervised_and_pretrained_methods_one_budget(preset):
    """The regression of issue 21: ``finetune.supervised.epochs`` was a floor and a FLOP budget
    raised it further, so supervised references trained 30-69 epochs against the pretrained
    encoders' 4. Every fine-tuned method of every preset now gets the same epochs, patience,
    warmup, early-stopping rule, compute rule, drop_path and optimiser; only layer decay (1 from
    random init) and the head's start follow the initial weights."""
    cfg = PRESETS[preset].protocol_config("finetune", FinetuneConfig)
    recipes = {name: Recipe.of(cfg, METHODS.get(name)) for name in FINE_TUNED}
    assert {r.pretrained for r in recipes.values()} == {True, False}  # both kinds are compared
    for steps_per_epoch in (1, 14, 1000):
        assert len({str(r.budget(steps_per_epoch)) for r in recipes.values()}) == 1
    assert {(r.epochs, r.patience, r.drop_path) for r in recipes.values()} == {
        (cfg.epochs, cfg.patience, cfg.drop_path)
    }
    for recipe in recipes.values():
        assert dataclasses.replace(recipe.optim, layer_decay=1.0) == dataclasses.replace(cfg.optim, layer_decay=1.0)
    for name, recipe in recipes.items():
        supervised = METHODS.get(name).supervised_only()
        assert recipe.optim.layer_decay == (1.0 if supervised else cfg.optim.layer_decay), name
        assert recipe.head_init == (cfg.supervised_head_init if supervised else cfg.head_init), name
    assert recipes["lamae"].budget(14)["compute_rule"] == COMPUTE_RULE == "equal epochs, no FLOP cap"


def test_a_finetuning_table_records_one_budget_for_every_method(toy_arrays):
    """Run fine-tuning for pretrained (lamae) and supervised (scratch, xresnet1d) methods with
    one configuration: the budget each result records is the same, and no candidate trained
    longer than it (an early-stopped or diverged candidate trains less)."""
    protocol = quick_finetune(epochs=3, patience=1)
    details = {
        name: protocol.run(context(toy_arrays, built(name))).details for name in ("lamae", "scratch", "xresnet1d")
    }
    budgets = {name: budget_of(d) for name, d in details.items()}
    assert budgets["lamae"] == budgets["scratch"] == budgets["xresnet1d"]
    assert budgets["lamae"]["max_epochs"] == 3 and budgets["lamae"]["patience"] == 1
    assert budgets["lamae"]["compute_rule"] == COMPUTE_RULE
    for name, d in details.items():
        assert max(d["tuning"]["epochs_run"]) <= 3, name
    assert details["scratch"]["recipe"]["layer_decay"] == 1.0
    assert details["lamae"]["recipe"]["layer_decay"] == protocol.config.optim.layer_decay


def test_an_override_of_the_recipe_reaches_every_method():
    """``--set finetune.epochs=7`` (or patience, warmup) changes the supervised references' budget
    too: no second recipe keeps its own."""
    preset = PRESETS["cpu"].with_overrides({"finetune": {"epochs": "7", "patience": "3", "optim.warmup_frac": "0.2"}})
    cfg = preset.protocol_config("finetune", FinetuneConfig)
    for name in ("lamae", "scratch", "xresnet1d"):
        recipe = Recipe.of(cfg, METHODS.get(name))
        assert (recipe.epochs, recipe.patience, recipe.optim.warmup_frac) == (7, 3, 0.2), name
        assert recipe.budget(10)["warmup_epochs"] == 2  # int(0.2 * 7 * 10) = 14 steps: 2 epochs
    with pytest.raises(ValueError, match="max_lr_extensions"):
        FinetuneConfig(max_lr_extensions=-1)


# -- item 2: grids that bracket ----------------------------------------------------------------------
def search(grid, objective, max_extensions, param="base_lr") -> Tuning:
    """Run a Tuning over ``grid`` scoring each value with ``objective``."""
    tuning = Tuning(param, max_extensions)
    for value in tuning.values(grid):
        tuning.add(value, objective(value))
    return tuning


def peaked_at(optimum: float):
    return lambda value: 0.9 - abs(np.log10(value / optimum)) / 10


def test_an_edge_choice_extends_the_grid_by_its_step_until_interior():
    tuning = search([1e-4, 3e-4, 1e-3], peaked_at(2e-2), max_extensions=5)
    assert tuning.extended == pytest.approx([1e-3 * (10 / 3) ** k for k in (1, 2, 3)])  # the top step, 3.33x
    assert tuning.chosen == pytest.approx(1e-3 * (10 / 3) ** 2) and tuning.edge is None
    record = tuning.record()
    assert record["edge"] is None and record["limit"] is None and record["extended"] == tuning.extended
    assert record["grid"] == [1e-4, 3e-4, 1e-3, *tuning.extended]  # every value tried, extensions last

    downward = search([100.0, 10.0, 1.0], peaked_at(0.05), max_extensions=5, param="l2")
    assert downward.extended == [0.1, 0.01] and downward.chosen == 0.1  # no float noise: 0.01
    assert search([1e-4, 3e-4, 1e-3], peaked_at(3e-4), max_extensions=5).extended == []  # interior: no cost


def test_the_search_stops_at_its_stated_limit_and_records_the_edge():
    tuning = search([0.3, 1.0, 3.0], lambda v: v / 100, max_extensions=2)  # better and better upwards
    assert tuning.extended == [9.0, 27.0] and tuning.chosen == 27.0
    record = tuning.record()
    assert record["edge"] == "high" and record["limit"] == "2 extensions (the most allowed)"
    none = search([0.3, 1.0, 3.0], lambda v: -v, max_extensions=0).record()
    assert none["edge"] == "low" and none["extended"] == [] and "0 extensions" in none["limit"]

    zero = search([1.0, 0.0], lambda v: 1 - v, max_extensions=3, param="l2").record()  # no regularisation is best
    assert zero["edge"] == "low" and zero["extended"] == [] and zero["limit"] == "l2 0 cannot be stepped from"
    only = search([1.0], lambda v: 0.7, max_extensions=3).record()
    assert only["edge"] == "only" and only["extended"] == [] and "one value" in only["limit"]
    unscorable = search([1.0, 3.0], lambda v: float("nan"), max_extensions=3).record()
    assert unscorable["extended"] == [] and unscorable["limit"] == "no value could be scored"


def test_a_diverged_value_beyond_the_choice_brackets_it():
    """A learning rate whose training diverged (NaN) above the best one bounds the search like a
    lower score would: the choice is interior and nothing is added."""
    tuning = search([0.3, 1.0, 3.0], lambda v: float("nan") if v > 2 else v, max_extensions=3)
    assert tuning.chosen == 1.0 and tuning.edge is None and tuning.extended == []


def test_the_linear_probe_extends_its_l2_grid_as_if_the_wider_grid_had_been_given():
    """Warm starts from the nearest strength tried make an extended search identical, fit for fit,
    to a search over the wider grid given up front."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((600, 4))
    x = np.concatenate([z[:, :1] + 0.1 * z[:, 1:2], z[:, :1], z[:, 2:]], axis=1)  # two near-collinear columns
    y = ((x[:, 0] - x[:, 1]) * 10 + 0.3 * rng.standard_normal(600) > 0)[:, None]  # their small difference
    x_t, y_t = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    train, val = (x_t[:400], y_t[:400]), (x_t[400:], y_t[400:])
    # validation macro AUROC 0.47, 0.49, 0.62, 0.92, 0.96 from 1e3 to 0.1: each weaker strength clearly
    # better (a grid of far stronger ones is a tie of ~0.472s, which float summation orders either way)
    extended = fit_probe(train, val, LinearProbeConfig(l2_grid=(1e3, 1e2), max_iter=100, max_extensions=3), False)
    record = extended.tuning.record()
    assert record["extended"] == [1e1, 1e0, 1e-1]  # far too strong: extended downwards, to the limit
    assert record["chosen"] == 1e-1 and record["edge"] == "low" and record["limit"] == "3 extensions (the most allowed)"
    wider = fit_probe(
        train, val, LinearProbeConfig(l2_grid=(1e3, 1e2, 1e1, 1e0, 1e-1), max_iter=100, max_extensions=0), False
    )
    assert wider.tuning.val_macro_auroc == extended.tuning.val_macro_auroc
    assert torch.equal(wider.weight, extended.weight) and wider.l2 == extended.l2


def test_finetuning_extends_its_learning_rate_grid_and_records_it(toy_arrays, monkeypatch):
    """Validation scores that rise with the learning rate put the choice at the top of the grid:
    fine-tuning trains one more candidate per grid step (×3) until its limit, and records the
    learning rates, multipliers, epochs run and the edge."""
    train = Finetune.train

    def scored_by_lr(self, ctx, recipe, base_lr, *args, **kwargs):
        candidate = train(self, ctx, recipe, base_lr, *args, **kwargs)
        candidate.val_macro_auroc = float(np.log10(base_lr))  # higher is better
        return candidate

    monkeypatch.setattr(Finetune, "train", scored_by_lr)
    protocol = quick_finetune(lr_grid=(0.3, 1.0, 3.0), max_lr_extensions=2)
    details = protocol.run(context(toy_arrays, built("lamae"))).details
    tuning = details["tuning"]
    assert tuning["lr_multipliers"] == pytest.approx([0.3, 1.0, 3.0, 9.0, 27.0])
    assert tuning["extended"] == pytest.approx([protocol.config.optim.base_lr * m for m in (9.0, 27.0)])
    assert len(tuning["epochs_run"]) == len(tuning["grid"]) == 5
    assert tuning["chosen"] == pytest.approx(27 * protocol.config.optim.base_lr)
    assert tuning["edge"] == "high" and tuning["limit"] == "2 extensions (the most allowed)"


# -- the leaderboard ---------------------------------------------------------------------------------
def test_finetuning_tables_show_the_linear_probe_and_mark_edge_choices(tmp_path):
    store = ResultStore(tmp_path / "results")
    probe_skill = {"lamae": 1.0, "ind_p": 1.2}
    for seed in (0, 1):
        for method, skill in (("lamae", 1.5), ("ind_p", 1.1), ("scratch", 1.3)):
            chosen = {"lamae": 1e-3, "ind_p": 3e-4, "scratch": 1e-4}[method]
            tuning = {"tuning": {"param": "base_lr", "grid": [1e-4, 3e-4, 1e-3], "chosen": chosen}}
            write_cell(store, method, seed, skill, protocol="finetune", details=tuning, downstream={"flops": 1e11})
        for method, skill in probe_skill.items():
            write_cell(store, method, seed, skill)
    write_cell(store, "lamae", 2, 1.5, protocol="finetune")  # a seed without a linear probe
    write_leaderboard(store.root, tmp_path / "LB.md")
    board = (tmp_path / "LB.md").read_text()
    rows = table_rows(board, "· finetune")
    header = [cell.strip() for cell in rows["method"].split("|")]
    assert "linear probe (Δ FT − LP)" in header
    cells = {m: dict(zip(header, (c.strip() for c in rows[m].split("|")))) for m in ("lamae", "ind_p", "scratch")}
    records = list(store.records())

    def auroc(method, protocol, seed):
        (record,) = [
            r
            for r in records
            if r["cell"]["method"] == method and r["cell"]["protocol"] == protocol and r["cell"]["seed"] == seed
        ]
        return record["metrics"]["macro_auroc"]

    for method in probe_skill:
        lp = np.mean([auroc(method, "linear", s) for s in (0, 1)])
        delta = np.mean([auroc(method, "finetune", s) - auroc(method, "linear", s) for s in (0, 1)])
        suffix = ", seeds 0, 1" if method == "lamae" else ""  # lamae's seed 2 has no probe to pair with
        assert cells[method]["linear probe (Δ FT − LP)"] == f"{lp:.4f} ({delta:+.4f}{suffix})"
    assert cells["scratch"]["linear probe (Δ FT − LP)"] == "—"  # not probed: a supervised reference
    assert cells["ind_p"]["tuned on val"] == "lr 3e-4 ×2"  # interior: unmarked
    assert cells["scratch"]["tuned on val"] == "lr 1e-4↓ ×2"
    assert cells["lamae"]["tuned on val"] == "lr 1e-3↑ ×2"  # seed 2 recorded no tuning
    assert "linear probe (Δ FT − LP)" not in table_rows(board, "· linear")["method"]
