"""The benchmark loop, end to end: load the data once, give every method its share of the
compute budget, list the cells (method x protocol x variant x seed) and skip the finished
ones, then for every seed and method pretrain (or resume, or load the checkpoint) and run its
unfinished cells.

A training loss that becomes NaN or infinite does not stop the run: the cells of that
pretrained model (or the one fine-tuning cell) are recorded as diverged and the run goes on.
Progress (cells done / total, ETA, current cell) is logged and kept in the run-state file that
``python -m benchmark status`` reads (benchmark/runstate.py).

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

from benchmark.build import (
    architectures,
    build_dataset,
    build_method,
    build_protocols,
    check_scopes,
    method_class,
    method_config,
    resolve_method,
    resolve_methods,
)
from benchmark.config import signature, to_jsonable
from benchmark.data.contract import InputSpec, data_identity, default_cache_root
from benchmark.data.duplicates import guard_duplicates
from benchmark.data.pool import parse_pool, pretraining_pool
from benchmark.eval.metrics import classification_report
from benchmark.eval.protocol import CellContext
from benchmark.eval.sweep import Evaluation, expand
from benchmark.method.base import Method, MethodConfig
from benchmark.presets import ANCHOR_METHOD, Preset, get_preset
from benchmark.provenance import provenance
from benchmark.registry import load_plugin_file
from benchmark.report.results import IDENTITY, PRETRAIN_KEYS, TENSORBOARD, Cell, ResultStore, pretraining_signature
from benchmark.runstate import Eta, PendingPretraining, RunProgress
from benchmark.storage import atomic_write, remove_orphans
from benchmark.train import distributed
from benchmark.train.budget import (
    FlopsMeter,
    PretrainPlan,
    SupervisedBudget,
    parse_budget,
    plan_pretraining,
    supervised_budget,
)
from benchmark.train.flops import parameter_counts
from benchmark.train.monitor import NonFiniteLossError, TrainingMonitor, require_tensorboard
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
    log: str | None = None  # "tensorboard": event files of every training run under OUT/_tensorboard/
    duplicates: str = "refuse"  # pretraining/training records that ARE val/test recordings: refuse | drop


@dataclass
class PlannedCell:
    cell: Cell
    evaluation: Evaluation
    identity: dict  # everything that produced the result (its signature keys the result file)
    signature: str


def plan_budgets(methods: list[str], preset: Preset, overrides: dict, meter: FlopsMeter) -> dict[str, PretrainPlan]:
    """Steps and FLOPs of every pretraining method under the preset's compute budget."""
    budget = parse_budget(preset.pretrain.budget)
    if budget.method is not None:  # an unknown reference method or variant fails before any work
        budget = dataclasses.replace(budget, method=resolve_method(budget.method).name)
    plans = {}
    for name in methods:
        if method_class(name).pretrains:
            plans[name] = plan_pretraining(
                build_method(name, preset, overrides),
                preset.pretrain.steps,
                preset.pretrain.batch_size,
                budget,
                meter,
                lambda reference: build_method(reference, preset, overrides),
                name=name,
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
    label_names: list[str],
    method: Method,
    pretrain_compute: dict | None,
    wall_s: float | None,
    device,
    output=None,
    failure: NonFiniteLossError | None = None,
) -> dict:
    """A cell's result: scored ``output``, or the ``failure`` of a diverged training."""
    record = {
        "signature": planned.signature,
        "config": to_jsonable({**planned.identity, "preset": preset.name}),
        "label_names": list(label_names),  # the columns of the saved predictions
    }
    if output is not None:
        record["metrics"] = classification_report(output.prediction.y_true, output.prediction.y_score, label_names)
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


def rebuilder(method_cls: type[Method], config: MethodConfig, input_spec: InputSpec, state: dict):
    """``rebuild(**changes)``: a fresh copy of the (pre)trained model with some config fields
    changed (fine-tuning's drop_path), so protocols never mutate the shared model."""

    def rebuild(**changes) -> Method:
        fresh = method_cls(dataclasses.replace(config, **changes), input_spec)
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


