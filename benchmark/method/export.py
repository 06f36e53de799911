"""Pretrained encoders for your own code: ``python -m benchmark export-encoder`` writes one,
:func:`load_encoder` (``ecgbench.load_encoder``) reads it back without the results tree.

An exported encoder is a folder of two files:

* ``model.safetensors`` — the weights the downstream protocols use (the method's
  ``pretraining_only`` modules, e.g. MAE decoders, are left out);
* ``config.json`` — everything needed to rebuild and feed it: the method, its full
  configuration and how it differs from the preset's (``variant``), the input it was trained on
  (sampling rate, window, lead order, units, the dataset's preprocessing), the pretraining run
  (data, seed, settings, steps, loss) and where it came from (result or checkpoint, code commit,
  package versions).

:class:`PretrainedEncoder` is an ``nn.Module`` whose ``forward(signals, lead_mask)`` returns the
pooled features the benchmark's probes read, (B, feature_dim), and refuses signals of another
shape, length or sampling rate with a one-line :class:`~benchmark.data.contract.DataError`.

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

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from benchmark.config import ConfigError, from_jsonable, to_jsonable
from benchmark.data.contract import LEADS, DataError, InputSpec
from benchmark.method.base import Method
from benchmark.method.encoder_input import PreparedInput
from benchmark.method.variant import parse_variant
from benchmark.provenance import git_state, package_versions
from benchmark.registry import METHODS, PluginError, load_plugin_file
from benchmark.report.results import (
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

FORMAT = "ecgbench-encoder"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


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
    method_cls = _method_class(config["method"], path)
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
            f"Run the cell's `python -m benchmark run` command with --out pointing to a new folder to pretrain it"
        )
    return final


def _method_class(name: str, where: Path) -> type[Method]:
    try:
        return METHODS.get(parse_variant(name).base)  # a variant (lamae[la_mask_ratio=0]) is its base's class
    except PluginError:
        raise DataError(
            f"{where}: method {name!r} is not installed here; load its plugin file first (plugins=[...] or --plugin)"
        ) from None


def build_model(source: ModelSource) -> tuple[Method, dict | None]:
    """The method with the model's weights (pretrained, or the seeded initialisation) and the
    pretraining report of its checkpoint (steps, wall time, final loss)."""
    config = source.config
    method_cls = _method_class(config["method"], Path(source.origin.get("result") or source.origin["checkpoint"]))
    method_config = from_jsonable(method_cls.Config, config["method_config"], config["method"])
    input_spec = from_jsonable(InputSpec, config["input"], "input")
    if source.checkpoint is None:
        set_seed(config["seed"])  # the runner's initialisation of an untrained method
        return method_cls(method_config, input_spec).eval(), None
    method = method_cls(method_config, input_spec)
    state = read_torch(
        source.checkpoint,
        "delete it and run the cell's `python -m benchmark run` command again to pretrain the model again",
    )
    method.load_state_dict(state["model"])
    return method.eval(), {k: v for k, v in state["report"].items() if k != "loss_curve"}


def variant_of(config: dict) -> dict | None:
    """How the method's configuration differs from the preset's defaults (``--set`` values);
    empty for the method as the preset defines it, None for an unknown preset."""
    from benchmark.build import method_config  # the runner's construction path
    from benchmark.presets import PRESETS

    preset = PRESETS.get(config["preset"])
    if preset is None:
        return None
    default = to_jsonable(method_config(METHODS.get(parse_variant(config["method"]).base), preset, {}))
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
    """``python -m benchmark export-encoder SOURCE --out DIR``; returns the written config. A
    ``DIR`` holding files of that name that no export wrote is refused."""
    refuse_foreign(out, is_encoder_folder(out), "--out DIR")
    model = locate(source)
    method, report = build_model(model)
    config = encoder_config(method, model, report)
    save_encoder(method, config, out)
    return config


class PretrainedEncoder(nn.Module):
    """An exported encoder: ``forward(signals, lead_mask=None, fs=...) -> (B, feature_dim)``.

    ``signals`` (B, 12, window) in mV, leads in ``config["input"]["leads"]`` order; ``lead_mask``
    (B, 12) bool (default: all present); ``fs`` the signals' sampling rate, required and checked
    against the encoder's — or ``forward(prepared)`` with the :class:`PreparedInput` of
    ``ecgbench.prepare_input`` / ``ecgbench.read_record``, which carries rate and mask. Refused
    with a one-line :class:`DataError`: another rate, shape or length, a record with no lead
    present (nothing to encode), NaN or inf in a present lead. Masked leads are zeroed (their
    content never reaches the features). ``config`` is the exported config.json.
    """

    def __init__(self, method: Method, config: dict):
        super().__init__()
        self.method, self.config = method, config
        self.fs, self.window = method.input_spec.fs, method.input_spec.window
        for name, parameter in method.named_parameters():
            if method.is_pretraining_only(name):  # not in the file, never used downstream
                parameter.requires_grad_(False)

    @property
    def feature_dim(self) -> int:
        return self.method.feature_dim

    def forward(
        self,
        signals: torch.Tensor | PreparedInput,
        lead_mask: torch.Tensor | None = None,
        fs: float | None = None,
    ) -> torch.Tensor:
        if isinstance(signals, PreparedInput):
            if lead_mask is not None or fs is not None:
                raise DataError("a prepared input carries its lead mask and rate; call encoder(prepared) alone")
            prepared = signals
            signals, lead_mask, fs = prepared.signals, prepared.lead_mask, prepared.fs
        expected = f"(batch, {len(LEADS)}, {self.window}): {self.window / self.fs:g} s at {self.fs} Hz"
        if fs is None:
            raise DataError(
                f"give the signals' sampling rate: encoder(signals, lead_mask, fs={self.fs}) (this encoder takes "
                f"{expected}), or make the input with ecgbench.prepare_input(...) / ecgbench.read_record(...)"
            )
        if fs != self.fs:
            raise DataError(
                f"signals at {fs:g} Hz, but this encoder was trained at {self.fs} Hz; resample them to {self.fs} Hz "
                f"(ecgbench.prepare_input does it as the benchmark did)"
            )
        if signals.ndim != 3 or signals.shape[1] != len(LEADS):
            raise DataError(f"signals must be {expected}, leads {', '.join(LEADS)}; got {tuple(signals.shape)}")
        if signals.shape[2] != self.window:
            raise DataError(
                f"signals have {signals.shape[2]} samples, this encoder takes {self.window} ({self.window / self.fs:g} s "
                f"at {self.fs} Hz); crop the centred {self.window} samples (ecgbench.prepare_input does it)"
            )
        if lead_mask is None:
            lead_mask = torch.ones(signals.shape[:2], dtype=torch.bool, device=signals.device)
        elif tuple(lead_mask.shape) != tuple(signals.shape[:2]):
            raise DataError(f"lead_mask must be (batch, {len(LEADS)}) bool, got {tuple(lead_mask.shape)}")
        lead_mask = lead_mask.bool()
        empty = torch.nonzero(~lead_mask.any(dim=1)).flatten().tolist()
        if empty:
            raise DataError(
                f"record(s) {', '.join(map(str, empty[:5]))} of the batch have no lead present (lead_mask all False): "
                f"there is nothing to encode; leave them out"
            )
        broken = ~torch.isfinite(signals) & lead_mask[:, :, None]
        if broken.any():
            record, lead, _ = (int(i) for i in torch.nonzero(broken)[0])
            raise DataError(
                f"signals hold NaN or inf in present leads (first: record {record}, lead {LEADS[lead]}, "
                f"{int(broken.sum())} samples in all); mask those leads or interpolate the gaps "
                f"(ecgbench.prepare_input does both)"
            )
        signals = signals.masked_fill(~lead_mask[:, :, None], 0.0)
        return self.method.features(signals, lead_mask)


def read_encoder_config(directory: Path) -> dict:
    """The config.json of an export-encoder folder; one-line errors naming the file and the fix."""
    directory = Path(directory)
    for path in (directory / CONFIG, directory / WEIGHTS):
        if not path.is_file():
            raise DataError(f"{path} is missing; {directory} is not an encoder written by export-encoder")
    try:
        config = json.loads((directory / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{directory / CONFIG} is damaged or truncated ({type(exc).__name__}: {exc}); export the encoder again "
            f"(python -m benchmark export-encoder SOURCE --out {directory})"
        ) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        found = (
            config
            if not isinstance(config, dict)
            else f"{config.get('format')!r} version {config.get('format_version')!r}"
        )
        raise DataError(f"{directory / CONFIG}: format {found}; this code reads {FORMAT!r} version {FORMAT_VERSION}")
    missing = [key for key in ("method", "method_config", "input") if key not in config]
    if missing or not {"fs", "window_s"} <= set(config.get("input") or {}):
        raise DataError(
            f"{directory / CONFIG} lacks {', '.join(missing) or 'input.fs / input.window_s'}; export the encoder again"
        )
    return config


def load_encoder(
    directory: str | Path, device: str | torch.device = "cpu", plugins: tuple[str | Path, ...] = ()
) -> PretrainedEncoder:
    """The encoder exported to ``directory`` (by ``python -m benchmark export-encoder``), in eval
    mode on ``device``. A method from a plugin file needs that file in ``plugins``. A missing,
    truncated or foreign config.json or model.safetensors is one :class:`DataError` naming the
    file and the fix."""
    directory = Path(directory)
    config = read_encoder_config(directory)
    for plugin in plugins:
        load_plugin_file(Path(plugin))
    method_cls = _method_class(config["method"], directory / CONFIG)
    try:
        method_config = from_jsonable(method_cls.Config, config["method_config"], config["method"])
        spec = InputSpec(fs=config["input"]["fs"], window_s=config["input"]["window_s"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise DataError(f"{directory / CONFIG}: {exc}") from None
    method = method_cls(method_config, spec)
    try:
        weights = load_file(str(directory / WEIGHTS))
    except (OSError, SafetensorError, ValueError) as exc:
        raise DataError(
            f"{directory / WEIGHTS} is damaged or truncated ({type(exc).__name__}: {exc}); export the encoder again "
            f"(python -m benchmark export-encoder SOURCE --out {directory})"
        ) from None
    missing, unexpected = method.load_state_dict(weights, strict=False)
    missing = [name for name in missing if not method.is_pretraining_only(name)]
    if missing or unexpected:
        raise DataError(
            f"{directory / WEIGHTS} does not fit {config['method']} as configured: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    return PretrainedEncoder(method, config).to(device).eval()
