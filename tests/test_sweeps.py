"""Sweeps and the protocols they reuse: stratified subsets, lead sets, expansion into cells,
shared frozen outputs, the attention-pooling probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_toy_arrays
from test_harness import build, context

from benchmark.data.contract import LEADS
from benchmark.eval.protocol import CellContext
from benchmark.eval.protocols.attention_probe import AttentionProbe, AttentionProbeConfig
from benchmark.eval.protocols.finetune import Finetune, FinetuneConfig
from benchmark.eval.protocols.label_efficiency import LabelEfficiency, LabelEfficiencyConfig
from benchmark.eval.protocols.linear import LinearProbe, LinearProbeConfig
from benchmark.eval.protocols.reduced_leads import ReducedLeads, ReducedLeadsConfig, parse_lead_set
from benchmark.eval.subsets import n_records, parse_train_size, stratified_subset
from benchmark.eval.sweep import PLAIN, expand
from benchmark.nn.frozen_head import FrozenHeadConfig
from benchmark.nn.metrics import classification_report
from benchmark.train.optim import OptimConfig


def rare_labels(n=900, seed=0):
    """Multi-label matrix with prevalences from 0.3 % to 40 %."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, 6)) < [0.003, 0.01, 0.03, 0.1, 0.2, 0.4]).astype(np.uint8)


@pytest.mark.parametrize("size", [9, 45, 90, 450])
def test_stratified_subsets_keep_a_positive_of_every_label_and_the_prevalences(size):
    labels = rare_labels()
    for seed in range(5):
        chosen = stratified_subset(labels, size, seed)
        assert len(chosen) == size and len(np.unique(chosen)) == size
        assert (labels[chosen].sum(axis=0) > 0).all()
        if size >= 90:  # common labels keep their prevalence (rare ones are raised to one positive)
            np.testing.assert_allclose(labels[chosen, 3:].mean(axis=0), labels[:, 3:].mean(axis=0), atol=0.05)
    assert np.array_equal(stratified_subset(labels, size, 1), stratified_subset(labels, size, 1))
    assert not np.array_equal(stratified_subset(labels, size, 1), stratified_subset(labels, size, 2))


def test_a_subset_too_small_for_coverage_grows_to_cover_every_label():
    labels = np.eye(6, dtype=np.uint8).repeat(10, axis=0)  # 6 mutually exclusive labels
    chosen = stratified_subset(labels, 3, seed=0)
    assert len(chosen) == 6 and (labels[chosen].sum(axis=0) == 1).all()


def test_training_sizes_are_fractions_or_counts():
    assert parse_train_size("10%") == (0.1, True) and parse_train_size("250") == (250, False)
    assert n_records("10%", 900) == 90 and n_records("250", 900) == 250 and n_records("2000", 900) == 900
    for bad in ("0%", "150%", "ten", "2.5", "0"):
        with pytest.raises(ValueError):
            parse_train_size(bad)
    with pytest.raises(ValueError, match="training-set size"):
        LabelEfficiencyConfig(sizes=("5 %",))


def test_lead_sets():
    assert parse_lead_set("limb") == LEADS[:6] and parse_lead_set("all") == LEADS
    assert parse_lead_set("II+i") == ("I", "II")  # case-insensitive, in the fixed lead order
    with pytest.raises(ValueError, match="unknown lead"):
        parse_lead_set("I+V7")


def test_sweeps_expand_into_cells_and_the_full_point_is_the_plain_cell(toy_arrays):
    linear, finetune = LinearProbe(), Finetune()
    requested = {
        "linear": linear,
        "label_efficiency": LabelEfficiency(LabelEfficiencyConfig(sizes=("20%", "50%", "100%"), subset_seeds=2)),
        "reduced_leads": ReducedLeads(ReducedLeadsConfig(lead_sets=("all", "I+II", "limb", "II+I"))),
    }
    evaluations = expand(requested, {"linear": linear, "finetune": finetune}, toy_arrays)
    names = [(e.protocol_name, e.variant.name) for e in evaluations]
    assert names == [
        ("linear", ""),
        ("linear", "n20pct-s0"),
        ("linear", "n20pct-s1"),
        ("linear", "n50pct-s0"),
        ("linear", "n50pct-s1"),
        ("finetune", "n20pct-s0"),
        ("finetune", "n20pct-s1"),
        ("finetune", "n50pct-s0"),
        ("finetune", "n50pct-s1"),
        ("finetune", ""),
        ("linear", "leads-I+II"),
        ("linear", "leads-limb"),
    ]
    by_name = {(e.protocol_name, e.variant.name): e.variant for e in evaluations}
    subset = by_name["linear", "n20pct-s1"]
    assert set(subset.train_indices) <= set(toy_arrays.splits["train"])
    assert subset.identity["n_train"] == len(subset.train_indices) == round(0.2 * len(toy_arrays.splits["train"]))
    assert subset.identity["train_records"] != by_name["linear", "n20pct-s0"].identity["train_records"]
    assert by_name["linear", "leads-I+II"].lead_subset.tolist() == [lead in ("I", "II") for lead in LEADS]
    assert PLAIN.identity is None