def run(request: RunRequest) -> list[dict]:
    """Run every requested cell that is not finished; return the records of all requested cells."""
    for path in request.plugins:
        load_plugin_file(path)
    if request.log == "tensorboard":
        require_tensorboard()  # before any work
    preset = get_preset(request.preset).with_overrides(request.overrides)
    requested, base_protocols = build_protocols(request.protocols or list(preset.default_protocols), preset)
    methods = resolve_methods(
        request.methods, list(base_protocols.values()), request.add_references, preset, request.overrides
    )
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
        remove_orphans(store.root)  # temporary files of a killed earlier run
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
    meter = FlopsMeter(store.flops_dir, device)
    plans = plan_budgets(methods, preset, request.overrides, meter)
    data = {**data_identity(dataset, arrays), "input": preset.input}  # content, not location
    if dropped:  # the data differ from an unguarded run's: so must the signatures
        data["dropped_duplicates"] = dropped
    supervised = None
    if any(method_class(m).supervised_only() for m in methods) and any(
        p.kind == "finetune" for p in base_protocols.values()
    ):
        supervised = supervised_budget(
            parse_budget(preset.pretrain.budget),
            ANCHOR_METHOD,
            preset.pretrain.steps,
            preset.pretrain.batch_size,
            len(arrays.label_names),
            meter,
            lambda name: build_method(name, preset, request.overrides),
            plans,
        )
        log.info(
            "supervised-only methods may spend, per learning rate, %s's %.3g pretraining FLOPs + one fine-tuning run",
            supervised.reference,
            supervised.pretrain_flops,
        )

    # every cell of the run, finished ones skipped (a result with another signature is refused)
    records: list[dict] = []
    todo: list[PlannedCell] = []
    for seed, method_name in itertools.product(request.seeds, methods):
        method_cls = method_class(method_name)
        pretrain_config = (
            dataclasses.replace(preset.pretrain, steps=plans[method_name].steps) if method_cls.pretrains else None
        )
        pretrain_identity = {
            **data,
            "method": method_name,
            "seed": seed,
            "pretrain": pretrain_config,
            "method_config": method_config(method_name, preset, request.overrides),
        }
        if pool_identity and method_cls.pretrains:
            pretrain_identity["pretrain_data"] = pool_identity
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
            if not request.rerun and store.is_finished(cell, planned.signature):
                records.append(store.finished(cell))
            else:
                todo.append(planned)
    log.info("%d cells: %d finished already, %d to run", len(records) + len(todo), len(records), len(todo))
    progress_state = run_progress(store, records, todo, plans, preset)
    try:
        run_cells(
            request,
            todo,
            records,
            store,
            preset,
            plans,
            supervised,
            pretrain_arrays,
            arrays,
            device,
            progress,
            progress_state,
        )
    except KeyboardInterrupt:
        progress_state.close("interrupted")
        raise
    except BaseException as exc:
        progress_state.close("failed", exc)
        raise
    progress_state.close("finished")
    return records


def checkpoint_dir(store: ResultStore, planned: PlannedCell) -> Path:
    """The pretraining checkpoint folder of a cell's model."""
    cell = planned.cell
    return store.checkpoint_dir(
        cell.dataset, cell.preset, cell.method, cell.seed, pretraining_signature(planned.identity)
    )


def record_identity(path: Path, identity: dict, preset: Preset) -> None:
    """``identity.json`` in a checkpoint folder: which model it holds, so that the checkpoint alone
    can be exported (``python -m benchmark export-encoder``)."""
    if distributed.is_main() and not (path / IDENTITY).exists():
        config = to_jsonable({**{k: identity[k] for k in PRETRAIN_KEYS if k in identity}, "preset": preset.name})
        atomic_write(path / IDENTITY, json.dumps({"signature": pretraining_signature(identity), "config": config}))


