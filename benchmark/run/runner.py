"""The benchmark loop, end to end: load the data once, give every method its share of the
compute budget, list the cells (method x protocol x variant x seed) and skip the finished
ones, then for every seed and method (a unit: one pretrained model) claim it, pretrain (or
resume, or load the checkpoint) and run its unfinished cells.

A training loss that becomes NaN or infinite does not stop the run: the cells of that
pretrained model (or the one fine-tuning cell) are recorded as diverged and the run goes on.
Progress (cells done / total, ETA, current cell) is logged and kept in the run-state file that
``python -m benchmark status`` reads (benchmark/run/state.py).

Readable in one sitting on purpose (after lightly's ``benchmarks/imagenet/*/main.py``): every
other module is a piece this loop calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import inspect
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.config import ConfigError, signature, to_jsonable
from benchmark.data.contract import ECGArrays, InputSpec, data_identity, default_cache_root
from benchmark.data.duplicates import guard_duplicates
from benchmark.data.pool import parse_pool, pretraining_pool
from benchmark.eval.protocol import CellContext
from benchmark.eval.sweep import Evaluation, expand
from benchmark.method.base import Method
from benchmark.method.external import check_data, check_feedable, external_pretraining
from benchmark.method.spec import MethodSpec
from benchmark.nn import distributed
from benchmark.nn.metrics import classification_report
from benchmark.nn.monitor import NonFiniteLossError, TrainingMonitor, require_tensorboard
from benchmark.provenance import git_state, provenance
from benchmark.registry import METHODS, load_plugin_file
from benchmark.run.build import (
    build_dataset,
    build_method,
    build_protocols,
    check_scopes,
    resolve_method,
    resolve_methods,
)
from benchmark.run.presets import Preset, get_preset
from benchmark.run.results import IDENTITY, PRETRAIN_KEYS, TENSORBOARD, Cell, ResultStore, pretraining_signature
from benchmark.run.state import Eta, PendingPretraining, RunProgress
from benchmark.run.units import Shard, Unit, claimed, clear_interrupted, lock_path
from benchmark.storage import DamagedFileError, atomic_write, read_json, remove_orphans
from benchmark.train.budget import FlopsMeter, PretrainPlan, parse_budget, plan_pretraining
from benchmark.train.flops import parameter_counts
from benchmark.train.pretrain import pretrain
from benchmark.train.runtime import resolve_device, set_seed

log = logging.getLogger("benchmark")


@dataclass
class RunRequest:
    methods: list[str]
    dataset: str = "synthetic"
    label_set: str | None = None
    preset: str = "cpu"
    seeds: list[int] = field(default_factory=lambda: [0])
    protocols: list[str] | None = None  # None: the preset's defaults
    results: Path = Path("results")
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    plugins: list[Path] = field(default_factory=list)
    device: str = "auto"
    rerun: bool = False
    add_references: bool = True
    progress: bool = True
    cache_dir: Path = field(default_factory=default_cache_root)
    profile: Path | None = None  # trace the first pretraining epoch with torch.profiler
    pretrain_data: list[str] = field(default_factory=list)  # NAME[:ROOT] pool replacing the dataset's pretrain split
    log: str | None = None  # "tensorboard": event files of every training run under OUT/_tensorboard/
    duplicates: str = "refuse"  # pretraining/training records that ARE val/test recordings: refuse | drop
    shard: Shard | None = None  # run only this share of the pretrained models (--shard I/N)
    units: list[Unit] | None = None  # run only these pretrained models (one task of a launcher)


@dataclass
class PlannedCell:
    cell: Cell
    spec: MethodSpec  # the method it evaluates, resolved once for the run
    evaluation: Evaluation
    identity: dict  # everything that produced the result (its signature keys the result file)
    signature: str


def check_batch_fits(pretrain_arrays: ECGArrays, batch_size: int) -> None:
    """Refuse a pretraining batch larger than the pretraining split before anything is built for
    it (counting FLOPs runs one full batch: 100000 records would be an allocation failure, not
    this message)."""
    n = len(pretrain_arrays.splits["pretrain"])
    if n < batch_size:
        raise ConfigError(
            f"{pretrain_arrays.name}: the pretraining split ({n} records) is smaller than one batch of {batch_size}; "
            f"lower --set pretrain.batch_size (at most {n}) or pretrain on more data (--pretrain-data)"
        )


def plan_budgets(specs: list[MethodSpec], preset: Preset, meter: FlopsMeter) -> dict[str, PretrainPlan]:
    """Steps and FLOPs of every pretraining method under the preset's compute budget (by name)."""
    budget = parse_budget(preset.pretrain.budget)
    if budget.method is not None:  # an unknown reference method or variant fails before any work
        budget = dataclasses.replace(budget, method=resolve_method(budget.method).name)
    plans = {}
    for spec in specs:
        if spec.cls.pretrains:
            plans[spec.name] = plan = plan_pretraining(
                spec.build(preset.input),
                preset.pretrain.steps,
                preset.pretrain.batch_size,
                budget,
                meter,
                lambda reference: build_method(reference, preset),
                name=spec.name,
            )
            log.info(
                "%s: %.3g FLOPs/step x %d steps = %.3g FLOPs (budget %s)",
                spec.name,
                plan.flops_per_step,
                plan.steps,
                plan.total_flops,
                budget.text,
            )
    return plans


