"""The command line as a user meets it: errors, a full smoke run, skipping, kill and resume."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, run_cli

from benchmark.cli import main
from benchmark.run.results import ResultStore


@pytest.mark.parametrize(
    "args, valid",
    [
        (["run", "--methods", "lamea"], "did you mean 'lamae'"),
        (["run", "--methods", "lamae", "--dataset", "ptb"], "Valid datasets:"),
        (["run", "--methods", "lamae", "--preset", "huge"], "valid presets: smoke, cpu, cpu-long, paper"),
        (["run", "--methods", "lamae", "--protocols", "linaer"], "did you mean 'linear'"),
        (["run", "--methods", "lamae", "--seeds", "two"], "give a count (3), a list (0,4,7) or a range (2-5)"),
        (["run", "--methods", "lamae", "--seeds", "1,1"], "all distinct"),
        (["run", "--methods", "lamae", "--seeds", "0"], "for seed 0 alone write --seeds 1 or 0-0"),
        (["run", "--methods", "lamae", "--set", "pretrain.stepz=3"], "did you mean 'steps'"),
        (["run", "--methods", "lamae", "--labels", "nope"], "valid: conditions, icd"),
        (["frobnicate"], "invalid choice"),
        (["run", "--methods", "lamae", "--set", "pretrian.steps=10"], "did you mean 'pretrain'?"),
        (
            ["run", "--methods", "lamae", "--set", "lamea.la_depth=1"],
            "for the method 'lamae' write its settings in brackets: 'lamae[la_depth=1]'",
        ),
        (["run", "--methods", "lamae", "--set", "synthetc.n_patients=50"], "did you mean 'synthetic'?"),
        (
            ["run", "--methods", "lamae", "--set", "st_mem.mask_ratio=0.5"],
            "write the variant in brackets instead: --methods 'st_mem[mask_ratio=0.5]'",
        ),
        (["run", "--methods", "lamae", "--set", "ptbxl.min_count=2"], "dataset 'ptbxl' is not part of this run"),
        (["run", "--methods", "lamae", "--device", "gpu"], "use auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(tmp_path, capsys, args, valid):
    code = main([*args, "--results", str(tmp_path)] if args[0] == "run" else args)
    stderr = capsys.readouterr().err
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert valid in lines[0]


def test_bad_input_from_a_real_process_has_no_traceback(tmp_path):
    result = run_cli("run", "--methods", "lamae,nope", "--results", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    assert "unknown method 'nope'" in result.stderr


def test_list_shows_every_kind_of_plugin():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    for name in ("lamae", "ind_p", "random_init", "scratch", "synthetic", "linear", "finetune", "smoke", "paper"):
        assert f"  {name} " in result.stdout


def smoke_arguments(out, methods="lamae,ind_p"):
    return [
        "run",
        "--methods",
        methods,
        "--preset",
        "smoke",
        "--results",
        str(out),
        "--leaderboard",
        str(out / "LEADERBOARD.md"),
        "--cache-dir",
        str(out.parent / "cache"),
        "--no-progress",
    ]


def smoke_run(out, *extra, methods="lamae,ind_p", **kwargs):
    return run_cli(*smoke_arguments(out, methods), *extra, **kwargs)


def result_files(out):
    """The result files under ``out`` (folders starting with '_' hold checkpoints, claims, logs)."""
    return sorted(p for p in out.rglob("*.json") if not p.relative_to(out).parts[0].startswith("_"))


@pytest.mark.slow
def test_smoke_run_writes_results_leaderboard_and_skips_finished_cells(tmp_path):
    out = tmp_path / "results"
    first = smoke_run(out)
    assert first.returncode == 0, first.stderr
    files = result_files(out)
    names = {(f.parent.name, f.stem) for f in files}
    assert names == {
        ("lamae", "linear_seed0"),
        ("lamae", "finetune_seed0"),
        ("ind_p", "linear_seed0"),
        ("ind_p", "finetune_seed0"),
        ("random_init", "linear_seed0"),
        ("ecg_features", "linear_seed0"),
        ("scratch", "finetune_seed0"),
        ("xresnet1d", "finetune_seed0"),
    }
    record = json.loads(files[0].read_text())
    for key in ("config", "metrics", "compute", "provenance", "signature", "predictions"):
        assert key in record
    assert record["provenance"]["git"]["commit"] and "torch" in record["provenance"]["packages"]
    assert record["metrics"]["n_labels_scored"] == len(record["metrics"]["per_label_auroc"]) > 0
    assert (files[0].parent / record["predictions"]).exists()
    pretrained = json.loads((out / "synthetic/conditions/smoke/ind_p/linear_seed0.json").read_text())["compute"][
        "pretrain"
    ]
    assert pretrained["flops_per_step"] > 0 and pretrained["budget"] == "lamae"  # the presets match compute
    assert abs(pretrained["total_flops"] / pretrained["budget_flops"] - 1) <= 0.1  # 6 smoke steps: coarse
    board = (out / "LEADERBOARD.md").read_text()
    for method in ("lamae", "ind_p", "random_init", "ecg_features", "scratch", "xresnet1d"):
        assert f"| {method} " in board
    assert "macro AUROC" in first.stdout and "95 % CI" in first.stdout  # the summary table, with CIs
    assert "8 cells computed now, 0 found finished" in first.stdout

    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = smoke_run(out)
    assert again.returncode == 0, again.stderr
    assert "8 cells: 8 finished already, 0 to run" in again.stderr
    assert "0 cells computed now, 8 found finished (computed earlier on " in again.stdout  # says what it found
    assert {f: f.stat().st_mtime_ns for f in result_files(out)} == stamps

    changed = smoke_run(out, "--set", "linear.max_iter=7")
    assert changed.returncode == 2 and "different configuration" in changed.stderr

    # damaged files (a disk filled mid-write, a bad copy): named, left out of reports, recomputed
    damaged_json = out / "synthetic/conditions/smoke/ind_p/linear_seed0.json"
    damaged_json.write_text(damaged_json.read_text()[:100])
    damaged_preds = out / "synthetic/conditions/smoke/lamae/finetune_seed0.preds.npz"
    damaged_preds.write_bytes(damaged_preds.read_bytes()[:200])
    board = run_cli("leaderboard", "--results", str(out), "--leaderboard", str(out / "board.md"))
    assert board.returncode == 0 and str(damaged_json) in board.stderr and "finetune_seed0.json" in board.stderr
    assert "6 results" in board.stdout
    compared = run_cli("compare", "lamae", "random_init", "--results", str(out), "--resamples", "50")
    assert compared.returncode == 0 and "Traceback" not in compared.stderr, compared.stderr
    repaired = smoke_run(out)
    assert repaired.returncode == 0 and "8 cells: 6 finished already, 2 to run" in repaired.stderr, repaired.stderr
    assert len(list(ResultStore(out).records())) == 8


@pytest.mark.slow
def test_run_killed_at_random_points_resumes_without_redoing_cells_and_matches_an_uninterrupted_run(tmp_path):
    """SIGKILL several times at random moments (mid-pretraining, mid-sweep); the resumed
    sweep never recomputes a finished cell and ends with the uninterrupted run's numbers."""
    args = (
        "--seeds",
        "1",
        "--protocols",
        "linear,finetune,label_efficiency",
        "--set",
        "label_efficiency.protocols=linear",
        "--set",
        "pretrain.steps=24",
        "--set",
        "pretrain.checkpoint_every=4",
    )
    reference = tmp_path / "reference"
    assert smoke_run(reference, *args, methods="lamae").returncode == 0

    out, rng, kills = tmp_path / "killed", random.Random(5), 0
    moments = (
        lambda: list(out.rglob("last.pt")),  # mid-pretraining, then after 2, 5 and 8 of 12 cells
        lambda: len(result_files(out)) >= 2,
        lambda: len(result_files(out)) >= 5,
        lambda: len(result_files(out)) >= 8,
    )
    for moment in moments:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmark", *smoke_arguments(out, "lamae"), *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 600
        while process.poll() is None and time.time() < deadline and not moment():
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 1.0))  # a random point after the moment
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 3, "the run finished before it could be killed three times"
    finished_before = {f: f.stat().st_mtime_ns for f in result_files(out)}
    assert finished_before, "the run was killed before finishing any cell"

    resumed = smoke_run(out, *args, methods="lamae")
    assert resumed.returncode == 0, resumed.stderr
    assert all(f.stat().st_mtime_ns == t for f, t in finished_before.items()), "a finished cell was recomputed"
    assert same_numbers(out, reference)
    assert not list(out.rglob("*.tmp"))


