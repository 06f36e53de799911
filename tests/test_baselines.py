"""Reference baselines (issue 12): supervised methods trained by the fine-tuning recipe of every
method (``scratch``, ``xresnet1d``; the recipe itself: tests/test_recipe.py), classical ECG
measurements (``ecg_features``) and equal tuning of every method on validation."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from benchmark.config import ConfigError
from benchmark.data.contract import LEADS
from benchmark.eval.protocol import CellContext
from benchmark.eval.protocols.finetune import Finetune, FinetuneConfig
from benchmark.eval.protocols.linear import LinearProbe, LinearProbeConfig
from benchmark.eval.tuning import Tuning
from benchmark.registry import METHODS
from benchmark.run.build import build_dataset, build_protocols, method_config, resolve_methods
from benchmark.run.presets import PRESETS

SMOKE = PRESETS["smoke"]
needs_neurokit = pytest.mark.skipif(
    bool(METHODS.get("ecg_features").missing_requirements()), reason="ecg_features needs neurokit2"
)


def built(name: str, window_s: float = 5.0, preset=SMOKE, **fields):
    preset = dataclasses.replace(preset, input=dataclasses.replace(preset.input, window_s=window_s))
    method_cls = METHODS.get(name)
    torch.manual_seed(0)
    config = dataclasses.replace(method_config(method_cls, preset), **fields)
    return method_cls(config, preset.input)


def context(arrays, method, **extra) -> CellContext:
    state = {k: v.clone() for k, v in method.state_dict().items()}

    def rebuild(**changes):
        fresh = type(method)(dataclasses.replace(method.config, **changes), method.input_spec)
        fresh.load_state_dict(state)
        return fresh

    return CellContext(method, rebuild, arrays, 0, torch.device("cpu"), progress=False, **extra)


def quick_finetune(**fields) -> Finetune:
    cfg = dict(
        epochs=1,
        batch_size=16,
        patience=1,
        lr_grid=(0.3, 1.0),
        max_lr_extensions=0,
        probe=LinearProbeConfig(l2_grid=(1.0, 0.01), max_iter=30, max_extensions=0),
    )
    return Finetune(FinetuneConfig(**{**cfg, **fields}))


# -- item 1: supervised baselines ------------------------------------------------------------------
def test_supervised_methods_train_from_random_init_and_pretrained_ones_from_their_weights(toy_arrays):
    scratch = quick_finetune().run(context(toy_arrays, built("scratch"))).details
    lamae = quick_finetune().run(context(toy_arrays, built("lamae"))).details
    assert scratch["initialisation"] == "random" and lamae["initialisation"] == "pretrained"
    assert scratch["recipe"]["head_init"] == "prior" and lamae["recipe"]["head_init"] == "linear_probe"
    assert METHODS.get("scratch").supervised_only() and METHODS.get("xresnet1d").supervised_only()
    assert not METHODS.get("lamae").supervised_only() and not METHODS.get("random_init").supervised_only()


def test_xresnet1d_is_the_ptbxl_benchmarks_xresnet1d101():
    """helme/ecg_ptbxl_benchmarking xresnet1d101: stem 32-32-64 (kernel 5, stride 2, max-pool),
    stages of 3/4/23/3 bottleneck blocks of width 64 -> 256 (time halved from stage 2 on),
    concat pooling and a 128-wide hidden head layer; BN weights 1 and biases 0 at init."""
    method = built("xresnet1d")
    assert [len(stage) for stage in method.stages] == [3, 4, 23, 3]
    assert [m.out_channels for m in method.stem.modules() if isinstance(m, torch.nn.Conv1d)] == [32, 32, 64]
    assert method.stages[2][0].convs[1][0].kernel_size == (5,) and method.stages[2][0].convs[2][0].out_channels == 256
    x = torch.randn(2, len(LEADS), 500)
    encoded = method.eval().encode(x, torch.ones(2, len(LEADS), dtype=torch.bool), return_hidden=True)
    assert [h.shape[1] for h in encoded.hidden_states] == [125, 125, 63, 32, 16]  # stem+pool, 4 stages
    assert [h.shape[2] for h in encoded.hidden_states] == [64, 256, 256, 256, 256]
    assert encoded.pooled.shape == (2, 128) and method.head[0].num_features == 512  # max + mean pooling
    norms = [m for m in method.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert all(bool((n.weight == 1).all() and (n.bias == 0).all()) for n in norms)
    assert 1.8e6 < sum(p.numel() for p in method.parameters()) < 1.9e6
    layer_ids = [method.layer_id(name) for name, _ in method.named_parameters()]
    assert layer_ids == sorted(layer_ids) and method.num_layers == 35
    assert method_config(METHODS.get("xresnet1d"), PRESETS["paper"]) == method_config(
        METHODS.get("xresnet1d"), SMOKE
    )  # the preset's transformer size does not apply


def test_references_join_every_table_they_apply_to(monkeypatch):
    monkeypatch.setattr(METHODS.get("ecg_features"), "requires", ())  # as if neurokit2 were installed
    _, base = build_protocols(["linear", "attention_probe", "label_efficiency"], SMOKE)
    names = [s.name for s in resolve_methods(["lamae"], list(base.values()), True, SMOKE)]
    assert names == ["lamae", "random_init", "ecg_features", "scratch", "xresnet1d"]
    _, attention_only = build_protocols(["attention_probe"], SMOKE)
    assert [s.name for s in resolve_methods(["lamae"], list(attention_only.values()), True, SMOKE)] == [
        "lamae",
        "random_init",
    ]
    linear = next(p for p in base.values() if p.name == "linear")
    assert linear.applies_to(METHODS.get("ecg_features")) and not base["attention_probe"].applies_to(
        METHODS.get("ecg_features")
    )
    assert "ecg_features" not in [s.name for s in resolve_methods(["all"], list(base.values()), False, SMOKE)]


def test_a_reference_with_a_missing_dependency_is_left_out_and_a_requested_one_refused(monkeypatch, caplog):
    monkeypatch.setattr(METHODS.get("ecg_features"), "requires", ("no_such_package_xyz",))
    _, base = build_protocols(["linear"], SMOKE)
    with caplog.at_level(logging.WARNING, logger="benchmark"):
        assert [s.name for s in resolve_methods(["lamae"], list(base.values()), True, SMOKE)] == [
            "lamae",
            "random_init",
        ]
    assert "ecg_features left out" in caplog.text
    with pytest.raises(ConfigError, match="needs no_such_package_xyz: pip install no_such_package_xyz"):
        [s.name for s in resolve_methods(["ecg_features"], list(base.values()), True, SMOKE)]


# -- item 7: equal tuning --------------------------------------------------------------------------
def test_every_method_chooses_its_learning_rate_from_the_same_grid_on_validation(toy_arrays):
    protocol = quick_finetune(lr_grid=(0.3, 1.0, 3.0))
    for name in ("lamae", "scratch"):
        details = protocol.run(context(toy_arrays, built(name))).details
        tuning = details["tuning"]
        assert tuning["lr_multipliers"] == [0.3, 1.0, 3.0] and tuning["selected_on"] == "val"
        assert tuning["grid"] == pytest.approx([protocol.config.optim.base_lr * m for m in (0.3, 1.0, 3.0)])
        assert tuning["chosen"] == tuning["grid"][int(np.argmax(tuning["val_macro_auroc"]))]
        assert details["val_macro_auroc"] == max(tuning["val_macro_auroc"])


def test_the_test_split_cannot_influence_any_choice(toy_arrays):
    """The same cell with the test records' signals replaced by noise and their labels inverted
    chooses the same probe strength and learning rate with the same validation scores."""
    test = toy_arrays.splits["test"]
    signals, labels = toy_arrays.signals.copy(), toy_arrays.labels.copy()
    signals[test] = np.random.default_rng(1).standard_normal(signals[test].shape).astype(signals.dtype)
    labels[test] = 1 - labels[test]
    altered = dataclasses.replace(toy_arrays, signals=signals, labels=labels)
    probe = LinearProbe(LinearProbeConfig(l2_grid=(10.0, 1.0, 0.01), max_iter=50))
    extended = quick_finetune(max_lr_extensions=2)  # the extensions are choices too
    for protocol, name in ((probe, "lamae"), (extended, "lamae"), (extended, "scratch")):
        original = protocol.run(context(toy_arrays, built(name)))
        changed = protocol.run(context(altered, built(name)))
        assert original.details["tuning"] == changed.details["tuning"]
        assert original.details.get("probe_l2") == changed.details.get("probe_l2")
        # the test split did change: its labels are read inverted and its scores differ (a scratch
        # model's near-zero head scores ~0.5 everywhere, so "differ" means not bit-identical)
        assert (original.prediction.y_true != changed.prediction.y_true).all()
        assert not np.array_equal(original.prediction.y_score, changed.prediction.y_score)


def test_tuning_keeps_the_first_best_and_never_an_unscorable_point():
    tuning = Tuning("l2")
    assert not tuning.add(1.0, float("nan"))
    assert tuning.add(0.1, 0.6) and tuning.add(0.01, 0.7) and not tuning.add(0.001, 0.7)
    assert tuning.chosen == 0.01 and tuning.record()["grid"] == [1.0, 0.1, 0.01, 0.001]


# -- item 2: classical features --------------------------------------------------------------------
@needs_neurokit
def test_ecg_features_measure_the_synthetic_hearts_intervals_and_separate_its_conditions():
    """Against the synthetic generator's ground truth (datasets/synthetic.py): heart rate, PR and
    QRS per record, and the conditions defined by measurements (AF = irregular RR, first-degree
    AV block = long PR, LBBB = wide QRS, anterior STEMI = ST up in V2) separated from normals."""
    from sklearn.metrics import roc_auc_score

    from ecgbench_datasets.synthetic import AF, AVB1, LBBB, STEMI_ANTERIOR, SyntheticConfig, generate
    from ecgbench_methods.ecg_features import FEATURE_NAMES

    records = generate(SyntheticConfig(n_patients=60, records_per_patient=2, duration_s=5.0), np.arange(120), fs=100)
    method = built("ecg_features", window_s=5.0)
    raw = method.readout_inputs(torch.from_numpy(records.signals).float(), torch.from_numpy(records.lead_mask))
    column = {name: raw[:, i].numpy() for i, name in enumerate(FEATURE_NAMES)}
    sinus = records.truth.rhythm == "sinus"
    for name, truth, tolerance in (
        ("heart_rate_bpm", records.truth.heart_rate_bpm, 5.0),
        ("pr_ms", 1000 * records.truth.pr_interval_s, 30.0),
        ("qrs_ms", 1000 * records.truth.qrs_duration_s, 30.0),
    ):
        ok = np.isfinite(column[name]) & sinus
        assert ok.mean() > 0.5 and np.median(np.abs(column[name][ok] - truth[ok])) < tolerance, name
    conditions = records.true_labels.astype(bool)
    normal = ~conditions.any(axis=1)

    def separates(feature: str, condition: int) -> float:
        values, positive = column[feature], conditions[:, condition]
        keep = np.isfinite(values) & (positive | normal)
        return roc_auc_score(positive[keep], values[keep])

    assert separates("hrv_CVNN", AF) > 0.9
    assert separates("pr_ms", AVB1) > 0.8
    assert separates("qrs_ms", LBBB) > 0.8
    assert separates("V2_st_mv", STEMI_ANTERIOR) > 0.9


@needs_neurokit
def test_ecg_features_agree_with_the_experts_on_real_ludb_records(shared_data):
    """PR and QRS durations at 100 Hz against LUDB's cardiologist annotations of lead II (the
    reference lead): median absolute error over 40 records (measured: PR 14 ms, QRS 27 ms)."""
    import wfdb
    from scipy.signal import resample_poly

    from ecgbench_methods.ecg_features import FEATURE_NAMES

    method = built("ecg_features", window_s=5.0)
    errors: dict[str, list[float]] = {"pr_ms": [], "qrs_ms": []}
    for record in range(1, 41):
        path = str(shared_data / "ludb" / "data" / str(record))
        signal = resample_poly(wfdb.rdrecord(path).p_signal.T, 1, 5, axis=1)[:, 250:750]
        features = method.measure(signal, np.ones(len(LEADS), dtype=bool))
        annotation = wfdb.rdann(path, "ii")
        symbols, samples = annotation.symbol, annotation.sample * 2  # ms at 500 Hz
        qrs, pr = [], []
        for i in range(1, len(symbols) - 1):
            if symbols[i] == "N" and symbols[i - 1] == "(" and symbols[i + 1] == ")":
                qrs.append(samples[i + 1] - samples[i - 1])
                if i >= 4 and symbols[i - 4 : i - 1] == ["(", "p", ")"]:  # ( p ) ( N ): P onset to QRS onset
                    pr.append(samples[i - 1] - samples[i - 4])
        for name, expert in (("pr_ms", pr), ("qrs_ms", qrs)):
            measured = features[FEATURE_NAMES.index(name)]
            if expert and np.isfinite(measured):
                errors[name].append(abs(measured - np.median(expert)))
    assert len(errors["pr_ms"]) >= 30 and np.median(errors["pr_ms"]) < 25
    assert len(errors["qrs_ms"]) >= 35 and np.median(errors["qrs_ms"]) < 40


@needs_neurokit
def test_failed_measurements_are_nan_and_imputed_with_training_medians_only():
    from ecgbench_methods.ecg_features import FEATURE_NAMES

    method = built("ecg_features", window_s=5.0)
    rng = np.random.default_rng(0)
    t = np.arange(500) / 100
    beat = np.exp(-(((t % 0.8) - 0.4) ** 2) / 2e-4)  # 75 bpm spikes: R peaks but few other waves
    signals = np.stack(
        [
            np.zeros((12, 500)),  # flat: no beat found
            rng.standard_normal((12, 500)),  # noise
            np.tile(beat, (12, 1)),
            np.full((12, 500), np.nan),  # NaN samples
        ]
    )
    present = np.ones((4, 12), dtype=bool)
    present[2, 1:] = False  # only lead I: every other lead's features are missing
    raw = method.readout_inputs(torch.from_numpy(signals).float(), torch.from_numpy(present))
    assert raw.shape == (4, len(FEATURE_NAMES)) and torch.isnan(raw[0]).all() and torch.isnan(raw[3]).all()
    hr = FEATURE_NAMES.index("heart_rate_bpm")
    assert raw[2, hr] == pytest.approx(75, abs=3) and torch.isnan(raw[2, FEATURE_NAMES.index("V1_r_mv")])
    train = torch.tensor([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan]]).repeat(1, len(FEATURE_NAMES) // 2 + 1)
    train = train[:, : len(FEATURE_NAMES)]
    details = method.fit_readout((train, None), (train[:1], None), seed=0)
    filled = method.readout(torch.full((1, len(FEATURE_NAMES)), float("nan")))
    assert filled[0, 0] == 2.0 and filled[0, 1] == 0.0  # the training median; 0 if never measured
    assert FEATURE_NAMES[1] in details["features_never_measured"] and details["imputed_fraction"]["train"] > 0.5
    assert torch.equal(method.features(raw[2:3].new_zeros(1, 12, 500), torch.ones(1, 12, dtype=torch.bool)), filled)


def test_seed_independent_outputs_are_computed_once_and_kept_on_disk(monkeypatch, tmp_path):
    """ecg_features' measurements are extracted once for all seeds and read back by a later run
    (the measurement itself is replaced by a cheap counted stand-in)."""
    from benchmark.run.runner import RunRequest, run
    from ecgbench_methods.ecg_features import FEATURE_NAMES, RecordMeasurer

    calls = []

    def fake_measure(self, signal, present):
        calls.append(1)
        return np.r_[signal[:, :10].mean(), np.zeros(len(FEATURE_NAMES) - 1)]

    monkeypatch.setattr(RecordMeasurer, "__init__", lambda self, config, fs: None)
    monkeypatch.setattr(RecordMeasurer, "__call__", fake_measure)
    monkeypatch.setattr(METHODS.get("ecg_features"), "requires", ())
    request = RunRequest(
        methods=["ecg_features"],
        preset="smoke",
        seeds=[0, 1],
        protocols=["linear"],
        results=tmp_path / "out",
        add_references=False,
        progress=False,
        cache_dir=tmp_path / "cache",
    )
    records = run(request)
    arrays = build_dataset("synthetic", SMOKE, {}).load(SMOKE.input.fs, "conditions", tmp_path / "cache", False)
    assert len(records) == 2
    assert len(calls) == sum(len(arrays.splits[split]) for split in ("train", "val", "test"))  # once for both seeds
    first = len(calls)
    run(dataclasses.replace(request, seeds=[0, 1], rerun=True))
    assert len(calls) == first  # the rerun of both seeds read them back
    assert records[0]["metrics"] == records[1]["metrics"]
    stored = list((tmp_path / "out").rglob("readout_inputs_*_all.npz"))
    assert len(stored) == 3
    run(dataclasses.replace(request, seeds=[2]))
    assert len(calls) == first  # a new seed too


def test_leaderboard_compares_with_every_reference_and_shows_choices_and_compute(tmp_path):
    from test_leaderboard import table_rows, write_cell

    from benchmark.report.leaderboard import write_leaderboard
    from benchmark.run.results import ResultStore

    store = ResultStore(tmp_path / "results")
    for seed, lr in enumerate((3e-4, 3e-4, 1e-3)):
        tuning = {"tuning": {"param": "base_lr", "grid": [1e-4, 3e-4, 1e-3], "chosen": lr}}
        for method, skill, flops in (("lamae", 1.5, 2e11), ("scratch", 0.5, 6e12), ("xresnet1d", 1.0, 7e12)):
            write_cell(store, method, seed, skill, protocol="finetune", details=tuning, downstream={"flops": flops})
    write_leaderboard(store.root, tmp_path / "LB.md")
    rows = table_rows((tmp_path / "LB.md").read_text(), "· finetune")
    header = [cell.strip() for cell in rows["method"].split("|")]
    for column in ("Δ scratch (p Holm)", "Δ xresnet1d (p Holm)", "tuned on val", "downstream FLOPs", "total FLOPs"):
        assert column in header
    cells = {m: dict(zip(header, (c.strip() for c in rows[m].split("|")))) for m in ("lamae", "scratch", "xresnet1d")}
    assert cells["lamae"]["tuned on val"] == "lr 3e-4 ×2, 1e-3↑"  # the highest of the grid: marked
    assert cells["lamae"]["downstream FLOPs"] == "200G" and cells["lamae"]["total FLOPs"] == "5.3T"  # 5.1T pretraining
    assert cells["xresnet1d"]["total FLOPs"] == "7T" and cells["xresnet1d"]["pretrain FLOPs"] == "—"
    assert (
        cells["scratch"]["Δ scratch (p Holm)"] == "reference" and cells["lamae"]["Δ xresnet1d (p Holm)"] != "reference"
    )
