"""Several processes, one results folder: shards, launchers and concurrent runs give exactly the
cells of one process, each computed once, and a run into a scratch folder leaves the committed
leaderboard alone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from test_cli import result_files, same_numbers

from benchmark.cli import main
from benchmark.cli.common import default_leaderboard
from benchmark.config import ConfigError
from benchmark.run.launch import LaunchConfig, time_limit_minutes
from benchmark.run.results import Cell
from benchmark.run.state import status_report
from benchmark.run.units import Shard, Unit, claimed, claims, clear_interrupted, lock_path, owner_path
from benchmark.storage import FOREIGN_ORPHAN_AGE_S, remove_orphans

# identical numerics in every process (intra-op threads change float sums), and fast on a busy machine
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
LAMAE = Unit(0, "lamae")
CELLS = {"lamae / linear / seed 0", "random_init / linear / seed 0"}  # two units: lamae, random_init


def arguments(out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--methods",
        "lamae,random_init",  # two units; the other references add nothing to what fan-out must show
        "--no-references",
        "--preset",
        "smoke",
        "--protocols",
        "linear",
        "--results",
        str(out),
        "--cache-dir",
        str(cache),
        "--no-progress",
        *extra,
    ]


def start(out: Path, cache: Path, *extra: str, cwd: Path = REPO) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmark", *arguments(out, cache, *extra)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ONE_THREAD},
    )


def finish(process: subprocess.Popen) -> str:
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]
    return stderr


def cells_run(stderr: str) -> list[str]:
    """The cells a process computed, from its log."""
    return re.findall(r" · running (.+)$", stderr, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process computes the run: the results every fan-out must reproduce exactly."""
    root = tmp_path_factory.mktemp("scaleout")
    result = run_cli(*arguments(root / "reference", root / "cache"), env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(cells_run(result.stderr)) == CELLS
    return root, root / "reference"


# -- fast: sharing out, claims, orphans, options ----------------------------------------------
def test_shards_split_the_units_into_disjoint_shares_that_cover_them_all():
    shards = [Shard.parse(f"{i}/3") for i in range(3)]
    shares = [[position for position in range(10) if shard.selects(position)] for shard in shards]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    for bad in ("3/3", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(ConfigError, match="--shard"):
            Shard.parse(bad)


def test_a_claim_is_exclusive_names_its_owner_and_is_gone_after_release(tmp_path):
    path = lock_path(tmp_path, "synthetic", "smoke", LAMAE.method, LAMAE.seed)
    owner = {"method": "lamae", "seed": 0, "cells": ["synthetic/conditions/smoke/lamae/linear_seed0.json"]}
    with claimed(path, owner, wait=False) as held:
        assert held
        with claimed(path, {}, wait=False) as second:
            assert not second  # a second claimant (here another open file of this process) is refused
        (record,) = claims(tmp_path)
        assert record["state"] == "running" and record["pid"] == os.getpid() and record["cells"] == owner["cells"]
        assert f"lamae seed 0 (?, ?): pid {os.getpid()} on {record['host']} since" in status_report(tmp_path)
    assert claims(tmp_path) == [] and not owner_path(path).exists()


def test_a_waiting_claimant_gets_the_claim_when_its_holder_is_done(tmp_path):
    path = lock_path(tmp_path, "synthetic", "smoke", LAMAE.method, LAMAE.seed)
    holding, order = threading.Event(), []

    def holder():
        with claimed(path, {}, wait=False):
            holding.set()
            time.sleep(0.5)
            order.append("holder done")

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait(10)
    with claimed(path, {}, wait=True) as held:
        order.append("waiter got it")
        assert held
    thread.join()
    assert order == ["holder done", "waiter got it"]


def test_the_claim_of_a_killed_process_is_free_at_once_and_reported_interrupted(tmp_path):
    path = lock_path(tmp_path, "synthetic", "smoke", LAMAE.method, LAMAE.seed)
    code = (
        "import time; from pathlib import Path; from benchmark.run.units import claimed\n"
        f"with claimed(Path({str(path)!r}), {{'method': 'lamae'}}, wait=False) as held:\n"
        "    print(held, flush=True); time.sleep(600)\n"
    )

    def killed_holder() -> int:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "True"
        assert [c["state"] for c in claims(tmp_path)] == ["running"]
        process.send_signal(signal.SIGKILL)
        process.wait()
        return process.pid

    pid = killed_holder()
    (record,) = claims(tmp_path)
    assert record["state"] == "interrupted" and record["pid"] == pid
    assert f"lamae seed ? (?, ?): pid {pid} on {record['host']}" in status_report(tmp_path)
    assert "interrupted: its process died; the next run takes it over" in status_report(tmp_path)
    with claimed(path, {"method": "lamae"}, wait=False) as held:
        assert held and claims(tmp_path)[0]["pid"] == os.getpid()
        assert clear_interrupted(tmp_path) == 0  # a live owner's record stays
    killed_holder()
    assert clear_interrupted(tmp_path) == 1 and claims(tmp_path) == []  # what a new run does first


def test_orphaned_temporary_files_are_removed_by_host_and_pid(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    ours = tmp_path / f".a.json.{dead_pid}@{os.uname().nodename}.tmp"
    legacy = tmp_path / f".b.json.{dead_pid}.tmp"  # written before names carried the host
    alive = tmp_path / f".c.json.{os.getpid()}@{os.uname().nodename}.tmp"
    elsewhere_now = tmp_path / ".d.json.1@othernode.cluster.tmp"  # maybe being written on another node
    elsewhere_old = tmp_path / ".e.json.1@othernode.cluster.tmp"
    for path in (ours, legacy, alive, elsewhere_now, elsewhere_old):
        path.write_text("partial")
    old = time.time() - FOREIGN_ORPHAN_AGE_S - 60
    os.utime(elsewhere_old, (old, old))
    assert remove_orphans(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, elsewhere_now.name])


def test_launcher_options_are_checked_and_mapped_to_submitit():
    assert [time_limit_minutes(t) for t in ("90", "24:00:00", "1-00:00:30", "00:00:01")] == [90, 1440, 1441, 1]
    for bad in ("1h", "0", "24:00"):
        with pytest.raises(ConfigError, match="--time"):
            time_limit_minutes(bad)
    parameters = LaunchConfig("slurm", partition="gpu", gpus_per_task=2, time="2:00:00").executor_parameters()
    assert parameters == {
        "name": "ecgbench",
        "timeout_min": 120,
        "tasks_per_node": 2,  # one process per GPU: DDP inside the task
        "gpus_per_node": 2,
        "cpus_per_task": 8,
        "slurm_array_parallelism": 32,
        "slurm_partition": "gpu",
    }


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--jobs", "2"], "--jobs applies to --launcher local, not --launcher none"),
        (["--launcher", "local", "--partition", "gpu"], "--partition applies to --launcher slurm"),
        (["--launcher", "pbs"], "--launcher 'pbs': choose one of none, local, slurm"),
        (["--launcher", "local", "--jobs", "0"], "--jobs must be >= 1"),
        (["--shard", "2/2"], "need 0 <= I < N"),
        (["--shard", "0/2", "--leaderboard", "x.md"], "a shard writes no leaderboard"),
        (["--launcher", "slurm", "--time", "soon"], "--time 'soon'"),
    ],
)
def test_bad_fan_out_options_are_one_line_errors(tmp_path, capsys, extra, message):
    assert main(arguments(tmp_path / "out", tmp_path / "cache", *extra)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_slurm_launcher_without_slurm_says_what_to_use_instead(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    assert main(arguments(tmp_path / "out", tmp_path / "cache", "--launcher", "slurm")) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and ("sbatch is not on PATH" in error or "pip install 'ecgbench[cluster]'" in error)
    assert not list((tmp_path / "out").iterdir())  # refused before any work


def test_a_scratch_results_folder_gets_its_leaderboard_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_leaderboard(Path("results")) == Path("LEADERBOARD.md")
    assert default_leaderboard(tmp_path / "results") == Path("LEADERBOARD.md")
    assert default_leaderboard(Path("runs/x")) == Path("runs/x.md")
    assert default_leaderboard(Path("runs/x/")) == Path("runs/x.md")
    assert default_leaderboard(Path(".")) == tmp_path.parent / f"{tmp_path.name}.md"
    (tmp_path / "runs" / "x").mkdir(parents=True)
    assert main(["leaderboard", "--results", "runs/x"]) == 0
    assert (tmp_path / "runs" / "x.md").exists() and not (tmp_path / "LEADERBOARD.md").exists()


# -- end to end: the fan-outs reproduce the one-process run exactly --------------------------------
@pytest.mark.slow
def test_two_shards_in_parallel_give_exactly_the_results_of_one_process(reference):
    root, expected = reference
    out = root / "shards"
    shards = [start(out, root / "cache", "--shard", f"{i}/2") for i in range(2)]
    logs = [finish(shard) for shard in shards]
    assert [cells_run(log) for log in logs] == [["lamae / linear / seed 0"], ["random_init / linear / seed 0"]]
    assert same_numbers(out, expected)
    assert not (root / "shards.md").exists()  # written once, after all shards: by `leaderboard`
    assert main(["leaderboard", "--results", str(out)]) == 0 and (root / "shards.md").exists()


@pytest.mark.slow
def test_two_runs_into_one_scratch_folder_at_once_compute_every_cell_once_and_leave_the_committed_board(
    tmp_path, reference
):
    root, _ = reference
    checkout = tmp_path / "checkout"  # a clone with its committed leaderboard and plots
    (checkout / "leaderboard_plots").mkdir(parents=True)
    (checkout / "LEADERBOARD.md").write_text("committed\n\n![curve](leaderboard_plots/curve.png)\n")
    (checkout / "leaderboard_plots" / "curve.png").write_bytes(b"committed plot")
    slow = ("--set", "pretrain.steps=100")  # long enough that both runs plan before either finishes
    runs = [start(Path("runs/x"), root / "cache", *slow, cwd=checkout) for _ in range(2)]
    logs = [finish(run) for run in runs]
    assert all("2 cells: 0 finished already, 2 to run" in log for log in logs)  # truly concurrent
    computed = [cell for log in logs for cell in cells_run(log)]
    assert sorted(computed) == sorted(CELLS)  # each cell once, by one of the two
    assert len(result_files(checkout / "runs" / "x")) == 2 and not list(checkout.rglob("*.tmp"))
    assert (checkout / "LEADERBOARD.md").read_text().startswith("committed")
    assert (checkout / "leaderboard_plots" / "curve.png").read_bytes() == b"committed plot"
    assert "| lamae " in (checkout / "runs" / "x.md").read_text()


@pytest.mark.slow
def test_local_launcher_runs_single_thread_jobs_that_give_the_one_process_results(reference):
    root, expected = reference
    out = root / "local"
    log = finish(start(out, root / "cache", "--launcher", "local", "--jobs", "2"))
    assert sorted(cells_run(log)) == sorted(CELLS) and "[2/2 pretrained models]" in log
    assert same_numbers(out, expected)
    assert "| lamae " in (root / "local.md").read_text()  # the submitting process wrote it once


@pytest.mark.slow
def test_slurm_launcher_through_submitits_local_executor_with_ddp_tasks_gives_the_one_process_results(
    reference, monkeypatch
):
    """Two 'GPUs' per task on the CPU: each task is a DDP group of two gloo processes, which gives
    one process's results up to floating point (as under torchrun, tests/test_distributed.py)."""
    pytest.importorskip("submitit")
    from benchmark.run.launch import launch
    from benchmark.run.runner import RunRequest

    root, expected = reference
    for name, value in ONE_THREAD.items():
        monkeypatch.setenv(name, value)  # the tasks inherit it
    out = root / "submitit"
    request = RunRequest(
        methods=["lamae", "random_init"],
        preset="smoke",
        protocols=["linear"],
        results=out,
        cache_dir=root / "cache",
        progress=False,
        add_references=False,
    )
    records = launch(request, LaunchConfig("slurm", gpus_per_task=2, cpus_per_task=1, time="15", cluster="local"))
    assert len(records) == 2 and [f.relative_to(out) for f in result_files(out)] == [
        f.relative_to(expected) for f in result_files(expected)
    ]
    for record in records:
        theirs = json.loads((expected / Cell(**record["cell"]).relpath).read_text())
        # DDP's all-reduced gradients differ from one batch's by rounding, which the smoke probe's 30
        # unconverged L-BFGS iterations grow to ~1e-3 (as in tests/test_distributed.py)
        assert record["metrics"]["macro_auroc"] == pytest.approx(theirs["metrics"]["macro_auroc"], abs=5e-3)
    logs = sorted((out / "_jobs").rglob("*_log.err"))
    assert len(logs) == 4  # two tasks of two processes
    assert sum("running lamae / linear / seed 0" in log.read_text() for log in logs) == 1  # rank 0 logs
