"""External encoders: an encoder pretrained elsewhere, evaluated as a method of the suite.

``--methods external:PATH`` (or ``external:PATH[fs=...,window_s=...]``) wherever a method name
is accepted turns a file into a method with its own rows in the same tables as the references
and the suite's methods. PATH is one of:

* a **spec file** (``.py``) that declares the encoder's input (``SPEC = EncoderSpec(...)``) and
  how to get the module: ``build()`` returning an ``nn.Module`` or a plain callable, optionally
  with ``WEIGHTS`` (a ``state_dict`` saved by ``torch.save`` or a ``.safetensors`` file, loaded
  strictly into ``build()``'s module), or ``WEIGHTS`` alone naming a TorchScript file, a
  ``torch.export`` program or a folder of ``export-encoder``; optional ``NAME`` (the row's name)
  and ``layer_id(parameter_name) -> int`` (layer-wise lr decay in fine-tuning);
* a **TorchScript** file (traced or scripted, ``torch.jit.save``) or a **torch.export** program
  (``torch.export.save``, ``.pt2``), its input declared in brackets:
  ``external:enc.pt[fs=100,window_s=5]`` (the other :class:`EncoderSpec` fields likewise);
* a folder written by ``python -m benchmark export-encoder`` (safetensors + config.json), whose
  input is read from its config.

**Feeding it.** The suite gives every method the dataset prepared at the preset's rate
(``input.fs``). An external encoder gets exactly what it declares, made from that: its window
(centred for evaluation, random crops for fine-tuning, as every method), its leads in its order
(matched by name, case-insensitively), its units, its rate (polyphase resampling down from the
prepared rate with the preparation's own anti-aliasing filter, applied as a fixed linear map so
that fine-tuning can back-propagate through it) and its normalisation (z-score per lead or per
record over the window, or none). Leads a record lacks are zeros (the suite's rule for every
method); an encoder that declares ``lead_mask=True`` also receives the mask. What the data
cannot provide is refused before anything runs: a rate above the prepared one, a window longer
than the records, a lead name the suite does not know, a lead no evaluated record has, the
attention probe for an encoder that returns no tokens.

**Its output** must be (batch, features), finite (``output="tokens"``: (batch, tokens, width),
pooled by their mean [choice] for the linear probe and fine-tuning, the tokens read by the
attention probe). It is checked on a probe batch when the file is read, and on every batch (in
fine-tuning's training steps for its shape only: a non-finite loss there is a diverged learning
rate, which the protocol records as such).

**Identity.** The row's name is the file's stem (or ``NAME``) and the first 8 hex digits of the
encoder's content hash: SHA-256 over the spec file, the weights file(s), the declared input and
the tensors of the built module (so weights that ``build()`` loads by itself count too). Changed
weights are a new method with new results, never a stale one reused or refused; where the file
sits does not matter. ``build()`` must give the same tensors every time (seed its
initialisation): a builder that does not is refused, since every process must agree on the name.

**Protocols.** Those of pretrained encoders: linear and attention probes, fine-tuning with the
recipe of pretrained methods (LP-FT, layer-wise lr decay: the whole module is one layer below the
head unless the spec gives ``layer_id``, or the exported method's own ids for an
``export-encoder`` folder), label efficiency and reduced leads. Its frozen outputs are the same
for every seed and are cached on disk like ``ecg_features``'. Its pretraining compute is unknown:
results record ``"external": true`` in ``compute.pretrain``, and the leaderboard shows
"external, unknown" and ranks external rows apart from the matched-compute ones. A plain callable
without parameters is evaluated by the frozen probes only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.signal import resample_poly
from torch import nn

from benchmark.config import to_jsonable
from benchmark.data.conditioning import resampling_filter
from benchmark.data.contract import LEADS, DataError, ECGArrays, InputSpec
from benchmark.method.base import Encoded, Method
from benchmark.method.encoder_input import MV_PER_UNIT
from benchmark.method.external_source import (
    EncoderSpec,
    ExternalSource,
    content_hash,
    read_source,
    tensors_digest,
)
from benchmark.registry import METHODS


@dataclass
class ExternalConfig:
    """An external encoder's configuration, part of its results' identity: what it is (the
    format and the content hash, never where the file sits) and what it is fed."""

    format: str = ""  # torchscript | export | state_dict | ecgbench | module | callable
    sha256: str = ""  # the content hash (module docstring)
    spec: EncoderSpec | None = None
    feature_dim: int = 0
    #: set by fine-tuning's ``rebuild(drop_path=...)``; an external module's architecture is fixed,
    #: so it is not applied
    drop_path: float = 0.0


def probe_output(source: ExternalSource, module: nn.Module) -> int:
    """Run the module on a probe batch of its declared input; the feature width. Refuses an
    output that is not (batch, features) — (batch, tokens, width) for ``output="tokens"`` — or
    not finite."""
    spec = source.spec
    generator = torch.Generator().manual_seed(0)
    widths = set()
    for batch in (2, 3):
        signals = 0.3 * torch.randn(batch, len(spec.leads), spec.window, generator=generator) / MV_PER_UNIT[spec.units]
        mask = torch.ones(batch, len(spec.leads), dtype=torch.bool)
        try:
            with torch.no_grad():
                out = module(signals, mask) if spec.lead_mask else module(signals)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(
                f"{source.path}: the encoder fails on a batch of its declared input ({batch}, {len(spec.leads)}, "
                f"{spec.window}) [{spec.describe()}]: {type(exc).__name__}: {first[:200]}; fix the declaration "
                f"or the module (a torch.export program needs a dynamic batch dimension)"
            ) from None
        widths.add(check_output(out, batch, spec, source.path))
    if len(widths) != 1:
        raise DataError(f"{source.path}: the feature width changes with the batch size ({sorted(widths)})")
    return widths.pop()


def check_output(out: Any, batch: int, spec: EncoderSpec, where: Path | str, finite: bool = True) -> int:
    """The feature width of an encoder output; a DataError unless it is a tensor of the declared
    shape, and (``finite``) finite."""
    expected = "(batch, tokens, width)" if spec.output == "tokens" else "(batch, features)"
    rank = 3 if spec.output == "tokens" else 2
    if not isinstance(out, torch.Tensor) or out.ndim != rank or out.shape[0] != batch or 0 in out.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        tokens = spec.output == "features" and isinstance(out, torch.Tensor) and out.ndim == 3
        hint = "; declare output='tokens' if it returns (batch, tokens, width)" if tokens else ""
        raise DataError(f"{where}: the encoder returned {got} for a batch of {batch}; it must return {expected}{hint}")
    if finite and not torch.isfinite(out).all():
        raise DataError(
            f"{where}: the encoder returned non-finite values (NaN or inf) for a batch of {batch}; fix the module or "
            f"the declared input ({spec.describe()})"
        )
    return int(out.shape[-1])


_REGISTERED: dict[tuple[str, str], str] = {}  # (content hash, name given) -> registered method name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "external"


def register_external(text: str) -> str:
    """Read ``external:PATH[...]``, check it, and register it as a method; returns its name
    (``<stem>-<8 hex digits of its content hash>``). Reading the same content twice gives the
    same name and the same class."""
    source = read_source(text)
    module = source.build()
    source.sha256 = content_hash(source, module)
    given = _slug(source.name or source.path.stem)
    if (source.sha256, given) in _REGISTERED:
        return _REGISTERED[(source.sha256, given)]
    if source.format in ("module", "state_dict") and tensors_digest(source.build()) != tensors_digest(module):
        raise DataError(
            f"{source.path}: build() gives other weights each time it is called (an unseeded initialisation?); "
            f"load them from WEIGHTS or seed the initialisation, so that every run evaluates the same encoder"
        )
    source.feature_dim = probe_output(source, module)
    source.n_parameters = sum(p.numel() for p in module.parameters())
    name = f"{given}-{source.sha256[:8]}"
    trainable = source.n_parameters > 0
    evaluations = {"linear", "finetune"} if trainable else {"linear"}
    if source.spec.output == "tokens" or source.format == "ecgbench":
        evaluations.add("attention_probe")
    cls = type(
        f"External_{name.replace('-', '_')}",
        (ExternalEncoder,),
        {
            "source": source,
            "evaluations": frozenset(evaluations),
            "summary": f"external encoder {source.path.name} ({source.format}; {source.spec.describe()})",
        },
    )
    METHODS.register(name)(cls)
    _REGISTERED[(source.sha256, given)] = name
    return name


def is_external(method_cls: type[Method]) -> bool:
    return issubclass(method_cls, ExternalEncoder)


def check_feedable(method_cls: type[Method], arrays_fs: int, protocols: list[str]) -> None:
    """Refuse, before any work, an external encoder whose declared rate the prepared data cannot
    provide or a requested protocol it cannot be evaluated by."""
    if not is_external(method_cls):
        return
    source: ExternalSource = method_cls.source  # type: ignore[attr-defined]
    spec = source.spec
    if spec.fs > arrays_fs:
        raise DataError(
            f"{source.path}: the encoder takes {spec.fs:g} Hz but the data are prepared at {arrays_fs} Hz; run with "
            f"--set input.fs={spec.fs:g} (every method of the run then sees that rate) or declare a rate <= {arrays_fs}"
        )
    window = spec.window_s * arrays_fs
    if abs(window - round(window)) > 1e-6:
        raise DataError(
            f"{source.path}: a {spec.window_s:g} s window is not a whole number of samples at the prepared "
            f"{arrays_fs} Hz; declare a window of whole samples"
        )
    for protocol in protocols:
        if protocol == "attention_probe" and protocol not in method_cls.evaluations:
            raise DataError(
                f"{source.path}: the attention probe reads tokens, and this encoder returns pooled features; "
                f"declare output='tokens' if its module returns (batch, tokens, width), or drop attention_probe"
            )
        if protocol == "finetune" and protocol not in method_cls.evaluations:
            raise DataError(f"{source.path}: a function without parameters cannot be fine-tuned; drop finetune")


def check_data(method_cls: type[Method], arrays: ECGArrays) -> None:
    """Refuse an external encoder whose window is longer than the records, or one of whose
    leads no evaluated record has."""
    if not is_external(method_cls):
        return
    source: ExternalSource = method_cls.source  # type: ignore[attr-defined]
    spec = source.spec
    if round(spec.window_s * arrays.fs) > arrays.n_samples:
        raise DataError(
            f"{source.path}: the encoder takes {spec.window_s:g} s windows but the records of {arrays.name} are "
            f"{arrays.n_samples / arrays.fs:g} s long; declare a shorter window"
        )
    evaluated = np.concatenate([arrays.splits[s] for s in ("train", "val", "test")])
    present = np.asarray(np.asarray(arrays.lead_mask[evaluated]).any(axis=0))
    absent = [lead for lead in spec.leads if not present[LEADS.index(lead)]]
    if absent:
        raise DataError(
            f"{source.path}: the encoder takes {', '.join(absent)}, which no record of {arrays.name} has; declare "
            f"only leads the data have"
        )


def external_pretraining(method_cls: type[Method]) -> dict:
    """What a result records as the pretraining of a method pretrained elsewhere: external,
    compute unknown, and for an external encoder where its weights came from (not part of the
    result's identity)."""
    record: dict[str, Any] = {"external": True, "compute": "unknown"}
    if is_external(method_cls):
        source: ExternalSource = method_cls.source  # type: ignore[attr-defined]
        record.update(
            source=str(source.path), format=source.format, sha256=source.sha256, input=to_jsonable(source.spec)
        )
    return record


# -- the method -------------------------------------------------------------------------------------
class ExternalEncoder(Method):
    """Base of the classes :func:`register_external` makes, one per external encoder."""

    source: ClassVar[ExternalSource]
    Config = ExternalConfig  # type: ignore[assignment]  # no architecture fields: its module is fixed
    lead_index: torch.Tensor
    no_weight_decay: tuple[str, ...] = ()
    pretrains = False
    pretrained_elsewhere = True
    uses_model_size = False
    seed_independent = True  # fixed weights, no randomness: frozen outputs cached once per dataset

    @classmethod
    def default_config(cls, shared: dict) -> ExternalConfig:  # type: ignore[override]
        source = cls.source
        return ExternalConfig(source.format, source.sha256, source.spec, source.feature_dim)

    def __init__(self, config: ExternalConfig, input_spec: InputSpec):
        spec = config.spec
        assert spec is not None
        super().__init__(config, InputSpec(fs=input_spec.fs, window_s=spec.window_s))  # type: ignore[arg-type]
        self.external_config = config
        if spec.fs > input_spec.fs:
            raise DataError(f"{self.source.path}: takes {spec.fs:g} Hz, the data are at {input_spec.fs} Hz")
        self.spec = spec
        self.encoder = self.source.build()
        if content_hash(self.source, self.encoder) != self.source.sha256:
            raise DataError(
                f"{self.source.path} changed since this run read it (its content hash differs); run the command again "
                f"to evaluate the new content as a new encoder"
            )
        if self.source.format == "ecgbench":
            inner: Method = self.encoder.method  # type: ignore[assignment]
            self.pretraining_only = tuple(f"encoder.method.{p}" for p in inner.pretraining_only)
            self.downstream_only = tuple(f"encoder.method.{p}" for p in inner.downstream_only)
            self.no_weight_decay = inner.no_weight_decay
        self.register_buffer("lead_index", torch.tensor([LEADS.index(lead) for lead in spec.leads]), persistent=False)
        operator = None
        if spec.fs != input_spec.fs:
            ratio = Fraction(spec.fs / input_spec.fs).limit_denominator(10_000)
            up, down = ratio.numerator, ratio.denominator
            n_in = self.input_spec.window
            matrix = resample_poly(np.eye(n_in), up, down, axis=0, window=resampling_filter(up, down))[: spec.window]
            if matrix.shape[0] != spec.window:
                raise DataError(
                    f"{self.source.path}: resampling {n_in} samples from {input_spec.fs} to {spec.fs:g} Hz gives "
                    f"{matrix.shape[0]}, not {spec.window}; declare a rate with a simpler ratio"
                )
            operator = torch.from_numpy(matrix.T.astype(np.float32))
        self.resample: torch.Tensor | None
        self.register_buffer("resample", operator, persistent=False)  # (window at the prepared rate, spec.window)

    @property
    def feature_dim(self) -> int:
        return self.external_config.feature_dim

    @property
    def opaque_to_flop_rules(self) -> bool:
        """TorchScript and torch.export graphs run below the Python calls the suite's FLOP rules
        see (benchmark/train/flops.py): their FLOPs are counted at the dispatcher."""
        return self.source.format in ("torchscript", "export")

    def train(self, mode: bool = True) -> ExternalEncoder:
        """A torch.export module cannot change mode (it runs as exported); every other module does."""
        self.training = mode
        if self.source.format != "export":
            self.encoder.train(mode)
        return self

    def fed(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The suite's window (B, 12, T) at the prepared rate -> the encoder's declared input and
        the mask of its leads."""
        spec = self.spec
        mask = lead_mask[:, self.lead_index]
        x = (signals * lead_mask[:, :, None].to(signals.dtype))[:, self.lead_index] / MV_PER_UNIT[spec.units]
        if self.resample is not None:
            x = x @ self.resample.to(x.dtype)
        present = mask[:, :, None].to(x.dtype)
        if spec.normalise == "lead":
            mean = x.mean(dim=-1, keepdim=True)
            x = (x - mean) / x.std(dim=-1, keepdim=True).clamp_min(1e-8) * present
        elif spec.normalise == "record":
            count = (present.sum(dim=(1, 2), keepdim=True) * x.shape[-1]).clamp_min(1)
            mean = (x * present).sum(dim=(1, 2), keepdim=True) / count
            var = (((x - mean) * present) ** 2).sum(dim=(1, 2), keepdim=True) / count
            x = (x - mean) / var.sqrt().clamp_min(1e-8) * present
        return x, mask

    def encode(self, signals: torch.Tensor, lead_mask: torch.Tensor, return_hidden: bool = False) -> Encoded:
        x, mask = self.fed(signals, lead_mask)
        if self.source.format == "ecgbench":
            return self.encoder.method.encode(x, mask, return_hidden)  # type: ignore[union-attr, operator]
        single = self.source.format == "export" and len(x) == 1  # the last batch of a split may hold one record,
        if single:  # and torch.export specialises batch sizes 0 and 1 (its dynamic dimensions start at 2)
            x, mask = x.repeat(2, 1, 1), mask.repeat(2, 1)
        out = self.encoder(x, mask) if self.spec.lead_mask else self.encoder(x)
        if single:
            out = out[:1]
        # in training a non-finite output is a diverged fine-tuning run, which the protocol records as such
        check_output(out, len(signals), self.spec, self.source.path, finite=not self.training)
        if self.spec.output == "tokens":
            return Encoded(out.mean(dim=1), [out] if return_hidden else None)
        return Encoded(out, [out[:, None]] if return_hidden else None)

    def readout_inputs(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
        if self.source.format == "ecgbench":
            return self.encoder.method.readout_inputs(*self.fed(signals, lead_mask))  # type: ignore[union-attr, operator]
        return self.features(signals, lead_mask)

    def readout(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.source.format == "ecgbench":
            return self.encoder.method.readout(inputs)  # type: ignore[union-attr, operator]
        return inputs

    def fit_readout(self, train, val, seed: int, progress: bool = True) -> dict:
        if self.source.format == "ecgbench":
            return self.encoder.method.fit_readout(train, val, seed, progress)  # type: ignore[union-attr, operator]
        return {}

    def layer_id(self, name: str) -> int:
        inner = name.removeprefix("encoder.")
        if self.source.format == "ecgbench":
            return self.encoder.method.layer_id(inner.removeprefix("method."))  # type: ignore[union-attr, operator]
        if self.source.layer_id is not None:
            return int(self.source.layer_id(inner))
        return 0
