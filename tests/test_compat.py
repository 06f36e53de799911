"""Behaviour that must not depend on library versions or on how an object is rebuilt."""

from __future__ import annotations

import tomllib

import torch
from conftest import REPO

from benchmark.run.build import build_method, method_spec
from benchmark.run.presets import get_preset
from benchmark.run.runner import rebuilder
from benchmark.train.optim import OptimConfig, build_optimizer


def test_no_weight_decay_patterns_reach_the_optimiser_under_every_timm():
    """``*cls*``/``*token*``/``*lead_embed*`` are fnmatch patterns; timm before 1.0.2x compares exact
    names, so they are resolved to names here, and the tokens are exempt from decay whatever timm."""
    model = build_method("lamae", get_preset("smoke"))
    optimizer, _ = build_optimizer(model, OptimConfig(weight_decay=0.05), 16, 10, model.no_weight_decay)
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    for name in ("la_cls", "lead_embed", "encoder.cls_token", "decoder.mask_token"):
        assert decay_of[id(named[name])] == 0.0, name
    assert decay_of[id(named["encoder.patch_embed.weight"])] == 0.05


def test_scratch_is_rebuilt_with_the_drop_path_it_is_asked_for():
    """Fine-tuning rebuilds the model with drop_path; the untrained baselines wrap another
    architecture whose blocks must get it too (they were built from the frozen arch config)."""
    preset = get_preset("smoke")
    spec = method_spec("scratch", preset)
    model = spec.build(preset.input)
    rebuilt = rebuilder(spec, preset.input, model.state_dict())(drop_path=0.3)
    rates = [getattr(block.drop_path1, "drop_prob", 0.0) for block in rebuilt.net.encoder.transformer.blocks]
    assert rates[-1] == 0.3 and rates[0] == 0.0  # stochastic depth grows with depth
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))


def test_declared_python_is_the_one_the_code_needs():
    """hashlib.file_digest (the data caches' SHA-256) and tomllib need Python 3.11."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def test_ci_oldest_environment_pins_the_declared_minimums():
    """CI's second environment tests the oldest torch and timm the project claims to support."""
    declared = {}
    for requirement in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, _, minimum = requirement.partition(">=")
        declared[name.strip()] = minimum.strip()
    pins = dict(
        line.split("==")
        for line in (REPO / ".ci" / "oldest.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pins["torch"] == declared["torch"] and pins["timm"] == declared["timm"]