def same_numbers(a, b) -> bool:
    """Both folders hold the same cells with identical metrics and identical test predictions."""
    files_a = [f.relative_to(a) for f in result_files(a)]
    if files_a != [f.relative_to(b) for f in result_files(b)]:
        return False
    for rel in files_a:
        if json.loads((a / rel).read_text())["metrics"] != json.loads((b / rel).read_text())["metrics"]:
            return False
        with np.load((a / rel).with_suffix(".preds.npz")) as x, np.load((b / rel).with_suffix(".preds.npz")) as y:
            if not all(np.array_equal(x[k], y[k]) for k in x.files):
                return False
    return True


@pytest.mark.slow
def test_the_same_command_twice_gives_identical_results_on_cpu(tmp_path):
    args = ("--protocols", "linear,attention_probe", "--set", "pretrain.steps=4")
    assert smoke_run(tmp_path / "a", *args, methods="lamae").returncode == 0
    assert smoke_run(tmp_path / "b", *args, methods="lamae").returncode == 0
    # lamae and random_init under both protocols, ecg_features under the linear probe only
    assert len(result_files(tmp_path / "a")) == 5 and same_numbers(tmp_path / "a", tmp_path / "b")


def test_help_is_plain_text(capsys):
    """--help of the tool and of every command: no RST or Markdown markup (issue 22)."""
    for command in (
        [],
        *(
            [name]
            for name in (
                "run",
                "status",
                "prepare",
                "list",
                "leaderboard",
                "compare",
                "export",
                "export-encoder",
                "validate",
                "new-method",
            )
        ),
    ):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        assert "`" not in capsys.readouterr().out, command


