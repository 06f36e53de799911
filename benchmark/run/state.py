"""Progress of a ``run`` you can trust: cells done / total, an ETA from measured times, the
current cell — printed as the run goes and left in the results tree, so that
``python -m benchmark status --results DIR`` can summarise a running or interrupted sweep from the
tree alone.

**The run-state file** (format 1). Every ``run`` process (rank 0 under torchrun) keeps one JSON
file, ``DIR/_runs/<run id>.json``, rewritten atomically (benchmark/storage.py) at every change of
cell and at most every few seconds while training::

    {"format": 1,
     "run_id": "host-4242-20261130T101500",   # host, pid, start time (UTC)
     "host": "host", "pid": 4242, "command": "python -m benchmark run ...",
     "started_at": "2026-11-30T10:15:00+00:00", "updated_at": "...",   # ISO 8601, UTC
     "state": "running",                        # running | finished | failed | interrupted
     "cells": ["synthetic/conditions/cpu/lamae/linear_seed0.json", ...],  # every cell of this run
     "found_finished": 4,                       # of them, finished before it started
     "current": {"cell": "synthetic/.../linear_seed0.json" or null,   # null while pretraining
                 "what": "pretraining lamae seed 0", "step": 340, "total": 600},   # or null
     "eta_s": 250.0,                             # null until something was timed
     "eta_unknown": ["finetune"],               # parts of the remaining work not timed yet
     "error": null}                             # the last error, one line

A cell is *finished* when its result file exists (benchmark/run/results.py), whoever wrote
it, so concurrent or sharded runs into one folder each keep their own file and ``status``
combines them. A process killed outright cannot write "interrupted": ``status`` tells that from
a pid that no longer runs (same host) or from an old ``updated_at``.

**The ETA** adds up measured times: seconds per pretraining step of each method, measured on that
method itself (another method's FLOP rate says little: Ind_P's vmapped private encoders ran at a
quarter of LAMAE's rate, and an ETA borrowed from LAMAE predicted 1 min 51 s for a pretraining
that took 6.5 min), and the mean seconds per cell of each protocol — from this run and from the
finished results already in the folder (each records its pretraining and protocol wall time). A
method not timed yet is named as such, and the ETA is then a lower bound ("ETA ≥ ...").
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shlex
import socket
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.run.results import RUNS, Cell, ResultStore, is_diverged
from benchmark.run.units import claims
from benchmark.storage import DamagedFileError, atomic_write, pid_alive, read_json

log = logging.getLogger("benchmark")

FORMAT = 1
HEARTBEAT_S = 5.0  # the file is rewritten at most this often while training
STALE_S = 30 * 60  # a "running" run of another host without an update for this long is reported as silent


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


class Eta:
    """Remaining time from measured times (see the module docstring)."""

    def __init__(self) -> None:
        self.step_s: dict[str, float] = {}  # method -> seconds per pretraining step
        self.cell_s: dict[str, list[float]] = defaultdict(list)  # protocol -> seconds per cell

    def add_pretraining(self, method: str, steps: int, wall_s: float) -> None:
        if steps > 0 and wall_s > 0:
            self.step_s[method] = wall_s / steps

    def add_cell(self, protocol: str, wall_s: float) -> None:
        self.cell_s[protocol].append(wall_s)

    def add_record(self, record: dict) -> None:
        """The times a finished result recorded."""
        pretrain = record["compute"].get("pretrain") or {}
        if pretrain.get("wall_s") and not is_diverged(record):
            self.add_pretraining(record["cell"]["method"], pretrain["steps"], pretrain["wall_s"])
        if record["compute"].get("protocol_wall_s") is not None:
            self.add_cell(record["cell"]["protocol"], record["compute"]["protocol_wall_s"])

    def remaining(self, pretraining: list[tuple[str, int]], protocols: list[str]) -> tuple[float | None, list[str]]:
        """Seconds for ``pretraining`` (method, steps left) and cells of ``protocols``; and the
        parts without a measurement (not counted in the seconds)."""
        total, unknown = 0.0, []
        for method, steps in pretraining:
            if method in self.step_s:
                total += steps * self.step_s[method]
            else:
                unknown.append(f"pretraining {method}")
        for protocol in protocols:
            times = self.cell_s.get(protocol)
            if times:
                total += sum(times) / len(times)
            else:
                unknown.append(protocol)
        unknown = list(dict.fromkeys(unknown))
        timed_anything = bool(self.step_s or self.cell_s)
        return (total if timed_anything else None), unknown


def describe_eta(eta_s: float | None, unknown: list[str]) -> str:
    if eta_s is None:
        return "ETA after the first timed step"
    if unknown:
        return f"ETA ≥ {format_duration(eta_s)} (not timed yet: {', '.join(unknown)})"
    return f"ETA {format_duration(eta_s)}"


@dataclass
class PendingPretraining:
    method: str
    steps: int
    step: int = 0  # reached so far


class RunProgress:
    """The progress of one ``run`` process: the log line, the ETA and the run-state file.

    ``cells``: every cell of the run with its protocol; ``finished``: those done before it
    started; ``pretraining``: (seed, method) -> pending pretraining (steps to run);
    ``write``: keep the run-state file (rank 0 only).
    """

    def __init__(
        self,
        root: Path,
        cells: dict[Cell, str],
        finished: set[Cell],
        pretraining: dict[tuple[int, str], PendingPretraining],
        eta: Eta,
        write: bool = True,
    ):
        self.store = ResultStore(root)
        self.cells, self.finished, self.pretraining, self.eta = cells, set(finished), pretraining, eta
        self.write = write
        started = dt.datetime.now(dt.UTC)
        self.state: dict[str, Any] = {
            "format": FORMAT,
            "run_id": f"{socket.gethostname()}-{os.getpid()}-{started.strftime('%Y%m%dT%H%M%S')}",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
            "started_at": started.isoformat(timespec="seconds"),
            "updated_at": None,
            "state": "running",
            "cells": [cell.relpath.as_posix() for cell in cells],
            "found_finished": len(self.finished),  # finished before it started (an earlier run, another machine)
            "current": None,
            "eta_s": None,
            "eta_unknown": [],
            "error": None,
        }
        self.path = Path(root) / RUNS / f"{self.state['run_id']}.json"
        self._current_pretraining: tuple[int, str] | None = None
        self._timed_from = (0, 0.0)  # (step, time) where this process started (or resumed) training
        self._last_write = 0.0
        self.save()

    # -- what the runner reports ----------------------------------------------------------------
    def start_pretraining(self, seed: int, method: str) -> None:
        """Pretraining (or, when its checkpoint is final already, loading) of a model."""
        pending = self.pretraining.get((seed, method))
        self._current_pretraining = (seed, method) if pending is not None else None
        self.state["current"] = {
            "cell": None,
            "what": f"pretraining {method} seed {seed}" if pending is not None else f"loading {method} seed {seed}",
            "step": None if pending is None else pending.step,
            "total": None if pending is None else pending.steps,
        }
        self.save()

    def on_start(self, step: int, total: int) -> None:
        """A training loop starts, or resumes at ``step`` (``TrainingMonitor.on_start``)."""
        self._timed_from = (step, time.perf_counter())
        self.on_log(step, total, {})

    def on_log(self, step: int, total: int, scalars: dict[str, float]) -> None:
        """A training loop's log interval (``TrainingMonitor.on_log``): heartbeat and timing."""
        current = self.state["current"]
        if current is not None:
            current["step"], current["total"] = step, total
        if self._current_pretraining is not None:
            pending = self.pretraining[self._current_pretraining]
            pending.step = step
            first, started = self._timed_from
            self.eta.add_pretraining(pending.method, step - first, time.perf_counter() - started)
        if time.perf_counter() - self._last_write >= HEARTBEAT_S:
            self.save()

    def end_pretraining(self) -> None:
        if self._current_pretraining is not None:
            self.pretraining.pop(self._current_pretraining, None)
        self._current_pretraining = None
        self.state["current"] = None
        self.save()

    def start_cell(self, cell: Cell) -> None:
        self.state["current"] = {"cell": cell.relpath.as_posix(), "what": cell.describe(), "step": None, "total": None}
        self.save()

    def end_cell(self, cell: Cell, wall_s: float | None) -> None:
        self.finished.add(cell)
        if wall_s is not None:
            self.eta.add_cell(self.cells[cell], wall_s)
        self.state["current"] = None
        self.save()

    def close(self, state: str, error: BaseException | None = None) -> None:
        self.state["state"] = state
        if error is not None:
            self.state["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if state == "finished":
            self.state["current"] = None
        try:
            self.save()
        except OSError as exc:
            if error is None:
                raise
            # the run fails already (often for the same cause: a full disk); that error is the one to report
            log.warning("could not record the %s run in %s: %s", state, self.path, exc.strerror or exc)

    # -- what it shows -------------------------------------------------------------------------
    def remaining(self) -> tuple[float | None, list[str]]:
        pretraining = [(p.method, p.steps - p.step) for p in self.pretraining.values()]
        protocols = [protocol for cell, protocol in self.cells.items() if cell not in self.finished]
        return self.eta.remaining(pretraining, protocols)

    def line(self) -> str:
        """``cells 3/12 done · ETA 4 min 10 s``"""
        return f"cells {len(self.finished)}/{len(self.cells)} done · {describe_eta(*self.remaining())}"

    def save(self) -> None:
        eta_s, unknown = self.remaining()
        self.state.update(updated_at=now_iso(), eta_s=eta_s, eta_unknown=unknown)
        self._last_write = time.perf_counter()
        if self.write:
            atomic_write(self.path, json.dumps(self.state, indent=1))


# -- status --------------------------------------------------------------------------------------
def read_runs(root: Path) -> list[dict]:
    """The run-state files under ``root``, oldest first; files of another format version are
    skipped. A file is replaced atomically, so a damaged one was damaged on disk or is not the
    suite's: :class:`~benchmark.storage.DamagedFileError` names it."""
    runs = []
    for path in sorted((Path(root) / RUNS).glob("*.json")):
        state = read_json(
            path,
            "delete it (it only records a run's progress; finished results are not affected), then run `status` again",
        )
        if state.get("format") == FORMAT:
            missing = sorted({"run_id", "started_at", "updated_at", "state", "cells"} - set(state))
            if missing:
                raise DamagedFileError(
                    f"{path} lacks {', '.join(missing)}; delete it (it only records a run's progress), then run "
                    f"`status` again"
                )
            runs.append(state)
    return sorted(runs, key=lambda s: s["started_at"])


def liveness(state: dict, now: dt.datetime | None = None) -> str:
    """What a run is doing now: its state, or why a "running" one is not running any more."""
    if state["state"] != "running":
        return state["state"]
    now = now or dt.datetime.now(dt.UTC)
    silent_s = (now - dt.datetime.fromisoformat(state["updated_at"])).total_seconds()
    if state["host"] == socket.gethostname():
        return "running" if pid_alive(state["pid"]) else "interrupted (its process is gone)"
    if silent_s > STALE_S:
        return f"silent for {format_duration(silent_s)} (killed, or in a long step)"
    return "running"


def describe_claims(root: Path) -> list[str]:
    """The pretrained models a process has claimed in the results folder (benchmark/run/units.py):
    which process on which host holds each, or that its holder died. Runs of several processes or
    a launcher's tasks share one folder, so this names who is doing what, and a claim a killed
    process left that the next run takes over. (Telling the two apart tries each free lock for an
    instant; a run that meets it then only comes back to that model at its end.)"""
    held = claims(root)
    if not held:
        return []
    lines = ["", "pretrained models claimed by a process:"]
    for claim in held:
        what = f"{claim.get('method', '?')} seed {claim.get('seed', '?')} ({claim.get('dataset', '?')}, {claim.get('preset', '?')})"
        state = (
            "running" if claim["state"] == "running" else "interrupted: its process died; the next run takes it over"
        )
        lines.append(f"  {what}: pid {claim['pid']} on {claim['host']} since {claim['started']}, {state}")
    return lines


def status_report(root: Path) -> str:
    """The summary ``python -m benchmark status`` prints."""
    store = ResultStore(root)
    records = {Path(r["_path"]).relative_to(store.root).as_posix(): r for r in store.records()}
    diverged = [r for r in records.values() if is_diverged(r)]
    runs = read_runs(root)
    now = dt.datetime.now(dt.UTC)
    lines = []
    running_cells: set[str] = set()
    planned: set[str] = set()
    shown = []
    for state in runs:
        alive = liveness(state, now)
        cells = state["cells"]
        planned.update(cells)
        current = state.get("current") or {}
        running = [current["cell"]] if alive == "running" and current.get("cell") not in (None, *records) else []
        running_cells.update(running)
        remaining = [c for c in cells if c not in records and c not in running]
        if alive == "running" or remaining or state is runs[-1]:
            shown.append((state, alive, running, remaining))
    remaining_total = planned - set(records) - running_cells
    lines.append(
        f"{root}: {len(records)} finished cells ({len(diverged)} diverged)"
        + (
            f"; of the {len(planned)} cells planned by {len(runs)} run(s): {len(planned & set(records))} finished, "
            f"{len(running_cells)} running, {len(remaining_total)} remaining"
            if runs
            else "; no run-state files (runs of this version leave them under _runs/)"
        )
    )
    for state, alive, running, remaining in shown:
        updated = dt.datetime.fromisoformat(state["updated_at"])
        lines += [
            "",
            f"run {state['run_id']}: {alive}; started {state['started_at']}, "
            f"last update {format_duration((now - updated).total_seconds())} ago",
            f"  command: {state['command']}",
            f"  cells: {len(state['cells']) - len(running) - len(remaining)}/{len(state['cells'])} finished, "
            f"{len(running)} running, {len(remaining)} remaining"
            + (
                f"; {state['found_finished']} of them were found finished when it started (computed earlier, by "
                f"another run or on another machine; their files name where)"
                if state.get("found_finished")
                else ""
            ),
        ]
        current = state.get("current")
        if alive == "running":
            if current:
                step = f", step {current['step']}/{current['total']}" if current.get("step") is not None else ""
                lines.append(f"  now: {current['what']}{step}")
            eta_s = state["eta_s"]
            if eta_s is not None:
                eta_s = max(0.0, eta_s - (now - updated).total_seconds())
            lines.append(f"  {describe_eta(eta_s, state['eta_unknown'])}")
        elif current:
            lines.append(f"  stopped during: {current['what']}")
        if remaining and alive != "running":
            lines.append(f"  next: {remaining[0]}" + (f" and {len(remaining) - 1} more" if len(remaining) > 1 else ""))
        lines.append(f"  last error: {state['error'] or 'none'}")
    lines += describe_claims(root)
    hidden = len(runs) - len(shown)
    if hidden:
        lines += ["", f"{hidden} earlier run(s) not shown: every cell they planned is finished now"]
    if diverged:
        lines += ["", "diverged cells:"]
        lines += [f"  {Cell(**r['cell']).describe()}: {r['failure']['message']}" for r in diverged]
    return "\n".join(lines)
