"""Shared fixtures: small in-memory datasets and paths to the real data in ../shared."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.data.contract import LEADS, ECGArrays

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600, env: dict[str, str] | None = None):
    """Run ``python -m benchmark ARGS`` in a subprocess (``env``: extra environment variables);
    returns the CompletedProcess."""
    import os
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(autouse=True)
def one_torch_thread(request):
    """In-process tests use tiny tensors, for which extra intra-op threads only contend: with one
    thread the contract tests ran 9x faster on a loaded 2-core machine. Benchmarks and subprocess
    runs keep torch's default thread count."""
    if request.node.get_closest_marker("benchmarks"):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the repository in CI)")
    return SHARED_DATA


def make_toy_arrays(n_patients: int = 60, n_samples: int = 500, seed: int = 0) -> ECGArrays:
    """Random-noise ECGs whose two labels are the amplitude of lead I and of lead V1 —
    learnable by any encoder that reads the right lead, so protocol tests can fail."""
    rng = np.random.default_rng(seed)
    n = 2 * n_patients
    patient = np.repeat(np.arange(n_patients), 2)
    labels = rng.integers(0, 2, size=(n, 2)).astype(np.uint8)
    t = np.arange(n_samples) / 100.0
    signals = 0.1 * rng.standard_normal((n, len(LEADS), n_samples))
    signals[:, 0] += (0.2 + labels[:, :1]) * np.sin(2 * np.pi * 1.2 * t)
    signals[:, 6] += (0.2 + labels[:, 1:]) * np.sin(2 * np.pi * 1.2 * t)
    order = rng.permutation(n_patients)
    parts = np.split(order, [int(0.4 * n_patients), int(0.7 * n_patients), int(0.8 * n_patients)])
    split_patients = {
        "pretrain": np.concatenate([parts[0], parts[1]]),
        "train": parts[1],
        "val": parts[2],
        "test": parts[3],
    }
    splits = {k: np.flatnonzero(np.isin(patient, v)) for k, v in split_patients.items()}
    return ECGArrays(
        name="toy",
        fs=100,
        signals=signals.astype(np.float32),
        lead_mask=np.ones((n, len(LEADS)), dtype=bool),
        labels=labels,
        label_names=["amp_I", "amp_V1"],
        patient_ids=patient,
        record_ids=np.array([f"r{i}" for i in range(n)]),
        splits=splits,
    )


@pytest.fixture
def toy_arrays() -> ECGArrays:
    return make_toy_arrays()