def run_progress(
    store: ResultStore, records: list[dict], todo: list[PlannedCell], plans: dict, preset: Preset
) -> RunProgress:
    """Progress of this run, timed from the finished results in the folder and then from itself."""
    eta = Eta()
    for record in records:
        eta.add_record(record)
    pending = {}
    for planned in todo:
        key = (planned.cell.seed, planned.cell.method)
        method_name = planned.cell.method
        if key in pending or method_name not in plans:
            continue
        path = checkpoint_dir(store, planned)
        if not (path / "final.pt").exists():
            plan = plans[method_name]
            pending[key] = PendingPretraining(method_name, plan.steps, plan.flops_per_step)
    cells = {Cell(**r["cell"]): r["cell"]["protocol"] for r in records}
    cells.update({p.cell: p.cell.protocol for p in todo})
    finished = {Cell(**r["cell"]) for r in records}
    return RunProgress(store.root, cells, finished, pending, eta, write=distributed.is_main())


def run_cells(
    request: RunRequest,
    todo: list[PlannedCell],
    records: list[dict],
    store: ResultStore,
    preset: Preset,
    plans: dict[str, PretrainPlan],
    supervised: SupervisedBudget | None,
    pretrain_arrays,
    arrays,
    device,
    progress: bool,
    state: RunProgress,
) -> None:
    """Pretrain every (seed, method) of ``todo`` and run its cells; finished records join ``records``."""
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
            records.append(store.finished(planned.cell))
        state.end_cell(planned.cell, record["compute"]["protocol_wall_s"])
        distributed.barrier()

    seed_independent_outputs: dict[str, dict] = {}  # method -> its frozen outputs, shared across seeds
    for (seed, method_name), group in itertools.groupby(todo, key=lambda p: (p.cell.seed, p.cell.method)):
        cells = list(group)
        identity = cells[0].identity
        method_cls = method_class(method_name)
        set_seed(seed)
        method = method_cls(identity["method_config"], preset.input)
        pretrain_compute, failure = None, None
        if method_cls.pretrains:
            checkpoints = checkpoint_dir(store, cells[0])
            record_identity(checkpoints, identity, preset)
            log.info("%s · pretraining %s seed %d", state.line(), method_name, seed)
            state.start_pretraining(seed, method_name)
            tensorboard_dir = (
                None
                if tensorboard is None
                else tensorboard / "pretraining" / checkpoints.relative_to(store.checkpoints)
            )
            try:
                with monitor(tensorboard_dir) as pretraining_monitor:
                    report = pretrain(
                        method,
                        pretrain_arrays,
                        identity["pretrain"],
                        seed,
                        device,
                        checkpoints,
                        progress,
                        request.profile_dir,
                        pretraining_monitor,
                    )
                pretrain_compute = {**to_jsonable(report), **plans[method_name].as_record()}
            except NonFiniteLossError as exc:
                failure = exc
                pretrain_compute = diverged_pretraining(plans[method_name], exc)
                log.warning("%s seed %d: %s; its %d cells are recorded as diverged", method_name, seed, exc, len(cells))
            state.end_pretraining()
        if failure is not None:
            for planned in cells:
                state.start_cell(planned.cell)
                save(
                    planned,
                    cell_record(
                        planned, preset, arrays.label_names, method, pretrain_compute, None, device, failure=failure
                    ),
                    None,
                )
            continue
        rebuild = rebuilder(
            method_cls,
            identity["method_config"],
            preset.input,
            {k: v.detach().clone() for k, v in method.state_dict().items()},
        )

        # frozen outputs of this model, shared by its cells; a seed-independent method's are the
        # same for every seed and run: shared across seeds and kept on disk
        shared_outputs: dict = {}
        persist = None
        if method_cls.seed_independent:
            shared_outputs = seed_independent_outputs.setdefault(method_name, {})
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
                            arrays,
                            seed,
                            device,
                            progress,
                            train_indices=variant.train_indices,
                            lead_subset=variant.lead_subset,
                            cache=shared_outputs,
                            persist=persist,
                            supervised_budget=supervised,
                            monitor=cell_monitor,
                        )
                    )
            except NonFiniteLossError as exc:
                failure = exc
            record = cell_record(
                planned,
                preset,
                arrays.label_names,
                method,
                pretrain_compute,
                time.perf_counter() - started,
                device,
                output,
                failure,
            )
            save(planned, record, output)