def cell_record(
    planned: PlannedCell,
    preset: Preset,
    labels: ECGArrays,
    method: Method,
    pretrain_compute: dict | None,
    wall_s: float | None,
    device,
    output=None,
    failure: NonFiniteLossError | None = None,
) -> dict:
    """A cell's result: scored ``output``, or the ``failure`` of a diverged training; ``labels``:
    the arrays whose label names and descriptions it records."""
    record = {
        "signature": planned.signature,
        "config": to_jsonable({**planned.identity, "preset": preset.name}),
        "label_names": list(labels.label_names),  # the columns of the saved predictions
        # what each label means, shown beside its code in reports (I48: atrial fibrillation and flutter)
        "label_descriptions": {
            n: labels.label_descriptions[n] for n in labels.label_names if labels.label_descriptions.get(n)
        },
    }
    if output is not None:
        record["metrics"] = classification_report(
            output.prediction.y_true, output.prediction.y_score, labels.label_names
        )
        record["details"] = to_jsonable(output.details)
        downstream = to_jsonable(output.compute) or None
    elif failure is not None:
        record["failure"] = failure.as_record()
        record["details"] = {"val_history": failure.curve} if failure.stage == "fine-tuning" else {}
    record["compute"] = {
        **parameter_counts(method),
        "pretrain": pretrain_compute,
        "downstream": downstream if output is not None else None,
        "protocol_wall_s": wall_s,
    }
    record["provenance"] = provenance(device)
    return record


def diverged_pretraining(plan: PretrainPlan, failure: NonFiniteLossError) -> dict:
    """The compute record of a pretraining that diverged: the plan, and the curve up to the failure."""
    return {
        **plan.as_record(),
        "wall_s": failure.wall_s,
        "final_loss": None,
        "loss_curve": failure.curve,
        "peak_memory_mb": None,
        "diverged_at_step": failure.step,
    }


def rebuilder(spec: MethodSpec, input_spec: InputSpec, state: dict):
    """``rebuild(**changes)``: a fresh copy of the (pre)trained model with some config fields
    changed (fine-tuning's drop_path), so protocols never mutate the shared model."""

    def rebuild(**changes) -> Method:
        fresh = spec.cls(dataclasses.replace(spec.config, **changes), input_spec)
        fresh.load_state_dict(state)
        return fresh

    return rebuild


#: what a seed-independent method's frozen outputs depend on ("data": the content fingerprint)
FROZEN_OUTPUT_KEYS = ("dataset", "dataset_config", "data", "dropped_duplicates", "input", "method", "method_config")


def frozen_outputs_signature(method_cls: type[Method], identity: dict) -> str:
    """What a seed-independent method's frozen outputs depend on: the data, the input, its
    configuration, its code and the versions of the packages it requires."""
    source = inspect.getsourcefile(method_cls)
    return signature(
        {
            **{k: identity[k] for k in FROZEN_OUTPUT_KEYS if k in identity},
            "code": hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else None,
            "packages": {name: importlib.metadata.version(name) for name in method_cls.requires},
        }
    )


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
    specs: dict[str, MethodSpec]  # every method of the run by its canonical name
    units: dict[Unit, list[PlannedCell]]  # every unit of the run, in order, with all its cells
    todo: dict[Unit, list[PlannedCell]]  # the units with unfinished cells, with those cells
    #: frozen outputs of seed-independent methods, shared across seeds (method -> outputs)
    seed_independent_outputs: dict[str, dict] = field(default_factory=dict)

    def share(self) -> list[Unit]:
        """The units of this process, finished or not: all of the run's, or its shard's (counted
        over all units of the run), or those it was launched for."""
        request = self.request
        return [
            unit
            for position, unit in enumerate(self.units)
            if (request.shard is None or request.shard.selects(position))
            and (request.units is None or unit in request.units)
        ]

    def mine(self) -> list[Unit]:
        """The units of this process's share with unfinished cells: the ones it runs."""
        return [unit for unit in self.share() if unit in self.todo]

    def claim(self, unit: Unit, wait: bool):
        """The unit's claim in the results folder (see :mod:`benchmark.run.units`)."""
        dataset, preset = self.dataset, self.preset.name
        owner = {
            "dataset": dataset,
            "preset": preset,
            "method": unit.method,
            "seed": unit.seed,
            "cells": [planned.cell.relpath.as_posix() for planned in self.todo[unit]],
        }
        path = lock_path(self.store.root, dataset, preset, self.specs[unit.method].file_name, unit.seed)
        return claimed(path, owner, wait)

    def records(self) -> list[dict]:
        """The records of every cell of the run that is finished (by any process)."""
        loaded = (self.store.load(planned.cell) for cells in self.units.values() for planned in cells)
        return [record for record in loaded if record is not None]


