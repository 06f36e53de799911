"""The benchmark loop, end to end: load the data once, give every method its share of the
compute budget, list the cells (method x protocol x variant x seed) and skip the finished
ones, then for every seed and method pretrain (or resume, or load the checkpoint) and run its
unfinished cells.

Readable in one sitting on purpose (after lightly's ``benchmarks/imagenet/*/main.py``): every
other module is a piece this loop calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import inspect
import itertools
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
from benchmark.report.results import Cell, ResultStore
from benchmark.storage import remove_orphans
from benchmark.train import distributed
from benchmark.train.budget import (
    FlopsMeter,
    PretrainPlan,
    parse_budget,
    plan_pretraining,
    supervised_budget,
)
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
            "downstream": to_jsonable(output.compute) or None,
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
    records, todo = [], []
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
                records.append(store.load(cell))
            else:
                todo.append(planned)
    log.info("%d cells: %d finished already, %d to run", len(records) + len(todo), len(records), len(todo))

    done = 0
    seed_independent_outputs: dict[str, dict] = {}  # method -> its frozen outputs, shared across seeds
    for (seed, method_name), cells in itertools.groupby(todo, key=lambda p: (p.cell.seed, p.cell.method)):
        cells = list(cells)
        identity = cells[0].identity
        method_cls = method_class(method_name)
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
                dataset.result_name,
                preset.name,
                method_name,
                seed,
                signature({k: identity[k] for k in pretrain_keys if k in identity}),
            )
            pretrain_report = pretrain(
                method, pretrain_arrays, identity["pretrain"], seed, device, checkpoints, progress, request.profile_dir
            )
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
                dataset.name, preset.name, method_name, frozen_outputs_signature(method_cls, identity)
            )
        for planned in cells:
            done += 1
            log.info("[%d/%d] running %s", done, len(todo), planned.cell.describe())
            variant = planned.evaluation.variant
            set_seed(seed)
            started = time.perf_counter()
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
                )
            )
            record = cell_record(
                planned,
                preset,
                output,
                arrays.label_names,
                method,
                plans.get(method_name),
                pretrain_report,
                time.perf_counter() - started,
                device,
            )
            if distributed.is_main():  # under torchrun only rank 0 writes
                path = store.write(planned.cell, record, output.prediction)
                log.info(
                    "%s: macro AUROC %.4f -> %s",
                    planned.cell.describe(),
                    record["metrics"]["macro_auroc"] or float("nan"),
                    path,
                )
                records.append(store.load(planned.cell))
            distributed.barrier()
    return records
