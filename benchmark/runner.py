"""The benchmark loop, end to end: load the data once, give every method its share of the
compute budget, list the cells (method x protocol x variant x seed) and skip the finished
ones, then for every seed and method (a unit: one pretrained model) claim it, pretrain (or
resume, or load the checkpoint) and run its unfinished cells.

Readable in one sitting on purpose (after lightly's ``benchmarks/imagenet/*/main.py``): every
other module is a piece this loop calls.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.build import (
    architectures,
    build_dataset,
    build_method,
    build_protocols,
    check_scopes,
    method_config,
    resolve_methods,
)
from benchmark.config import signature, to_jsonable
from benchmark.data.contract import ECGArrays, InputSpec, data_identity, default_cache_root
from benchmark.data.duplicates import guard_duplicates
from benchmark.data.pool import parse_pool, pretraining_pool
from benchmark.eval.metrics import classification_report
from benchmark.eval.protocol import CellContext
from benchmark.eval.sweep import Evaluation, expand
from benchmark.method.base import Method, MethodConfig
from benchmark.presets import Preset, get_preset
from benchmark.provenance import provenance
from benchmark.registry import METHODS, load_plugin_file
from benchmark.report.results import Cell, ResultStore
from benchmark.storage import remove_orphans
from benchmark.train import distributed
from benchmark.train.budget import FlopsMeter, PretrainPlan, parse_budget, plan_pretraining
from benchmark.train.flops import parameter_counts
from benchmark.train.pretrain import pretrain
from benchmark.train.runtime import resolve_device, set_seed
from benchmark.work import Shard, Unit, claimed, clear_interrupted, lock_path

log = logging.getLogger("benchmark")


@dataclass
class RunRequest:
    methods: list[str]
    dataset: str = "synthetic"
    label_set: str | None = None
    preset: str = "cpu"
    seeds: list[int] = field(default_factory=lambda: [0])
    protocols: list[str] | None = None  # None: the preset's defaults
    out: Path = Path("results")
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    plugins: list[Path] = field(default_factory=list)
    device: str = "auto"
    rerun: bool = False
    add_references: bool = True
    progress: bool = True
    cache_root: Path = field(default_factory=default_cache_root)
    profile_dir: Path | None = None  # trace the first pretraining epoch with torch.profiler
    pretrain_data: list[str] = field(default_factory=list)  # NAME[:ROOT] pool replacing the dataset's pretrain split
    duplicates: str = "refuse"  # pretraining/training records that ARE val/test recordings: refuse | drop
    shard: Shard | None = None  # run only this share of the pretrained models (--shard I/N)
    units: list[Unit] | None = None  # run only these pretrained models (one task of a launcher)


@dataclass
class PlannedCell:
    cell: Cell
    evaluation: Evaluation
    identity: dict  # everything that produced the result (its signature keys the result file)
    signature: str


def plan_budgets(methods: list[str], preset: Preset, overrides: dict, meter: FlopsMeter) -> dict[str, PretrainPlan]:
    """Steps and FLOPs of every pretraining method under the preset's compute budget."""
    budget = parse_budget(preset.pretrain.budget)
    if budget.method is not None:
        METHODS.get(budget.method)  # an unknown reference method fails before any work
    plans = {}
    for name in methods:
        if METHODS.get(name).pretrains:
            plans[name] = plan_pretraining(
                build_method(name, preset, overrides),
                preset.pretrain.steps,
                preset.pretrain.batch_size,
                budget,
                meter,
                lambda reference: build_method(reference, preset, overrides),
            )
            log.info(
                "%s: %.3g FLOPs/step x %d steps = %.3g FLOPs (budget %s)",
                name,
                plans[name].flops_per_step,
                plans[name].steps,
                plans[name].total_flops,
                budget.text,
            )
    return plans


def cell_record(
    planned: PlannedCell,
    preset: Preset,
    output,
    label_names: list[str],
    method: Method,
    plan: PretrainPlan | None,
    pretrain_report,
    wall_s: float,
    device,
) -> dict:
    return {
        "signature": planned.signature,
        "config": to_jsonable({**planned.identity, "preset": preset.name}),
        "label_names": list(label_names),  # the columns of the saved predictions
        "metrics": classification_report(output.prediction.y_true, output.prediction.y_score, label_names),
        "details": to_jsonable(output.details),
        "compute": {
            **parameter_counts(method),
            "pretrain": None if plan is None else {**to_jsonable(pretrain_report), **plan.as_record()},
            "protocol_wall_s": wall_s,
        },
        "provenance": provenance(device),
    }


def rebuilder(method_cls: type[Method], config: MethodConfig, input_spec: InputSpec, state: dict):
    """``rebuild(**changes)``: a fresh copy of the (pre)trained model with some config fields
    changed (fine-tuning's drop_path), so protocols never mutate the shared model."""

    def rebuild(**changes) -> Method:
        fresh = method_cls(dataclasses.replace(config, **changes), input_spec)
        fresh.load_state_dict(state)
        return fresh

    return rebuild