def plan_run(request: RunRequest) -> RunPlan:
    """Load the data (preparing its cache once), give every method its share of the compute
    budget, and list every cell of the run, marking the finished ones (a result with another
    signature is refused)."""
    git_state()  # the code this process loads now is what its results will name (benchmark/provenance.py)
    for path in request.plugins:
        load_plugin_file(path)
    if request.log == "tensorboard":
        require_tensorboard()  # before any work
    preset = get_preset(request.preset).with_overrides(request.overrides)
    requested, base_protocols = build_protocols(request.protocols or list(preset.default_protocols), preset)
    check_scopes(  # method scopes first: refused before any method is built without them
        {scope: settings for scope, settings in request.overrides.items() if scope in METHODS}, {}
    )
    specs = resolve_methods(request.methods, list(base_protocols.values()), request.add_references, preset)
    protocol_names = [*requested, *base_protocols]
    for spec in specs:  # an external encoder the prepared data cannot feed is refused before any work
        check_feedable(spec.cls, preset.input.fs, protocol_names)
    pool_names = [name for name, _ in parse_pool(request.pretrain_data)]
    dataset = build_dataset(request.dataset, preset, request.overrides)
    check_scopes(
        request.overrides,
        {
            "dataset": list(dict.fromkeys([request.dataset, *dataset.member_names(), *pool_names])),
            "protocol": protocol_names,
        },
    )
    label_set = request.label_set or dataset.label_sets[0]
    dataset.check_label_set(label_set)
    if request.log == "tensorboard":
        log.info("%s", tensorboard_hint(Path(request.results)))
    device = resolve_device(request.device)
    store = ResultStore(request.results)
    if distributed.is_main():
        remove_orphans(store.root)  # temporary files of a killed earlier run ...
        clear_interrupted(store.root)  # ... and who its claims belonged to
    progress = request.progress and distributed.is_main()

    log.info("loading %s (%s labels) at %d Hz", dataset.name, label_set, preset.input.fs)
    if not distributed.is_main():
        distributed.barrier()  # rank 0 prepares (or generates) the caches first, alone
    arrays = dataset.load(preset.input.fs, label_set, request.cache_dir, progress)
    pretrain_arrays, pool_identity = pretraining_pool(
        request.pretrain_data,
        dataset,
        arrays,
        lambda name, overrides: build_dataset(name, preset, overrides),
        request.overrides,
        preset.input.fs,
        request.cache_dir,
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
    if any(spec.cls.pretrains for spec in specs):
        check_batch_fits(pretrain_arrays, preset.pretrain.batch_size)
    for spec in specs:
        check_data(spec.cls, arrays)
    evaluations = expand(requested, base_protocols, arrays)
    meter = FlopsMeter(store.flops_dir, device)
    plans = plan_budgets(specs, preset, meter)
    data = {**data_identity(dataset, arrays), "input": preset.input}  # content, not location
    if dropped:  # the data differ from an unguarded run's: so must the signatures
        data["dropped_duplicates"] = dropped
    units: dict[Unit, list[PlannedCell]] = {}
    todo: dict[Unit, list[PlannedCell]] = {}
    for seed, spec in itertools.product(request.seeds, specs):
        pretrain_config = (
            dataclasses.replace(preset.pretrain, steps=plans[spec.name].steps) if spec.cls.pretrains else None
        )
        pretrain_identity = {
            **data,
            "method": spec.name,
            "seed": seed,
            "pretrain": pretrain_config,
            "method_config": spec.config,
        }
        if pool_identity and spec.cls.pretrains:
            pretrain_identity["pretrain_data"] = pool_identity
        unit = Unit(seed, spec.name)
        units[unit] = []
        for evaluation in evaluations:
            if not evaluation.protocol.applies_to(spec.cls):
                continue
            cell = Cell(
                dataset.result_name,
                label_set,
                preset.name,
                spec.name,
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
            planned = PlannedCell(cell, spec, evaluation, identity, signature(identity))
            units[unit].append(planned)
            if request.rerun or not store.is_finished(cell, planned.signature):
                todo.setdefault(unit, []).append(planned)
    n_cells, n_todo = sum(map(len, units.values())), sum(map(len, todo.values()))
    log.info("%d cells: %d finished already, %d to run", n_cells, n_cells - n_todo, n_todo)
    return RunPlan(
        request,
        preset,
        dataset.result_name,
        arrays,
        pretrain_arrays,
        store,
        device,
        progress,
        plans,
        {spec.name: spec for spec in specs},
        units,
        todo,
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
    if len(mine) < len(plan.todo):
        log.info("this process runs %d of the %d pretrained models with unfinished cells", len(mine), len(plan.todo))
    state = run_progress(plan, mine)
    try:
        held_elsewhere = []
        for unit in mine:
            with plan.claim(unit, wait=False) as held:
                if held:
                    run_unit(plan, unit, state)
                else:
                    log.info("%s is being run by another process; coming back to it at the end", unit.describe())
                    held_elsewhere.append(unit)
        for unit in held_elsewhere:
            with plan.claim(unit, wait=True):
                run_unit(plan, unit, state)
    except KeyboardInterrupt:
        state.close("interrupted")
        raise
    except BaseException as exc:
        state.close("failed", exc)
        raise
    state.close("finished")
    return plan.records()


def tensorboard_hint(out: Path) -> str:
    """Where ``--log tensorboard`` writes, and the command that opens it."""
    logdir = out / TENSORBOARD
    return f"TensorBoard event files go to {logdir}/; open them with: tensorboard --logdir {logdir}"


def checkpoint_dir(store: ResultStore, planned: PlannedCell) -> Path:
    """The pretraining checkpoint folder of a cell's model."""
    cell = planned.cell
    return store.checkpoint_dir(
        cell.dataset, cell.preset, cell.method, cell.seed, pretraining_signature(planned.identity)
    )


def record_identity(path: Path, identity: dict, preset: Preset) -> None:
    """``identity.json`` in a checkpoint folder: which model it holds, so that the checkpoint alone
    can be exported (``python -m benchmark export-encoder``); written when absent or damaged."""
    if distributed.is_main() and not _readable(path / IDENTITY):
        config = to_jsonable({**{k: identity[k] for k in PRETRAIN_KEYS if k in identity}, "preset": preset.name})
        atomic_write(path / IDENTITY, json.dumps({"signature": pretraining_signature(identity), "config": config}))


def _readable(path: Path) -> bool:
    try:
        read_json(path, "")
    except (FileNotFoundError, DamagedFileError):
        return False
    return True


def run_progress(plan: RunPlan, mine: list[Unit]) -> RunProgress:
    """Progress of this process (every cell of its share, those found finished included, so that
    ``status`` counts them), timed from the finished results in the folder and then from itself."""
    eta = Eta()
    records = plan.records()
    for record in records:
        eta.add_record(record)
    todo = [planned for unit in mine for planned in plan.todo[unit]]
    pending = {}
    for planned in todo:
        key = (planned.cell.seed, planned.cell.method)
        method_name = planned.cell.method
        if key in pending or method_name not in plan.plans:
            continue
        if not (checkpoint_dir(plan.store, planned) / "final.pt").exists():
            pending[key] = PendingPretraining(method_name, plan.plans[method_name].steps)
    ours = {planned.cell for unit in plan.share() for planned in plan.units[unit]}  # found finished ones too
    finished = {Cell(**r["cell"]) for r in records if Cell(**r["cell"]) in ours}
    cells = {cell: cell.protocol for cell in sorted(ours, key=lambda c: c.relpath.as_posix())}
    return RunProgress(plan.store.root, cells, finished, pending, eta, write=distributed.is_main())


def run_unit(plan: RunPlan, unit: Unit, state: RunProgress) -> None:
    """Pretrain (or resume, or load the checkpoint of) one method at one seed, then run its
    unfinished cells. Called with the unit claimed; cells another process finished meanwhile are
    skipped. A training loss that becomes NaN/inf records the cells concerned as diverged."""
    request, preset, store, device, progress = plan.request, plan.preset, plan.store, plan.device, plan.progress
    cells = [p for p in plan.todo[unit] if request.rerun or not store.is_finished(p.cell, p.signature)]
    if not cells:
        log.info("%s: finished by another process", unit.describe())
        return
    tensorboard = store.root / TENSORBOARD if request.log == "tensorboard" and distributed.is_main() else None

    def monitor(tensorboard_dir: Path | None) -> TrainingMonitor:
        return TrainingMonitor(tensorboard_dir, on_log=state.on_log, on_start=state.on_start)

    def save(planned: PlannedCell, record: dict, output) -> None:
        if distributed.is_main():  # under torchrun only rank 0 writes
            if output is None:
                path = store.write_diverged(planned.cell, record)
                log.warning("%s: diverged (%s) -> %s", planned.cell.describe(), record["failure"]["message"], path)
            else:
                path = store.write(planned.cell, record, output.prediction)
                log.info(
                    "%s: macro AUROC %.4f -> %s",
                    planned.cell.describe(),
                    record["metrics"]["macro_auroc"] or float("nan"),
                    path,
                )
        state.end_cell(planned.cell, record["compute"]["protocol_wall_s"])
        distributed.barrier()

    seed, spec = unit.seed, plan.specs[unit.method]
    method_name, method_cls, identity = spec.name, spec.cls, cells[0].identity
    set_seed(seed)
    method = spec.build(preset.input)
    pretrain_compute, failure = None, None
    if method_cls.pretrained_elsewhere:
        pretrain_compute = external_pretraining(method_cls)
    if method_cls.pretrains:
        checkpoints = checkpoint_dir(store, cells[0])
        record_identity(checkpoints, identity, preset)
        log.info("%s · pretraining %s seed %d", state.line(), method_name, seed)
        state.start_pretraining(seed, method_name)
        tensorboard_dir = (
            None if tensorboard is None else tensorboard / "pretraining" / checkpoints.relative_to(store.checkpoints)
        )
        try:
            with monitor(tensorboard_dir) as pretraining_monitor:
                report = pretrain(
                    method,
                    plan.pretrain_arrays,
                    identity["pretrain"],
                    seed,
                    device,
                    checkpoints,
                    progress,
                    None if request.profile is None else request.profile / f"{spec.file_name}_seed{seed}",
                    pretraining_monitor,
                )
            pretrain_compute = {**to_jsonable(report.as_record()), **plan.plans[method_name].as_record()}
        except NonFiniteLossError as exc:
            failure = exc
            pretrain_compute = diverged_pretraining(plan.plans[method_name], exc)
            log.warning("%s seed %d: %s; its %d cells are recorded as diverged", method_name, seed, exc, len(cells))
        state.end_pretraining()
    if failure is not None:
        for planned in cells:
            state.start_cell(planned.cell)
            save(
                planned,
                cell_record(planned, preset, plan.arrays, method, pretrain_compute, None, device, failure=failure),
                None,
            )
        return
    rebuild = rebuilder(spec, preset.input, {k: v.detach().clone() for k, v in method.state_dict().items()})

    # frozen outputs of this model, shared by its cells; a seed-independent method's are the
    # same for every seed and run: shared across seeds and kept on disk
    shared_outputs: dict = {}
    persist = None
    if method_cls.seed_independent:
        shared_outputs = plan.seed_independent_outputs.setdefault(method_name, {})
        persist = store.frozen_outputs_dir(
            cells[0].cell.dataset, preset.name, method_name, frozen_outputs_signature(method_cls, identity)
        )
    for planned in cells:
        log.info("%s · running %s", state.line(), planned.cell.describe())
        state.start_cell(planned.cell)
        variant = planned.evaluation.variant
        set_seed(seed)
        started = time.perf_counter()
        tensorboard_dir = None if tensorboard is None else tensorboard / planned.cell.relpath.with_suffix("")
        output, failure = None, None
        try:
            with monitor(tensorboard_dir) as cell_monitor:
                output = planned.evaluation.protocol.run(
                    CellContext(
                        rebuild(),
                        rebuild,
                        plan.arrays,
                        seed,
                        device,
                        progress,
                        train_indices=variant.train_indices,
                        lead_subset=variant.lead_subset,
                        cache=shared_outputs,
                        persist=persist,
                        monitor=cell_monitor,
                    )
                )
        except NonFiniteLossError as exc:
            failure = exc
        if output is not None:  # the test records' patients: the unit the leaderboard's bootstrap resamples
            output.prediction = output.prediction.with_patients(plan.arrays)
        record = cell_record(
            planned,
            preset,
            plan.arrays,
            method,
            pretrain_compute,
            time.perf_counter() - started,
            device,
            output,
            failure,
        )
        save(planned, record, output)
