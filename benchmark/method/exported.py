"""An exported encoder read back: :func:`load_encoder` (``ecgbench.load_encoder``) rebuilds the
folder ``python -m benchmark export-encoder`` writes (benchmark/run/export.py), without the
results tree.

The folder holds ``model.safetensors`` (the weights the downstream protocols use) and
``config.json`` (the method, its full configuration, the input it takes, the pretraining run and
where it came from). :class:`PretrainedEncoder` is an ``nn.Module`` whose
``forward(signals, lead_mask)`` returns the pooled features the benchmark's probes read,
(B, feature_dim), and refuses signals of another shape, length or sampling rate with a one-line
:class:`~benchmark.data.contract.DataError`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from benchmark.config import ConfigError, from_jsonable
from benchmark.data.contract import LEADS, DataError, InputSpec
from benchmark.method.base import Method
from benchmark.method.encoder_input import PreparedInput
from benchmark.method.variant import parse_variant
from benchmark.registry import METHODS, PluginError, load_plugin_file

FORMAT = "ecgbench-encoder"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def method_class_of(name: str, where: Path) -> type[Method]:
    try:
        return METHODS.get(parse_variant(name).base)  # a variant (lamae[la_mask_ratio=0]) is its base's class
    except PluginError:
        raise DataError(
            f"{where}: method {name!r} is not installed here; load its plugin file first (plugins=[...] or --plugin)"
        ) from None


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
            f"(python -m benchmark export-encoder SOURCE --to {directory})"
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
    method_cls = method_class_of(config["method"], directory / CONFIG)
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
            f"(python -m benchmark export-encoder SOURCE --to {directory})"
        ) from None
    missing, unexpected = method.load_state_dict(weights, strict=False)
    missing = [name for name in missing if not method.is_pretraining_only(name)]
    if missing or unexpected:
        raise DataError(
            f"{directory / WEIGHTS} does not fit {config['method']} as configured: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    return PretrainedEncoder(method, config).to(device).eval()