@dataclass
class RunPlan:
    """What every process of a run agrees on: the data, the pretraining budgets, and every cell of
    the run grouped by the pretrained model it evaluates."""

    request: RunRequest
    preset: Preset
    dataset: str  # the name its results are filed under
    arrays: ECGArrays
    pretrain_arrays: ECGArrays
    store: ResultStore
    device: torch.device
    progress: bool
    plans: dict[str, PretrainPlan]
    units: dict[Unit, list[PlannedCell]]  # every unit of the run, in order, with all its cells
    todo: dict[Unit, list[PlannedCell]]  # the units with unfinished cells, with those cells
    cells_done: int = 0  # by this process ...
    cells_mine: int = 0  # ... of the unfinished cells of its units

    def mine(self) -> list[Unit]:
        """The units with unfinished cells that this process runs: all of them, or its shard's
        (counted over all units of the run), or those it was launched for."""
        request = self.request
        return [
            unit
            for position, unit in enumerate(self.units)
            if unit in self.todo
            and (request.shard is None or request.shard.selects(position))
            and (request.units is None or unit in request.units)
        ]

    def claim(self, unit: Unit, wait: bool):
        """The unit's claim in the results folder (see :mod:`benchmark.work`)."""
        dataset, preset = self.dataset, self.preset.name
        owner = {
            "dataset": dataset,
            "preset": preset,
            "method": unit.method,
            "seed": unit.seed,
            "cells": [planned.cell.relpath.as_posix() for planned in self.todo[unit]],
        }
        return claimed(lock_path(self.store.root, dataset, preset, unit), owner, wait)

    def records(self) -> list[dict]:
        """The records of every cell of the run that is finished (by any process)."""
        loaded = (self.store.load(planned.cell) for cells in self.units.values() for planned in cells)
        return [record for record in loaded if record is not None]


def plan_run(request: RunRequest) -> RunPlan:
    """Load the data (preparing its cache once), give every method its share of the compute
    budget, and list every cell of the run, marking the finished ones (a result with another
    signature is refused)."""
    for path in request.plugins:
        load_plugin_file(path)
    preset = get_preset(request.preset).with_overrides(request.overrides)
    requested, base_protocols = build_protocols(request.protocols or list(preset.default_protocols), preset)
    methods = resolve_methods(request.methods, list(base_protocols.values()), request.add_references)
    pool_names = [name for name, _ in parse_pool(request.pretrain_data)]
    dataset = build_dataset(request.dataset, preset, request.overrides)
    check_scopes(
        request.overrides,
        {
            "method": architectures(methods, preset, request.overrides),
            "dataset": list(dict.fromkeys([request.dataset, *dataset.member_names(), *pool_names])),
            "protocol": [*requested, *base_protocols],
        },
    )
    label_set = request.label_set or dataset.label_sets[0]
    dataset.check_label_set(label_set)
    device = resolve_device(request.device)
    store = ResultStore(request.out)
    if distributed.is_main():
        remove_orphans(store.root)  # temporary files of a killed earlier run ...
        clear_interrupted(store.root)  # ... and who its claims belonged to
    progress = request.progress and distributed.is_main()

    log.info("loading %s (%s labels) at %d Hz", dataset.name, label_set, preset.input.fs)
    if not distributed.is_main():
        distributed.barrier()  # rank 0 prepares (or generates) the caches first, alone
    arrays = dataset.load(preset.input.fs, label_set, request.cache_root, progress)
    pretrain_arrays, pool_identity = pretraining_pool(
        request.pretrain_data,
        dataset,
        arrays,
        lambda name, overrides: build_dataset(name, preset, overrides),
        request.overrides,
        preset.input.fs,
        request.cache_root,
        progress,
    )
    arrays, pretrain_arrays, dropped = guard_duplicates(
        arrays,
        pretrain_arrays,
        request.duplicates,
        store.root / f"duplicates-{dataset.result_name}-{label_set}.csv",
    )
    if distributed.is_main():
        distributed.barrier()
    log.info("%d records: %s", len(arrays.signals), ", ".join(f"{k} {len(v)}" for k, v in arrays.splits.items()))
    evaluations = expand(requested, base_protocols, arrays)
    plans = plan_budgets(methods, preset, request.overrides, FlopsMeter(store.flops_dir, device))
    data = {**data_identity(dataset, arrays), "input": preset.input}  # content, not location
    if dropped:  # the data differ from an unguarded run's: so must the signatures
        data["dropped_duplicates"] = dropped

    units: dict[Unit, list[PlannedCell]] = {}
    todo: dict[Unit, list[PlannedCell]] = {}
    for seed, method_name in itertools.product(request.seeds, methods):
        method_cls = METHODS.get(method_name)
        pretrain_config = (
            dataclasses.replace(preset.pretrain, steps=plans[method_name].steps) if method_cls.pretrains else None
        )
        pretrain_identity = {
            **data,
            "method": method_name,
            "seed": seed,
            "pretrain": pretrain_config,
            "method_config": method_config(method_cls, preset, request.overrides),
        }
        if pool_identity and method_cls.pretrains:
            pretrain_identity["pretrain_data"] = pool_identity
        unit = Unit(seed, method_name)
        units[unit] = []
        for evaluation in evaluations:
            if not evaluation.protocol.applies_to(method_cls):
                continue
            cell = Cell(
                dataset.result_name,
                label_set,
                preset.name,
                method_name,
                evaluation.protocol_name,
                seed,
                evaluation.variant.name,
            )
            identity = {
                **pretrain_identity,
                "label_set": label_set,
                "protocol": evaluation.protocol_name,
                "protocol_config": evaluation.protocol.config,
                "variant": evaluation.variant.identity,
            }
            planned = PlannedCell(cell, evaluation, identity, signature(identity))
            units[unit].append(planned)
            if request.rerun or not store.is_finished(cell, planned.signature):
                todo.setdefault(unit, []).append(planned)
    n_cells, n_todo = sum(map(len, units.values())), sum(map(len, todo.values()))
    log.info("%d cells: %d finished already, %d to run", n_cells, n_cells - n_todo, n_todo)
    return RunPlan(
        request, preset, dataset.result_name, arrays, pretrain_arrays, store, device, progress, plans, units, todo
    )


