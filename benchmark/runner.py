"""The benchmark loop, end to end: load the data once, then for every seed and method pretrain
(or load the checkpoint) and run each protocol cell that is not finished yet.

Readable in one sitting on purpose (after lightly's ``benchmarks/imagenet/*/main.py``): every
other module is a piece this loop calls.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import distributed
from .compute import parameter_counts
from .config import apply_overrides, signature, to_jsonable
from .data import DatasetPlugin, default_cache_root
from .method import Method, MethodConfig
from .metrics import classification_report
from .presets import Preset, get_preset
from .pretrain import pretrain
from .protocol import CellContext, Protocol
from .provenance import provenance
from .registry import DATASETS, METHODS, PROTOCOLS, load_plugin_file
from .results import Cell, ResultStore
from .training import resolve_device, set_seed

log = logging.getLogger("benchmark")

#: the untrained baseline every protocol kind is compared against (methods.md §2)
REFERENCES = {"frozen": "random_init", "finetune": "scratch"}


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


def method_config(method_cls: type[Method], preset: Preset, overrides: dict) -> MethodConfig:
    """Preset's shared architecture fields, the method's own defaults, then ``--set name.*``."""
    shared = {k: v for k, v in dataclasses.asdict(preset.model).items() if k in method_cls.Config.field_names()}
    config = apply_overrides(method_cls.Config(**shared), overrides.get(method_cls.name, {}), method_cls.name)
    if hasattr(config, "arch"):  # untrained baselines take their architecture's full config
        arch_config = method_config(METHODS.get(config.arch), preset, overrides)
        config = dataclasses.replace(config, arch_config=dataclasses.asdict(arch_config))
    return config


def build_dataset(name: str, preset: Preset, overrides: dict) -> DatasetPlugin:
    dataset_cls = DATASETS.get(name)
    config = dataset_cls.Config(**preset.dataset_overrides.get(name, {}))
    return dataset_cls(apply_overrides(config, overrides.get(name, {}), name))


def resolve_methods(names: list[str], protocols: dict[str, Protocol], add_references: bool) -> list[str]:
    """Expand ``all``, check every name, and add the untrained reference of each protocol kind."""
    if names == ["all"]:
        names = [n for n in METHODS.names() if n not in REFERENCES.values()]
    for name in names:
        METHODS.get(name)  # raises with "did you mean" for unknown names
    if add_references:
        for protocol in protocols.values():
            reference = REFERENCES.get(protocol.kind)
            if reference and reference not in names:
                names = [*names, reference]
    return list(dict.fromkeys(names))


def run(request: RunRequest) -> list[dict]:
    """Run every requested cell that is not finished; return the records of all requested cells."""
    for path in request.plugins:
        load_plugin_file(path)
    preset = get_preset(request.preset).with_overrides(request.overrides)
    protocol_names = request.protocols or list(preset.default_protocols)
    protocols: dict[str, Protocol] = {}
    for name in protocol_names:
        protocol_cls = PROTOCOLS.get(name)
        protocols[name] = protocol_cls(preset.protocol_config(name, protocol_cls.Config))
    methods = resolve_methods(request.methods, protocols, request.add_references)
    dataset = build_dataset(request.dataset, preset, request.overrides)
    label_set = request.label_set or dataset.label_sets[0]
    dataset.check_label_set(label_set)
    device = resolve_device(request.device)
    store = ResultStore(request.out)
    progress = request.progress and distributed.is_main()

    log.info("loading %s (%s labels) at %d Hz", dataset.name, label_set, preset.input.fs)
    if not distributed.is_main():
        distributed.barrier()  # rank 0 prepares (or generates) the cache first, alone
    arrays = dataset.load(preset.input.fs, label_set, request.cache_root, progress)
    if distributed.is_main():
        distributed.barrier()
    log.info("%d records: %s", len(arrays.signals),
             ", ".join(f"{k} {len(v)}" for k, v in arrays.splits.items()))
    data_identity = {"dataset": dataset.name, "dataset_config": dataset.config, "input": preset.input}

    records = []
    for seed in request.seeds:
        for method_name in methods:
            method_cls = METHODS.get(method_name)
            config = method_config(method_cls, preset, request.overrides)
            pretrain_identity = {**data_identity, "method": method_name, "method_config": config, "seed": seed,
                                 "pretrain": preset.pretrain if method_cls.pretrains else None}
            plan = []
            for name, protocol in protocols.items():
                if not protocol.applies_to(method_cls):
                    continue
                cell = Cell(dataset.name, label_set, preset.name, method_name, name, seed)
                cell_signature = signature({**pretrain_identity, "label_set": label_set,
                                            "protocol": name, "protocol_config": protocol.config})
                if not request.rerun and store.is_finished(cell, cell_signature):
                    log.info("finished already, skipping: %s", cell.describe())
                    records.append(store.load(cell))
                else:
                    plan.append((cell, protocol, cell_signature))
            if not plan:
                continue

            set_seed(seed)
            method = method_cls(config, preset.input)
            pretrain_report = None
            if method_cls.pretrains:
                checkpoints = store.checkpoint_dir(dataset.name, preset.name, method_name, seed, signature(pretrain_identity))
                pretrain_report = pretrain(method, arrays, preset.pretrain, seed, device, checkpoints, progress,
                                           request.profile_dir)
            pretrained_state = {k: v.detach().clone() for k, v in method.state_dict().items()}

            def rebuild(**changes) -> Method:
                fresh = method_cls(dataclasses.replace(config, **changes), preset.input)
                fresh.load_state_dict(pretrained_state)
                return fresh

            for cell, protocol, cell_signature in plan:
                log.info("running %s", cell.describe())
                set_seed(seed)
                started = time.perf_counter()
                output = protocol.run(CellContext(rebuild(), rebuild, arrays, seed, device, progress))
                record = {
                    "signature": cell_signature,
                    "config": to_jsonable({**pretrain_identity, "label_set": label_set, "preset": preset.name,
                                           "protocol": cell.protocol, "protocol_config": protocol.config}),
                    "metrics": classification_report(output.prediction.y_true, output.prediction.y_score,
                                                     arrays.label_names),
                    "details": to_jsonable(output.details),
                    "compute": {
                        **parameter_counts(method),
                        "pretrain": to_jsonable(pretrain_report),
                        "protocol_wall_s": time.perf_counter() - started,
                    },
                    "provenance": provenance(device),
                }
                if distributed.is_main():
                    path = store.write(cell, record, output.prediction)
                    log.info("%s: macro AUROC %.4f -> %s", cell.describe(), record["metrics"]["macro_auroc"] or float("nan"), path)
                    records.append(store.load(cell))
                distributed.barrier()
    return records

