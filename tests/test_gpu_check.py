"""The GPU check (benchmarks/gpu_check.sh) runs end to end on the CPU with a tiny configuration."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import REPO


@pytest.mark.slow
def test_gpu_check_measures_eager_compiled_and_largest_batch_steps(tmp_path):
    args = ["--preset", "smoke", "--methods", "lamae", "--set", "pretrain.batch_size=4", "--steps", "1"]
    args += ["--warmup", "1", "--max-batch", "8", "--compile-backend", "eager", "--peak-tflops", "1"]
    args += ["--device", "cpu", "--out", str(tmp_path)]
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = tmp_path.glob("gpu-check-*.json")
    payload = json.loads(result.read_text())
    rows = {row["mode"]: row for row in payload["rows"]}
    assert set(rows) == {"eager", "eager, largest batch", "compiled"}
    assert [rows[mode]["batch"] for mode in ("eager", "eager, largest batch", "compiled")] == [4, 8, 4]
    for row in rows.values():
        assert row["ECG/s"] > 0 and row["TFLOP/s"] > 0
        assert row["MFU"] == pytest.approx(row["TFLOP/s"])  # against the 1 TFLOP/s peak given
    assert payload["skipped"] == []
    assert "| lamae" in result.with_suffix(".md").read_text()


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--methods", "lamea"], "lamea"),
        (["--methods", "lamae", "--set", "lamae.la_depth=3"], "--methods 'lamae[la_depth=3]'"),  # one way: brackets
    ],
)
def test_gpu_check_refuses_an_unknown_method_or_a_methods_set_in_one_line(argv, named, tmp_path):
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), *argv, "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert named in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())
