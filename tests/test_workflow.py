"""The researcher's workflow around a run: exported encoders, training curves and divergence,
TensorBoard, progress and `status`, exports — unit tests first, then two smoke runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_toy_arrays, run_cli
from test_cli import result_files, smoke_run
from test_harness import build, context

import ecgbench
from benchmark.cli import main
from benchmark.config import ConfigError, to_jsonable
from benchmark.data.contract import DataError
from benchmark.data.loader import make_loader
from benchmark.eval.protocols.finetune import Finetune, FinetuneConfig
from benchmark.nn.monitor import NonFiniteLossError, TrainingMonitor, require_tensorboard
from benchmark.registry import METHODS
from benchmark.run.build import method_config
from benchmark.run.export import export_encoder
from benchmark.run.presets import PRESETS
from benchmark.run.results import IDENTITY, Cell, ResultStore
from benchmark.run.state import Eta, PendingPretraining, RunProgress, describe_eta, format_duration, status_report
from benchmark.train.pretrain import PretrainConfig, pretrain


# -- reusable encoders ---------------------------------------------------------------------------
def checkpoint_folder(tmp_path, name="lamae", seed=0):
    """A checkpoint folder as the runner leaves it (final.pt + identity.json), without training:
    the method's initial weights perturbed, so a loader that ignores them would fail."""
    preset = PRESETS["smoke"]
    method_cls = METHODS.get(name)
    config = method_config(method_cls, preset)
    torch.manual_seed(seed)
    method = method_cls(config, preset.input)
    with torch.no_grad():
        for parameter in method.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    folder = tmp_path / "_checkpoints" / "synthetic" / "smoke" / f"{name}_seed{seed}_0123abcd"
    folder.mkdir(parents=True)
    report = {
        "steps": 6,
        "wall_s": 1.0,
        "final_loss": 0.07,
        "loss_curve": [[3, 0.08], [6, 0.07]],
        "peak_memory_mb": None,
    }
    torch.save({"model": method.state_dict(), "report": report}, folder / "final.pt")
    identity = {
        "dataset": "synthetic",
        "dataset_config": {"n_patients": 100},
        "input": preset.input,
        "method": name,
        "method_config": config,
        "seed": seed,
        "pretrain": preset.pretrain,
        "preset": "smoke",
    }
    (folder / IDENTITY).write_text(json.dumps({"signature": "0123abcd", "config": to_jsonable(identity)}))
    return folder, method.eval()


def a_batch(arrays, window, n=8):
    loader = make_loader(arrays, arrays.splits["test"], window, n, train=False)
    batch = next(iter(loader))
    batch.lead_mask[0, 6:] = False  # one record with the limb leads only
    batch.signals[0, 6:] = 0
    return batch


@pytest.mark.parametrize("name", ["lamae", "st_mem"])
def test_an_exported_encoder_gives_the_same_features_after_loading(tmp_path, name):
    folder, method = checkpoint_folder(tmp_path, name)
    config = export_encoder(folder, tmp_path / "encoder")
    assert {p.name for p in (tmp_path / "encoder").iterdir()} == {"model.safetensors", "config.json"}
    assert config["input"]["fs"] == 100 and config["input"]["window"] == 250 and config["input"]["units"] == "mV"
    assert config["input"]["leads"][:3] == ["I", "II", "III"] and config["variant"] == {}
    assert config["pretraining"]["report"]["steps"] == 6 and config["provenance"]["source"]["checkpoint"]
    encoder = ecgbench.load_encoder(tmp_path / "encoder")
    assert isinstance(encoder, torch.nn.Module) and not encoder.training
    batch = a_batch(make_toy_arrays(n_samples=250), 250)
    with torch.no_grad():
        expected = method.features(batch.signals, batch.lead_mask)
        loaded = encoder(batch.signals, batch.lead_mask, fs=100)
    assert loaded.shape == (8, encoder.feature_dim) and torch.equal(loaded, expected)
    decoder = [p for n, p in encoder.method.named_parameters() if encoder.method.is_pretraining_only(n)]
    assert decoder and not any(p.requires_grad for p in decoder)  # not exported, never trained downstream