def test_shared_outputs_are_computed_once_per_split_and_sliced_to_the_cells_records(toy_arrays):
    calls = []

    def compute(indices):
        calls.append(len(indices))
        return torch.tensor(indices, dtype=torch.float32)[:, None], np.asarray(indices)

    cache = {}
    train = toy_arrays.splits["train"]
    subset = train[[4, 1, 7]]
    full = CellContext(None, None, toy_arrays, 0, torch.device("cpu"), cache=cache)
    part = CellContext(None, None, toy_arrays, 0, torch.device("cpu"), train_indices=subset, cache=cache)
    x, y = part.split_outputs("train", "pooled", compute)
    assert y.tolist() == subset.tolist() and x[:, 0].tolist() == subset.tolist()
    assert full.split_outputs("train", "pooled", compute)[1].tolist() == train.tolist()
    assert calls == [len(train)]
    leads = CellContext(None, None, toy_arrays, 0, torch.device("cpu"), lead_subset=np.arange(12) < 2, cache=cache)
    leads.split_outputs("train", "pooled", compute)
    assert len(calls) == 2  # another lead subset is another input


def score(output, arrays):
    return classification_report(output.prediction.y_true, output.prediction.y_score, arrays.label_names)["macro_auroc"]


def test_protocols_train_and_test_on_the_lead_subset(toy_arrays):
    """The toy labels live in leads I and V1: without them both protocols fall to chance."""
    method, _ = build("ind_p", toy_arrays, window_s=5.0)
    without = np.isin(LEADS, ("II", "III", "V2"))
    linear = LinearProbe(LinearProbeConfig(l2_grid=(1.0, 0.01), max_iter=100))
    assert score(linear.run(context(toy_arrays, method)), toy_arrays) > 0.9
    ctx = context(toy_arrays, method)
    ctx.lead_subset = without
    assert score(linear.run(ctx), toy_arrays) < 0.75
    arrays = make_toy_arrays(n_patients=80)
    finetune = Finetune(
        FinetuneConfig(epochs=4, batch_size=16, patience=4, optim=OptimConfig(base_lr=2e-2), lr_grid=(1.0,))
    )
    method, _ = build("lamae", arrays, window_s=5.0)
    ctx = context(arrays, method)
    ctx.lead_subset = without
    assert score(finetune.run(ctx), arrays) < 0.75


def test_label_efficiency_subset_reaches_the_probe(toy_arrays):
    method, _ = build("ind_p", toy_arrays, window_s=5.0)
    ctx = context(toy_arrays, method)
    ctx.train_indices = toy_arrays.splits["train"][:10]
    output = LinearProbe(LinearProbeConfig(l2_grid=(1.0,), max_iter=50)).run(ctx)
    assert output.details["n_train"] == 10


def test_attention_probe_learns_from_frozen_tokens(toy_arrays):
    method, _ = build("ind_p", toy_arrays, window_s=5.0)
    config = AttentionProbeConfig(num_heads=2, train=FrozenHeadConfig(epochs=40, batch_size=32, lr=3e-3, patience=15))
    output = AttentionProbe(config).run(context(toy_arrays, method))
    assert score(output, toy_arrays) > 0.85, output.details
    assert output.details["tokens"] == len(LEADS) * (method.n_patches + 1)  # every lead's CLS + patches
    with pytest.raises(ValueError, match="num_heads"):
        AttentionProbe(AttentionProbeConfig(num_heads=5)).run(context(toy_arrays, method))