def test_a_result_names_the_commit_its_run_started_from(tmp_path, monkeypatch):
    """A cell that ends after the checkout moved on (a commit during a 100-minute pretraining) still
    names the commit whose code its process loaded: the runner reads the git state as the run starts."""
    import benchmark.provenance as provenance_module
    import benchmark.run.runner as runner_module
    from benchmark.cli import main

    head = ["a" * 40]
    monkeypatch.setattr(provenance_module, "git", lambda *args: head[-1] if args[0] == "rev-parse" else "")
    provenance_module.git_state.cache_clear()
    plan_run = runner_module.plan_run

    def planned_then_committed(request):
        plan = plan_run(request)
        head.append("b" * 40)  # the checkout moves on while the cells run
        return plan

    monkeypatch.setattr(runner_module, "plan_run", planned_then_committed)
    command = ["run", "--methods", "lamae", "--preset", "smoke", "--protocols", "linear", "--no-references"]
    try:
        assert main([*command, "--no-progress", "--results", str(tmp_path / "results")]) == 0
    finally:
        provenance_module.git_state.cache_clear()  # the other tests read the real checkout
    (record_path,) = result_files(tmp_path / "results")
    assert json.loads(record_path.read_text())["provenance"]["git"] == {"commit": "a" * 40, "dirty": False}
