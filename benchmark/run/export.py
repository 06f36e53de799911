"""``python -m benchmark export-encoder``: a pretrained encoder of the results tree written as a
folder for your own code; :func:`benchmark.method.exported.load_encoder` (``ecgbench.load_encoder``)
reads it back without the results tree.

An exported encoder is a folder of two files:

* ``model.safetensors`` — the weights the downstream protocols use (the method's
  ``pretraining_only`` modules, e.g. MAE decoders, are left out);
* ``config.json`` — everything needed to rebuild and feed it: the method, its full
  configuration and how it differs from the preset's (``variant``), the input it was trained on
  (sampling rate, window, lead order, units, the dataset's preprocessing), the pretraining run
  (data, seed, settings, steps, loss) and where it came from (result or checkpoint, code commit,
  package versions).

The weights are those of pretraining (or, for ``random_init``, the seeded initialisation the
benchmark evaluated). Fine-tuned weights are not kept by the benchmark, so a fine-tuning result
exports the encoder it started from; ``scratch`` (trained only inside its fine-tuning cells) has
nothing to export.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save

from benchmark.config import from_jsonable, to_jsonable
from benchmark.data.contract import LEADS, DataError, InputSpec
from benchmark.method.base import Method
from benchmark.method.exported import CONFIG, FORMAT, FORMAT_VERSION, WEIGHTS, method_class_of
from benchmark.method.variant import parse_variant
from benchmark.provenance import git_state, package_versions
from benchmark.registry import METHODS
from benchmark.run.build import method_config
from benchmark.run.presets import PRESETS
from benchmark.run.results import (
    IDENTITY,
    PRETRAIN_KEYS,
    Cell,
    ResultStore,
    is_stale,
    pretraining_signature,
    stale_message,
)
from benchmark.storage import DamagedFileError, atomic_write, read_json, read_torch, refuse_foreign
from benchmark.train.runtime import set_seed


@dataclass
class ModelSource:
    """A model of the results tree: its pretraining configuration (``PRETRAIN_KEYS`` + preset),
    the checkpoint with its weights (None for an untrained method) and what named it."""

    config: dict
    checkpoint: Path | None
    origin: dict


def locate(source: Path) -> ModelSource:
    """The model behind a result file (``.../linear_seed0.json``) or a pretraining checkpoint
    (its folder under ``_checkpoints/``, or ``final.pt`` in it)."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source} does not exist; give a result file (.json) or a checkpoint folder")
    if source.suffix == ".json" and source.is_file():
        return _from_result(source)
    folder = source.parent if source.is_file() else source
    if not (folder / IDENTITY).is_file():
        raise DataError(
            f"{folder} has no {IDENTITY} (checkpoints written before it existed, or not a checkpoint folder); "
            f"export from a result file of the model instead, e.g. results/<dataset>/<labels>/<preset>/<method>/"
            f"linear_seed0.json"
        )
    identity = read_json(
        folder / IDENTITY,
        "delete it and run the command that pretrained this checkpoint again (it rewrites the file and reuses "
        "final.pt), or export from a result file of the model",
    )
    if not isinstance(identity.get("config"), dict):
        raise DataError(f"{folder / IDENTITY} holds no model configuration; delete it and run the run again")
    return ModelSource(identity["config"], _final(folder), {"checkpoint": str(folder)})


def _from_result(path: Path) -> ModelSource:
    record = read_json(
        path,
        "run the command that produced it again (a damaged result is recomputed), or export from the model's "
        "checkpoint folder under _checkpoints/",
    )
    if "cell" not in record or "config" not in record:
        raise DataError(f"{path} is not a result file of the benchmark (no cell and config)")
    if is_stale(record):
        raise DataError(stale_message(path))
    cell = Cell(**record["cell"])
    external = (record.get("compute") or {}).get("pretrain") or {}
    if external.get("external"):
        raise DataError(
            f"{path}: {cell.method} is an external encoder; its weights are the file it was evaluated from "
            f"({external.get('source', 'its plugin loads them')}), there is nothing to export"
        )
    config = {**{k: record["config"][k] for k in PRETRAIN_KEYS if k in record["config"]}}
    config["preset"] = record["config"]["preset"]
    method_cls = method_class_of(config["method"], path)
    origin = {"result": str(path), "cell": cell.describe(), "result_provenance": record.get("provenance")}
    if not method_cls.pretrains:
        if "frozen" not in method_cls.evaluations:
            raise DataError(
                f"{path}: {cell.method} is trained only inside its {cell.protocol} cells and those weights are not "
                f"kept; there is no encoder to export"
            )
        return ModelSource(config, None, origin)
    root = path.resolve().parents[len(cell.relpath.parts) - 1]
    store = ResultStore(root)
    folder = store.checkpoint_dir(cell.dataset, cell.preset, cell.method, cell.seed, pretraining_signature(config))
    return ModelSource(config, _final(folder), origin)