def test_the_loaded_encoder_refuses_signals_of_another_rate_length_or_shape(tmp_path):
    folder, _ = checkpoint_folder(tmp_path)
    export_encoder(folder, tmp_path / "encoder")
    encoder = ecgbench.load_encoder(tmp_path / "encoder")
    with pytest.raises(DataError, match=r"give the signals' sampling rate: encoder\(signals, lead_mask, fs=100\)"):
        encoder(torch.zeros(2, 12, 250))
    with pytest.raises(DataError, match=r"500 samples, this encoder takes 250 \(2.5 s at 100 Hz\)"):
        encoder(torch.zeros(2, 12, 500), fs=100)
    with pytest.raises(DataError, match="at 500 Hz, but this encoder was trained at 100 Hz"):
        encoder(torch.zeros(2, 12, 250), fs=500)
    with pytest.raises(DataError, match=r"must be \(batch, 12, 250\)"):
        encoder(torch.zeros(2, 8, 250), fs=100)
    assert encoder(torch.zeros(2, 12, 250), fs=100).shape == (2, encoder.feature_dim)  # the mask defaults to all


def test_export_encoder_says_what_is_missing(tmp_path, capsys):
    folder, _ = checkpoint_folder(tmp_path)
    (folder / IDENTITY).unlink()
    assert main(["export-encoder", str(folder), "--to", str(tmp_path / "e")]) == 2
    assert f"has no {IDENTITY}" in capsys.readouterr().err
    assert main(["export-encoder", str(tmp_path / "nothing.json"), "--to", str(tmp_path / "e")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(DataError, match="not an encoder written by export-encoder"):
        ecgbench.load_encoder(tmp_path)


# -- training curves, divergence, TensorBoard ----------------------------------------------------
def test_pretraining_reports_every_log_interval_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    arrays = make_toy_arrays()
    method, _ = build("lamae", arrays, window_s=5.0)
    seen = []
    cfg = PretrainConfig(steps=4, batch_size=8, checkpoint_every=10, log_every=2)
    with TrainingMonitor(tmp_path / "tb", on_log=lambda step, total, scalars: seen.append((step, total))) as monitor:
        report = pretrain(method, arrays, cfg, 0, torch.device("cpu"), tmp_path / "ckpt", False, None, monitor)
    assert seen == [(2, 4), (4, 4)] and [s for s, _ in report.loss_curve] == [2, 4]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {
        "pretrain/loss",
        "pretrain/loss_vs_trivial",
        "pretrain/lr",
        "pretrain/grad_norm",
        "pretrain/throughput_ecgs_per_s",
    }
    assert [e.step for e in events.Scalars("pretrain/loss")] == [2, 4]
    assert [e.value for e in events.Scalars("pretrain/loss")] == pytest.approx([loss for _, loss in report.loss_curve])


def test_tensorboard_logging_without_the_package_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"pip install 'ecgbench\[tensorboard\]'"):
        require_tensorboard()
    args = ["run", "--methods", "lamae", "--preset", "smoke", "--log", "tensorboard", "--results", str(tmp_path)]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().startswith("error: --log tensorboard needs the tensorboard package")


def test_a_non_finite_pretraining_loss_raises_with_the_curve_so_far(tmp_path):
    arrays = make_toy_arrays()
    method, _ = build("lamae", arrays, window_s=5.0)
    loss_of = method.pretrain_loss
    method.pretrain_loss = lambda batch: {"loss": loss_of(batch)["loss"] * (np.nan if method._steps >= 3 else 1)}
    method._steps = 0
    method.on_train_step = lambda step, total: setattr(method, "_steps", step)
    cfg = PretrainConfig(steps=6, batch_size=8, checkpoint_every=10, log_every=2)
    with pytest.raises(NonFiniteLossError) as caught:
        pretrain(method, arrays, cfg, 0, torch.device("cpu"), tmp_path, progress=False)
    assert caught.value.stage == "pretraining" and caught.value.step == 4 and len(caught.value.curve) == 1
    assert caught.value.as_record()["loss"] == "nan" and "base_lr" in str(caught.value)


def test_fine_tuning_records_its_curves_and_a_diverged_run_raises(monkeypatch):
    arrays = make_toy_arrays()
    method, _ = build("lamae", arrays, window_s=5.0)
    output = Finetune(FinetuneConfig(epochs=2, batch_size=16, patience=5)).run(context(arrays, method))
    assert len(output.details["train_loss_history"]) == len(output.details["val_history"]) == 2
    assert all(np.isfinite(output.details["train_loss_history"]))

    scratch, _ = build("scratch", arrays, window_s=5.0)
    encode = type(scratch).encode  # protocols rebuild the model, so the class is patched

    def nan_features(self, signals, lead_mask, return_hidden=False):
        return ecgbench.Encoded(encode(self, signals, lead_mask).pooled * float("nan"))

    monkeypatch.setattr(type(scratch), "encode", nan_features)
    with pytest.raises(NonFiniteLossError, match="fine-tuning loss became nan"):
        Finetune(FinetuneConfig(epochs=2, batch_size=16)).run(context(arrays, scratch))


def test_a_diverged_learning_rate_is_a_candidate_that_lost(monkeypatch):
    """Equal tuning tries several learning rates; one that diverges must not sink the cell: the
    others are compared as usual and the divergence is recorded in the tuning record."""
    arrays = make_toy_arrays()
    method, _ = build("lamae", arrays, window_s=5.0)
    encode, train = type(method).encode, Finetune.train
    poisoned = {"on": False}

    def maybe_nan(self, signals, lead_mask, return_hidden=False):
        pooled = encode(self, signals, lead_mask).pooled
        return ecgbench.Encoded(pooled * float("nan") if poisoned["on"] else pooled)

    def train_candidate(self, ctx, recipe, base_lr, *args, **kwargs):
        poisoned["on"] = base_lr > recipe.optim.base_lr  # the largest multiplier diverges
        try:
            return train(self, ctx, recipe, base_lr, *args, **kwargs)
        finally:
            poisoned["on"] = False

    monkeypatch.setattr(type(method), "encode", maybe_nan)
    monkeypatch.setattr(Finetune, "train", train_candidate)
    output = Finetune(FinetuneConfig(epochs=2, batch_size=16, lr_grid=(0.3, 1.0, 3.0))).run(context(arrays, method))
    tuning = output.details["tuning"]
    assert tuning["diverged"] == ["nan"] and np.isnan(tuning["val_macro_auroc"][2])
    assert tuning["chosen"] in tuning["grid"][:2] and np.isfinite(output.prediction.y_score).all()


# -- progress and status -------------------------------------------------------------------------
def test_the_eta_adds_measured_step_and_cell_times():
    eta = Eta()
    assert eta.remaining([("lamae", 100)], ["linear"]) == (None, ["pretraining lamae", "linear"])
    eta.add_pretraining("lamae", steps=50, wall_s=25.0)  # 0.5 s per step
    eta.add_cell("linear", 10.0)
    eta.add_cell("linear", 20.0)
    assert eta.remaining([("lamae", 100)], ["linear", "linear"]) == (50.0 + 30.0, [])
    # a method not timed yet is not guessed from another's rate (Ind_P runs at a quarter of LAMAE's
    # FLOP rate): it is named, and the ETA is a lower bound
    assert eta.remaining([("lamae", 10), ("ind_p", 10)], []) == (5.0, ["pretraining ind_p"])
    assert describe_eta(5.0, ["pretraining ind_p"]) == "ETA ≥ 5 s (not timed yet: pretraining ind_p)"
    assert format_duration(3725) == "1 h 02 min" and format_duration(65) == "1 min 05 s"


def test_status_says_which_cells_a_run_found_finished(tmp_path):
    """A run whose cells were all finished already (e.g. the committed results of another machine)
    lists them and says so, instead of "0 cells planned" (issue 22)."""
    from test_leaderboard import write_cell

    store = ResultStore(tmp_path)
    write_cell(store, "random_init", 0, 0.3)
    cell = Cell("synthetic", "labels", "cpu", "random_init", "linear", 0)
    RunProgress(tmp_path, {cell: "linear"}, {cell}, {}, Eta()).close("finished")
    report = status_report(tmp_path)
    assert "of the 1 cells planned by 1 run(s): 1 finished" in report
    assert "1/1 finished, 0 running, 0 remaining; 1 of them were found finished when it started" in report


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_status_summarises_running_interrupted_and_failed_runs_from_the_tree_alone(tmp_path):
    cells = {Cell("synthetic", "conditions", "cpu", "lamae", p, 0): p for p in ("linear", "finetune")}
    cells[Cell("synthetic", "conditions", "cpu", "random_init", "linear", 0)] = "linear"
    linear, finetune, reference = list(cells)
    pending = {(0, "lamae"): PendingPretraining("lamae", 600)}
    eta = Eta()
    eta.add_cell("linear", 30.0)
    running = RunProgress(tmp_path, cells, set(), pending, eta)
    running.start_pretraining(0, "lamae")
    running.on_start(0, 600)
    running.on_log(340, 600, {"pretrain/loss": 0.07})
    running.save()
    report = status_report(tmp_path)
    assert "0 finished cells" in report and "3 remaining" in report
    assert "now: pretraining lamae seed 0, step 340/600" in report and "ETA" in report
    assert "last error: none" in report

    # the process is killed: its state file still says running, its pid is gone
    state = json.loads(running.path.read_text())
    running.path.write_text(json.dumps({**state, "pid": dead_pid()}))
    store = ResultStore(tmp_path)
    from test_leaderboard import write_cell

    write_cell(store, "random_init", 0, 0.3)
    moved = tmp_path / "synthetic" / "labels" / "cpu" / "random_init" / "linear_seed0.json"
    target = tmp_path / reference.relpath
    target.parent.mkdir(parents=True)
    moved.rename(target)
    moved.with_suffix(".preds.npz").rename(target.with_suffix(".preds.npz"))
    report = status_report(tmp_path)
    assert "interrupted (its process is gone)" in report and "stopped during: pretraining lamae seed 0" in report
    assert (
        "1/3 finished, 0 running, 2 remaining" in report and f"next: {linear.relpath.as_posix()} and 1 more" in report
    )

    failed = RunProgress(tmp_path, {finetune: "finetune"}, set(), {}, Eta())
    failed.start_pretraining(0, "lamae")  # its checkpoint is final: nothing pending (regression: a KeyError)
    failed.end_pretraining()
    failed.close("failed", RuntimeError("CUDA out of memory\nmore detail"))
    assert "last error: RuntimeError: CUDA out of memory" in status_report(tmp_path)


# -- end to end ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run with TensorBoard logging: lamae with linear probe and fine-tuning (plus the
    references random_init and ecg_features, scratch and xresnet1d)."""
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("workflow") / "results"
    result = smoke_run(out, "--protocols", "linear,finetune", "--log", "tensorboard", methods="lamae")
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.mark.slow
def test_a_run_records_curves_shows_them_in_the_leaderboard_and_writes_tensorboard_files(smoke):
    out, result = smoke
    assert "cells 0/6 done" in result.stderr and "running lamae / linear / seed 0" in result.stderr
    assert "ETA" in result.stderr
    hint = f"open them with: tensorboard --logdir {out / '_tensorboard'}"  # where the logs are, said twice
    assert hint in result.stderr and hint in result.stdout
    finetune = json.loads((out / "synthetic/conditions/smoke/lamae/finetune_seed0.json").read_text())
    assert len(finetune["details"]["train_loss_history"]) == finetune["details"]["epochs_run"]
    assert [s for s, _ in finetune["compute"]["pretrain"]["loss_curve"]] == [3, 6]
    board = (out / "LEADERBOARD.md").read_text()
    with np.load(out / "synthetic/conditions/smoke/lamae/linear_seed0.preds.npz") as preds:  # the bootstrap's unit
        assert 0 < len(set(preds["patient_ids"])) < len(preds["record_ids"])  # two records per synthetic patient
    assert re.search(r"resamples of \d+ patients \(\d+ records\), stratified by label", board)
    images = [line for line in board.splitlines() if line.startswith("![Training curves")]
    assert len(images) == 2  # one per table: linear and finetune
    for line in images:
        png = out / line.split("](")[1].rstrip(")")
        assert png.stat().st_size > 5000
    events = sorted(p.parent.relative_to(out / "_tensorboard").as_posix() for p in out.rglob("events.out.tfevents.*"))
    assert len(events) == 4  # lamae's pretraining, lamae's, scratch's and xresnet1d's fine-tuning
    assert events[0].startswith("pretraining/synthetic/smoke/lamae_seed0_")
    assert events[1:] == [
        "synthetic/conditions/smoke/lamae/finetune_seed0",
        "synthetic/conditions/smoke/scratch/finetune_seed0",
        "synthetic/conditions/smoke/xresnet1d/finetune_seed0",
    ]


@pytest.mark.slow
def test_status_and_exports_of_a_finished_run(smoke, tmp_path):
    out, _ = smoke
    status = run_cli("status", "--results", str(out))
    assert status.returncode == 0, status.stderr
    assert "6 finished cells (0 diverged)" in status.stdout and ": finished;" in status.stdout

    assert main(["export", "--results", str(out), "--to", str(tmp_path / "r.csv")]) == 0
    frame = pd.read_csv(tmp_path / "r.csv")
    assert sorted(zip(frame.method, frame.protocol)) == [
        ("ecg_features", "linear"),
        ("lamae", "finetune"),
        ("lamae", "linear"),
        ("random_init", "linear"),
        ("scratch", "finetune"),
        ("xresnet1d", "finetune"),
    ]

    # the encoder from the result file, and from its checkpoint folder, equals the benchmark's model
    from benchmark.run.export import build_model, locate

    model, _ = build_model(locate(out / "synthetic/conditions/smoke/lamae/linear_seed0.json"))
    for source in (out / "synthetic/conditions/smoke/lamae/linear_seed0.json", next(out.rglob(IDENTITY)).parent):
        exported = run_cli("export-encoder", str(source), "--to", str(tmp_path / "encoder"))
        assert exported.returncode == 0, exported.stderr
        encoder = ecgbench.load_encoder(tmp_path / "encoder")
        batch = a_batch(make_toy_arrays(n_samples=250), 250)
        with torch.no_grad():
            assert torch.equal(
                encoder(batch.signals, batch.lead_mask, fs=100), model.features(batch.signals, batch.lead_mask)
            )


@pytest.mark.slow
def test_a_diverged_pretraining_is_recorded_and_the_run_goes_on(tmp_path):
    out = tmp_path / "results"
    result = smoke_run(out, "--protocols", "linear", "--set", "pretrain.optim.base_lr=1e30", methods="lamae")
    assert result.returncode == 0, result.stderr
    assert "its 1 cells are recorded as diverged" in result.stderr
    lamae = json.loads((out / "synthetic/conditions/smoke/lamae/linear_seed0.json").read_text())
    assert lamae["status"] == "diverged" and lamae["metrics"] is None and lamae["failure"]["stage"] == "pretraining"
    assert not (out / "synthetic/conditions/smoke/lamae/linear_seed0.preds.npz").exists()
    assert json.loads((out / "synthetic/conditions/smoke/random_init/linear_seed0.json").read_text())["metrics"]
    board = (out / "LEADERBOARD.md").read_text()
    assert "| lamae " in board and "diverged: seed 0 (pretraining, step" in board
    again = smoke_run(out, "--protocols", "linear", "--set", "pretrain.optim.base_lr=1e30", methods="lamae")
    assert "3 cells: 3 finished already, 0 to run" in again.stderr  # a diverged cell is finished
    assert "lamae / linear / seed 0: pretraining loss became" in run_cli("status", "--results", str(out)).stdout
    assert len(result_files(out)) == 3  # lamae, random_init, ecg_features
