"""The command line as a user meets it: errors, a full smoke run, skipping, kill and resume."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from benchmark.cli import main
from conftest import REPO, run_cli


@pytest.mark.parametrize("args, valid", [
    (["run", "--methods", "lamea"], "did you mean 'lamae'"),
    (["run", "--methods", "lamae", "--dataset", "ptb"], "Valid datasets:"),
    (["run", "--methods", "lamae", "--preset", "huge"], "valid presets: smoke, cpu, paper"),
    (["run", "--methods", "lamae", "--protocols", "linaer"], "did you mean 'linear'"),
    (["run", "--methods", "lamae", "--seeds", "two"], "give a count (3), a list (0,4,7) or a range (2-5)"),
    (["run", "--methods", "lamae", "--seeds", "1,1"], "all distinct"),
    (["run", "--methods", "lamae", "--set", "pretrain.stepz=3"], "did you mean 'steps'"),
    (["run", "--methods", "lamae", "--labels", "nope"], "valid: conditions, icd"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_with_exit_code_2(tmp_path, capsys, args, valid):
    code = main([*args, "--out", str(tmp_path)] if args[0] == "run" else args)
    stderr = capsys.readouterr().err
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert valid in lines[0]


def test_bad_input_from_a_real_process_has_no_traceback(tmp_path):
    result = run_cli("run", "--methods", "lamae,nope", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    assert "unknown method 'nope'" in result.stderr


def test_list_shows_every_kind_of_plugin():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    for name in ("lamae", "ind_p", "random_init", "scratch", "synthetic", "linear", "finetune", "smoke", "paper"):
        assert f"  {name} " in result.stdout


def smoke_run(out, *extra, **kwargs):
    return run_cli("run", "--methods", "lamae,ind_p", "--preset", "smoke", "--out", str(out),
                   "--leaderboard", str(out / "LEADERBOARD.md"), "--cache-dir", str(out.parent / "cache"),
                   "--no-progress", *extra, **kwargs)


def result_files(out):
    return sorted(p for p in out.rglob("*.json") if "_checkpoints" not in p.parts)


@pytest.mark.slow
def test_smoke_run_writes_results_leaderboard_and_skips_finished_cells(tmp_path):
    out = tmp_path / "results"
    first = smoke_run(out)
    assert first.returncode == 0, first.stderr
    files = result_files(out)
    names = {(f.parent.name, f.stem) for f in files}
    assert names == {("lamae", "linear_seed0"), ("lamae", "finetune_seed0"), ("ind_p", "linear_seed0"),
                     ("ind_p", "finetune_seed0"), ("random_init", "linear_seed0"), ("scratch", "finetune_seed0")}
    record = json.loads(files[0].read_text())
    for key in ("config", "metrics", "compute", "provenance", "signature", "predictions"):
        assert key in record
    assert record["provenance"]["git"]["commit"] and "torch" in record["provenance"]["packages"]
    assert record["metrics"]["n_labels_scored"] == len(record["metrics"]["per_label_auroc"]) > 0
    assert (files[0].parent / record["predictions"]).exists()
    board = (out / "LEADERBOARD.md").read_text()
    for method in ("lamae", "ind_p", "random_init", "scratch"):
        assert f"| {method} " in board
    assert "macro AUROC" in first.stdout  # the summary table

    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = smoke_run(out)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("finished already, skipping") == 6
    assert {f: f.stat().st_mtime_ns for f in result_files(out)} == stamps

    changed = smoke_run(out, "--set", "linear.max_iter=7")
    assert changed.returncode == 2 and "different configuration" in changed.stderr


@pytest.mark.slow
def test_killed_run_resumes_without_redoing_cells_and_matches_an_uninterrupted_run(tmp_path):
    longer = ("--set", "pretrain.steps=24", "--set", "pretrain.checkpoint_every=4")
    reference = tmp_path / "reference"
    assert smoke_run(reference, *longer).returncode == 0

    out = tmp_path / "killed"
    for wait_for in ("last.pt", "linear_seed0.json"):  # kill mid-pretraining, then after a finished cell
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmark", "run", "--methods", "lamae,ind_p", "--preset", "smoke",
             "--out", str(out), "--leaderboard", str(out / "LEADERBOARD.md"), "--cache-dir",
             str(tmp_path / "cache"), "--no-progress", *longer],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while not list(out.rglob(wait_for)) and time.time() < deadline and process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished_before = {f: f.stat().st_mtime_ns for f in result_files(out)}
    assert finished_before, "the run was killed before finishing any cell"

    resumed = smoke_run(out, *longer)
    assert resumed.returncode == 0, resumed.stderr
    assert all(f.stat().st_mtime_ns == t for f, t in finished_before.items()), "a finished cell was recomputed"
    ours = {f.relative_to(out): json.loads(f.read_text())["metrics"] for f in result_files(out)}
    theirs = {f.relative_to(reference): json.loads(f.read_text())["metrics"] for f in result_files(reference)}
    assert ours == theirs
    assert not list(out.rglob("*.tmp"))