def _final(folder: Path) -> Path:
    final = folder / "final.pt"
    if not final.is_file():
        state = "has only an unfinished pretraining (last.pt)" if (folder / "last.pt").exists() else "is missing"
        raise DataError(
            f"{final} {state}: the pretrained weights are not there (checkpoints are not committed with results). "
            f"Run the cell's `python -m benchmark run` command with --results pointing to a new folder to pretrain it"
        )
    return final


def build_model(source: ModelSource) -> tuple[Method, dict | None]:
    """The method with the model's weights (pretrained, or the seeded initialisation) and the
    pretraining report of its checkpoint (steps, wall time, final loss)."""
    config = source.config
    method_cls = method_class_of(config["method"], Path(source.origin.get("result") or source.origin["checkpoint"]))
    settings = from_jsonable(method_cls.Config, config["method_config"], config["method"])
    input_spec = from_jsonable(InputSpec, config["input"], "input")
    if source.checkpoint is None:
        set_seed(config["seed"])  # the runner's initialisation of an untrained method
        return method_cls(settings, input_spec).eval(), None
    method = method_cls(settings, input_spec)
    state = read_torch(
        source.checkpoint,
        "delete it and run the cell's `python -m benchmark run` command again to pretrain the model again",
    )
    method.load_state_dict(state["model"])
    return method.eval(), {k: v for k, v in state["report"].items() if k != "loss_curve"}


def variant_of(config: dict) -> dict | None:
    """How the method's configuration differs from the preset's defaults (``--set`` values);
    empty for the method as the preset defines it, None for an unknown preset."""
    preset = PRESETS.get(config["preset"])
    if preset is None:
        return None
    default = to_jsonable(method_config(METHODS.get(parse_variant(config["method"]).base), preset))
    return {k: v for k, v in config["method_config"].items() if default.get(k) != v}


def encoder_config(method: Method, source: ModelSource, report: dict | None) -> dict:
    config = source.config
    dataset_config = config.get("dataset_config") or {}
    spec = method.input_spec
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": config["method"],
        "summary": type(method).summary,
        "method_origin": METHODS.origin(config["method"]),
        "variant": variant_of(config),
        "preset": config["preset"],
        "method_config": config["method_config"],
        "feature_dim": method.feature_dim,
        "input": {
            "fs": spec.fs,
            "window_s": spec.window_s,
            "window": spec.window,
            "leads": list(LEADS),
            "units": "mV",
            "lead_mask": "(batch, 12) bool, True where a lead is present; absent leads are zeros in signals",
            "preprocessing": dataset_config.get("preprocess"),  # None: the dataset's signals as they are, in mV
            "evaluation_window": "the benchmark feeds the centred window of each record",
        },
        "weights": "pretrained"
        if source.checkpoint is not None
        else f"random initialisation (seed {config['seed']}), not pretrained",
        "downstream_only": list(method.downstream_only),  # trained with a downstream head, at initialisation here
        "pretraining": {
            "dataset": config["dataset"],
            "dataset_config": dataset_config,
            "pretrain_data": config.get("pretrain_data"),
            "seed": config["seed"],
            "settings": config.get("pretrain"),
            "report": report,
            "signature": pretraining_signature(config),
        },
        "provenance": {
            "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "source": source.origin,
            "code": git_state(),
            "packages": package_versions(),
        },
    }


def save_encoder(method: Method, config: dict, out: Path) -> Path:
    """Write the downstream weights and ``config`` into ``out`` (atomically, file by file)."""
    tensors = {
        name: tensor.detach().cpu().contiguous().clone()
        for name, tensor in method.state_dict().items()
        if not method.is_pretraining_only(name)
    }
    atomic_write(Path(out) / WEIGHTS, save(tensors, metadata={"format": FORMAT, "method": config["method"]}))
    atomic_write(Path(out) / CONFIG, json.dumps(config, indent=1))
    return Path(out)


def is_encoder_folder(out: Path) -> bool:
    """Whether ``out`` may receive an export: it holds neither file of one, or an earlier export
    (its config.json names this format)."""
    out = Path(out)
    if not (out / CONFIG).exists() and not (out / WEIGHTS).exists():
        return True
    try:
        return read_json(out / CONFIG, "").get("format") == FORMAT
    except (DamagedFileError, OSError):
        return False


def export_encoder(source: Path, out: Path) -> dict:
    """``python -m benchmark export-encoder SOURCE --to DIR``; returns the written config. A
    ``DIR`` holding files of that name that no export wrote is refused."""
    refuse_foreign(out, is_encoder_folder(out), "--to DIR")
    model = locate(source)
    method, report = build_model(model)
    config = encoder_config(method, model, report)
    save_encoder(method, config, out)
    return config