def run(request: RunRequest) -> list[dict]:
    """Run every unfinished cell of the request (of this process's units: see :meth:`RunPlan.mine`)
    and return the records of all its finished cells.

    Each unit is claimed first, so that processes running into one results folder at the same
    time never do the same work: a unit another process holds is left for later, and once this
    process has done all else it waits for that unit and runs what the other left undone.
    """
    plan = plan_run(request)
    mine = plan.mine()
    plan.cells_mine = sum(len(plan.todo[unit]) for unit in mine)
    if len(mine) < len(plan.todo):
        log.info("this process runs %d of the %d pretrained models with unfinished cells", len(mine), len(plan.todo))
    held_elsewhere = []
    for unit in mine:
        with plan.claim(unit, wait=False) as held:
            if held:
                run_unit(plan, unit)
            else:
                log.info("%s is being run by another process; coming back to it at the end", unit.describe())
                held_elsewhere.append(unit)
    for unit in held_elsewhere:
        with plan.claim(unit, wait=True):
            run_unit(plan, unit)
    return plan.records()


def run_unit(plan: RunPlan, unit: Unit) -> None:
    """Pretrain (or resume, or load the checkpoint of) one method at one seed, then run its
    unfinished cells. Called with the unit claimed; cells another process finished meanwhile are
    skipped."""
    request, preset, store = plan.request, plan.preset, plan.store
    cells = [p for p in plan.todo[unit] if request.rerun or not store.is_finished(p.cell, p.signature)]
    if not cells:
        log.info("%s: finished by another process", unit.describe())
        return
    seed, method_name = unit.seed, unit.method
    identity = cells[0].identity
    method_cls = METHODS.get(method_name)
    set_seed(seed)
    method = method_cls(identity["method_config"], preset.input)
    pretrain_report = None
    if method_cls.pretrains:
        pretrain_keys = (
            "dataset",
            "dataset_config",
            "data",
            "input",
            "method",
            "method_config",
            "seed",
            "pretrain",
            "pretrain_data",
        )
        checkpoints = store.checkpoint_dir(
            plan.dataset,
            preset.name,
            method_name,
            seed,
            signature({k: identity[k] for k in pretrain_keys if k in identity}),
        )
        pretrain_report = pretrain(
            method,
            plan.pretrain_arrays,
            identity["pretrain"],
            seed,
            plan.device,
            checkpoints,
            plan.progress,
            request.profile_dir,
        )
    rebuild = rebuilder(
        method_cls,
        identity["method_config"],
        preset.input,
        {k: v.detach().clone() for k, v in method.state_dict().items()},
    )

    shared_outputs: dict = {}  # frozen features of this pretrained model, shared by its cells
    for planned in cells:
        plan.cells_done += 1
        log.info("[%d/%d] running %s", plan.cells_done, plan.cells_mine, planned.cell.describe())
        variant = planned.evaluation.variant
        set_seed(seed)
        started = time.perf_counter()
        output = planned.evaluation.protocol.run(
            CellContext(
                rebuild(),
                rebuild,
                plan.arrays,
                seed,
                plan.device,
                plan.progress,
                train_indices=variant.train_indices,
                lead_subset=variant.lead_subset,
                cache=shared_outputs,
            )
        )
        record = cell_record(
            planned,
            preset,
            output,
            plan.arrays.label_names,
            method,
            plan.plans.get(method_name),
            pretrain_report,
            time.perf_counter() - started,
            plan.device,
        )
        if distributed.is_main():  # under torchrun only rank 0 writes
            path = store.write(planned.cell, record, output.prediction)
            log.info(
                "%s: macro AUROC %.4f -> %s",
                planned.cell.describe(),
                record["metrics"]["macro_auroc"] or float("nan"),
                path,
            )
        distributed.barrier()
