"""Where a result came from: code version, package versions, hardware, time."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

PACKAGES = ("ecgbench", "torch", "timm", "numpy", "scipy", "scikit-learn", "pandas", "wfdb", "einops")


def git(*args: str) -> str | None:
    """``git ARGS`` in the checkout holding the benchmark code (None where git or the checkout is missing)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def git_state() -> dict:
    """Commit of the checkout holding the benchmark code, and whether it had local changes — read once
    per process, which the runner does as a run starts (:func:`benchmark.run.runner.plan_run`): a
    result names the code its process loaded, not the checkout as it was when a long cell ended."""
    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "benchmark", "methods", "datasets")
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {cpu_name()}, {torch.get_num_threads()} threads"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def provenance(device: torch.device) -> dict:
    return {
        "git": git_state(),
        "packages": package_versions(),
        "device": describe_device(device),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
