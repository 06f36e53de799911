"""The informed non-learned predictors of the pretraining regime study
(benchmarks/pretraining_regime.py): the numbers docs/pretraining-regime.md quotes mean what it says
only if each predictor reaches ~0 where its information is complete."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pretraining_regime.py"


def regime():
    spec = importlib.util.spec_from_file_location("pretraining_regime", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def periodic(records: int, period: int, t: int = 500, seed: int = 0) -> np.ndarray:
    """Beats of one shape every ``period`` samples (a sharp spike on a slow wave), 12 leads that
    are fixed linear mixtures of two source signals, as a dipole projected onto leads."""
    rng = np.random.default_rng(seed)
    steps = np.arange(t)
    sources = []
    for _ in range(records):
        phase = rng.integers(period)
        beat = np.exp(-0.5 * (((steps + phase) % period - period / 2) / 2.0) ** 2)
        sources.append(np.stack([beat, np.sin(2 * np.pi * (steps + phase) / period)]))
    mixing = rng.normal(size=(12, 2))
    return np.einsum("lk,bkt->blt", mixing, np.stack(sources))


def test_one_beat_away_copies_a_perfectly_periodic_lead():
    x = periodic(8, period=83)
    visible = np.ones(x.shape, bool)
    visible[:, :, 200:225] = False  # a hidden patch; one period before and after are visible
    mean = np.where(visible, x, 0).sum(2, keepdims=True) / visible.sum(2, keepdims=True)
    predicted = regime().one_beat_away(np.where(visible, x, 0.0), visible, mean, 30, 200)
    np.testing.assert_allclose(predicted[:, :, 200:225], x[:, :, 200:225], atol=1e-9)


def test_the_oracles_read_structure_where_there_is_some_and_none_in_noise():
    """On periodic rank-2 leads the beat-away and other-lead predictors are far below the trivial
    loss (not 0: where no beat one or two periods away is visible the lead's mean stands in, and
    one linear map serves every pattern of hidden leads); on white noise nothing beats it."""
    oracles = regime().oracle_ratios
    structured = oracles(periodic(16, period=90), np.ones((16, 12), bool), patch=25, mask_ratio=0.5)
    assert structured["one beat away"] < 0.3 and structured["other leads"] < 0.2, structured
    assert structured["interpolation"] > 1, structured  # a hidden spike is not interpolated
    noise = np.random.default_rng(1).normal(size=(16, 12, 500))
    for name, ratio in oracles(noise, np.ones((16, 12), bool), patch=25, mask_ratio=0.5).items():
        assert ratio > 0.97, (name, ratio)


def test_the_first_step_below_the_target_reads_each_interval_against_its_own_trivial_loss():
    first_below = regime().first_below
    loss_curve = [(20, 0.9), (40, 0.7), (60, 0.5), (80, 0.4)]
    trivial_curve = [
        (20, {"zero": 1.0, "visible_mean": 0.95}),
        (40, {"zero": 1.0}),
        (60, {"zero": 0.8}),
        (80, {"zero": 1.0}),
    ]
    assert first_below(loss_curve, trivial_curve, 0.6) == 80  # 60: 0.5 / 0.8 = 0.625, not yet
    assert first_below(loss_curve, trivial_curve, 0.3) is None
    assert first_below([], [], 0.6) is None


def test_a_method_subset_keeps_the_settings_order_and_refuses_a_method_it_does_not_run():
    select = regime().select
    assert select("lamae,ind_p,st_mem", "st_mem,lamae", "16x") == "lamae,st_mem"
    variant = "lamae[la_skip=true,la_tokens=lead]"  # commas inside brackets belong to the variant
    assert select(variant, variant, "lead-level") == variant
    with pytest.raises(SystemExit, match="runs only lamae,ind_p"):
        select("lamae,ind_p", "st_mem", "lr x4")


def test_the_curves_figure_draws_the_finished_long_runs_and_says_when_there_are_none(tmp_path, monkeypatch):
    module = regime()
    monkeypatch.setattr(module, "RUNS", tmp_path)
    assert module.curves("synthetic", tmp_path / "none.png") is None
    setting = "32x, lower masking (mask ratio 0.5, LA 0.25)"
    assert setting in module.FIGURES["masks"][1]
    cell = tmp_path / "synthetic" / module.slug(setting) / "synthetic" / "lamae" / "linear_seed0.json"
    cell.parent.mkdir(parents=True)
    pretrain = {
        "flops_per_step": 1e9,
        "loss_curve": [[20, 2.0], [40, 0.9], [60, 0.7]],
        "trivial_curve": [[20, {"zero": 1.0}], [40, {"zero": 1.0, "visible_mean": 0.95}], [60, {"zero": 1.0}]],
    }
    cell.write_text(json.dumps({"cell": {"method": "lamae[mask_ratio=0.5]"}, "compute": {"pretrain": pretrain}}))
    assert module.curves("synthetic", tmp_path / "budgets.png") is None  # the run is another figure's
    png = module.curves("synthetic", tmp_path / "curves.png", "masks")
    assert png == tmp_path / "curves.png" and png.read_bytes().startswith(b"\x89PNG")
    drawn = {}
    monkeypatch.setattr(
        "benchmark.report.plots.training_curves_plot", lambda path, title, runs, *a, **k: drawn.update(runs)
    )
    module.curves("synthetic", tmp_path / "again.png", "masks")
    assert list(drawn) == ["lamae · 32x, lower masking"]  # the setting names the variant: not repeated


def test_a_data_setting_runs_only_on_the_datasets_it_names_with_each_ones_settings(tmp_path, monkeypatch):
    import benchmark.cli

    module = regime()
    monkeypatch.setattr(module, "RUNS", tmp_path)
    calls = []
    monkeypatch.setattr(benchmark.cli, "main", lambda argv: calls.append(argv) or 0)
    setting = "4x, band-pass 0.67-40 Hz"
    module.run("pool", [setting], seeds="1")
    (argv,) = calls
    sets = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set"]
    assert [s for s in sets if "bandpass" in s] == [f"{d}.preprocess.bandpass_hz=0.67,40" for d in module.POOL]
    assert "pretrain.steps=2400" in sets and argv[argv.index("--results") + 1].endswith("4x--band-pass-0-67-40-hz")
    with pytest.raises(SystemExit, match="runs only on pool, not on synthetic"):
        module.run("synthetic", [setting])
    calls.clear()
    monkeypatch.setattr(
        module, "SETTINGS", {"cpu preset": module.SETTINGS["cpu preset"], setting: module.SETTINGS[setting]}
    )
    module.run("synthetic", [])  # every setting: the data setting is skipped on the synthetic default
    assert len(calls) == 1 and "--set" not in calls[0]
