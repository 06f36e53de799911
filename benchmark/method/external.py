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

import hashlib
import json
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.signal import resample_poly
from torch import nn

from benchmark.config import ConfigError, to_jsonable, typed_value
from benchmark.data.conditioning import STANDARDIZE, resampling_filter
from benchmark.data.contract import LEADS, DataError, ECGArrays, InputSpec
from benchmark.method.base import Encoded, Method
from benchmark.method.encoder_input import MV_PER_UNIT
from benchmark.method.variant import parse_variant
from benchmark.registry import METHODS, import_file

EXTERNAL_PREFIX = "external:"
OUTPUTS = ("features", "tokens")
#: the names a spec file may define
SPEC_NAMES = ("SPEC", "build", "WEIGHTS", "NAME", "layer_id")
_LEAD_BY_NAME = {lead.lower(): lead for lead in LEADS}


@dataclass(frozen=True)
class EncoderSpec:
    """What an external encoder takes and returns; the suite feeds it exactly this.

    ``fs`` (Hz) and ``window_s`` (s): its input rate and length; ``leads``: its input channels in
    order, named as the suite names them (case ignored: ``AVR`` is ``aVR``); ``units``: mV, uV or
    V; ``normalise``: ``none``, ``lead`` (z-score of each lead over the window) or ``record``
    (one z-score over the record's present leads); ``lead_mask``: its forward takes
    ``(signals, lead_mask)`` with ``lead_mask`` (batch, leads) bool; ``output``: ``features``
    (batch, features) or ``tokens`` (batch, tokens, width).
    """

    fs: float
    window_s: float
    leads: tuple[str, ...] = LEADS
    units: str = "mV"
    normalise: str = "none"
    lead_mask: bool = False
    output: str = "features"

    def __post_init__(self):
        if not self.fs > 0 or not self.window_s > 0:
            raise ValueError(f"fs and window_s must be positive, got fs={self.fs}, window_s={self.window_s}")
        leads = (self.leads,) if isinstance(self.leads, str) else tuple(self.leads)
        unknown = [lead for lead in leads if str(lead).strip().lower() not in _LEAD_BY_NAME]
        if unknown:
            raise ValueError(
                f"leads {', '.join(map(str, unknown))}: the data cannot provide them; the suite's leads are "
                f"{', '.join(LEADS)} (case ignored)"
            )
        canonical = tuple(_LEAD_BY_NAME[str(lead).strip().lower()] for lead in leads)
        if not canonical or len(set(canonical)) < len(canonical):
            raise ValueError(f"leads must name at least one lead, each once, got {', '.join(map(str, leads))}")
        object.__setattr__(self, "leads", canonical)
        for name, value, valid in (
            ("units", self.units, tuple(MV_PER_UNIT)),
            ("normalise", self.normalise, STANDARDIZE),
            ("output", self.output, OUTPUTS),
        ):
            if value not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
        if abs(self.fs * self.window_s - round(self.fs * self.window_s)) > 1e-6:
            raise ValueError(f"window_s {self.window_s:g} s at {self.fs:g} Hz is not a whole number of samples")

    @property
    def window(self) -> int:
        return int(round(self.fs * self.window_s))

    def describe(self) -> str:
        return (
            f"{self.window_s:g} s at {self.fs:g} Hz, {len(self.leads)} leads ({', '.join(self.leads)}), "
            f"{self.units}, normalise {self.normalise}"
        )


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


@dataclass
class ExternalSource:
    """A file (or folder) read as an external encoder: how to build its module, and what it is."""

    path: Path
    format: str
    spec: EncoderSpec
    build: Callable[[], nn.Module]  # a fresh module with the weights, in evaluation mode
    files: list[Path]  # what the content hash reads
    name: str = ""
    layer_id: Callable[[str], int] | None = None
    sha256: str = ""
    feature_dim: int = 0
    n_parameters: int = 0


class _Function(nn.Module):
    """A plain callable as a module (no parameters)."""

    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(*args)


class _ExportedMethod(nn.Module):
    """A method of an ``export-encoder`` folder: its own ``encode`` (hidden states included)."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
        return self.method.features(signals, lead_mask)


# -- reading a source ----------------------------------------------------------------------------
def _is_zip_with(path: Path, marker: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(marker in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _kind(path: Path) -> str:
    """What a weights file or folder is: ecgbench | export | torchscript | state_dict."""
    if path.is_dir():
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
            return "ecgbench"
        raise DataError(
            f"{path} is a folder without config.json and model.safetensors; an external encoder folder is one "
            f"written by `python -m benchmark export-encoder`"
        )
    if not path.is_file():
        raise DataError(f"{path} does not exist; give an existing weights file (check the path)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror}); make it readable") from None
    if path.suffix == ".safetensors":
        return "state_dict"
    if path.suffix == ".pt2" or _is_zip_with(path, "/archive_format"):
        return "export"
    if _is_zip_with(path, "/code/"):
        return "torchscript"
    if zipfile.is_zipfile(path):
        return "state_dict"  # torch.save's zip format
    raise DataError(
        f"{path} is not a complete TorchScript file, torch.export program, torch.save state_dict or safetensors "
        f"file (truncated, or another format); save it again (torch.jit.save, torch.export.save, torch.save)"
    )


def _load_module(path: Path, kind: str) -> nn.Module:
    """The module of a TorchScript file, a torch.export program or an export-encoder folder."""
    try:
        if kind == "torchscript":
            with warnings.catch_warnings():  # TorchScript is deprecated, and still what many encoders ship as
                warnings.filterwarnings("ignore", category=FutureWarning)
                return torch.jit.load(str(path), map_location="cpu").eval()
        if kind == "export":
            return torch.export.load(str(path)).module()
    except Exception as exc:
        what = "TorchScript file" if kind == "torchscript" else "torch.export program"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: failed to load as a {what} ({first[:200]}); save it again with "
            f"{'torch.jit.save' if kind == 'torchscript' else 'torch.export.save'} and check that it is complete"
        ) from None
    from benchmark.method.export import load_encoder  # the reader of export-encoder folders

    return _ExportedMethod(load_encoder(path).method.eval())


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a safetensors file or a torch.save file (a plain state_dict, or one under
    the single key ``state_dict`` or ``model``, as training frameworks save them)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as a state_dict ({first[:200]}); save it again") from None
    if isinstance(state, dict):
        nested = [k for k in ("state_dict", "model") if isinstance(state.get(k), dict)]
        if len(nested) == 1 and not all(isinstance(v, torch.Tensor) for v in state.values()):
            state = state[nested[0]]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(
            f"{path}: expected a state_dict (parameter name -> tensor), found {type(state).__name__}; "
            f"save model.state_dict()"
        )
    return state


def _as_module(made: Any, where: Path) -> nn.Module:
    if isinstance(made, nn.Module):
        return made
    if callable(made):
        return _Function(made)
    raise DataError(f"{where}: build() returned {type(made).__name__}, not an nn.Module or a callable")


def _import_spec_file(path: Path) -> dict[str, Any]:
    module_name = f"ecgbench_external_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    module = import_file(path, module_name, "external encoder file", DataError)
    return {name: getattr(module, name) for name in SPEC_NAMES if hasattr(module, name)}


def _from_spec_file(path: Path, settings: dict[str, str]) -> ExternalSource:
    if settings:
        raise ConfigError(f"external:{path}: a spec file declares everything itself; drop the [{', '.join(settings)}]")
    names = _import_spec_file(path)
    build = names.get("build")
    weights = (path.parent / str(names["WEIGHTS"])).resolve() if names.get("WEIGHTS") is not None else None
    kind = _kind(weights) if weights is not None else None
    if kind == "ecgbench":
        assert weights is not None
        if "SPEC" in names or build is not None:
            raise DataError(
                f"{path}: WEIGHTS names an export-encoder folder, whose config.json declares its input; drop SPEC and build"
            )
        return _from_encoder_folder(weights, names.get("NAME"), spec_file=path)
    spec = names.get("SPEC")
    if not isinstance(spec, EncoderSpec):
        raise DataError(
            f"{path} must declare its input: SPEC = EncoderSpec(fs=..., window_s=...) (from ecgbench import EncoderSpec)"
        )
    if kind in ("torchscript", "export"):
        if build is not None:
            raise DataError(f"{path}: WEIGHTS is a {kind} file, which holds its own module; drop build()")
        assert weights is not None
        program = kind
        return ExternalSource(
            path,
            program,
            spec,
            lambda: _load_module(weights, program),
            [path, weights],
            names.get("NAME") or "",
            names.get("layer_id"),
        )
    if not callable(build):
        raise DataError(
            f"{path} needs build() returning the encoder (an nn.Module or a callable)"
            + (f": {weights} is a state_dict, which has no module of its own" if weights is not None else "")
        )

    def built() -> nn.Module:
        try:
            module = _as_module(build(), path)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: build() failed: {type(exc).__name__}: {exc}") from None
        if weights is not None:
            incompatible = module.load_state_dict(_load_state(weights), strict=False)
            if incompatible.missing_keys or incompatible.unexpected_keys:
                raise DataError(
                    f"{weights} does not fit build()'s module of {path}: missing {incompatible.missing_keys[:3]}, "
                    f"unexpected {incompatible.unexpected_keys[:3]}"
                )
        return module.eval()

    kind = "state_dict" if weights is not None else "module"
    files = [path] + ([weights] if weights is not None else [])
    return ExternalSource(path, kind, spec, built, files, names.get("NAME") or "", names.get("layer_id"))


def _from_encoder_folder(path: Path, name: str | None = None, spec_file: Path | None = None) -> ExternalSource:
    from benchmark.method.export import CONFIG, WEIGHTS, read_encoder_config

    config = read_encoder_config(path)
    declared = config["input"]
    spec = EncoderSpec(
        fs=declared["fs"],
        window_s=declared["window_s"],
        leads=tuple(declared["leads"]),
        units=declared["units"],
        lead_mask=True,
    )
    files = ([spec_file] if spec_file else []) + [path / WEIGHTS, path / CONFIG]
    return ExternalSource(path, "ecgbench", spec, lambda: _load_module(path, "ecgbench"), files, name or path.name)


def _spec_from_settings(path: Path, settings: dict[str, str]) -> EncoderSpec:
    missing = [name for name in ("fs", "window_s") if name not in settings]
    if missing:
        raise ConfigError(
            f"external:{path}: declare its input, e.g. 'external:{path}[fs=100,window_s=5]' (also leads=I,II,..., "
            f"units=mV|uV, normalise=none|lead|record, lead_mask=true, output=tokens), or write a spec file "
            f"(README, 'Evaluate your own encoder'); missing: {', '.join(missing)}"
        )
    values = {key: typed_value(EncoderSpec, key, value, f"external:{path}") for key, value in settings.items()}
    try:
        return EncoderSpec(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"external:{path}: {exc}") from None


def read_source(text: str) -> ExternalSource:
    """The external encoder named by ``external:PATH[settings]`` (not yet hashed or checked)."""
    variant = parse_variant(text.removeprefix(EXTERNAL_PREFIX))
    settings = dict(variant.settings)
    name = settings.pop("name", None)
    path = Path(variant.base).expanduser()
    if not variant.base:
        raise ConfigError(
            f"{text!r}: write external:PATH, e.g. external:encoder.pt[fs=100,window_s=5] or external:my_encoder.py"
        )
    if path.suffix == ".py":
        if not path.is_file():
            raise DataError(f"{path} does not exist; give an existing spec file (check the path)")
        source = _from_spec_file(path.resolve(), settings)
    else:
        kind = _kind(path)
        if kind == "ecgbench":
            if settings:
                raise ConfigError(
                    f"external:{path}: its config.json declares its input; drop the [{', '.join(settings)}]"
                )
            source = _from_encoder_folder(path.resolve())
        elif kind == "state_dict":
            raise DataError(
                f"{path} is a state_dict, which holds weights but no module; write a spec file with build() and "
                f"WEIGHTS = {path.name!r} (README, 'Evaluate your own encoder')"
            )
        else:
            spec = _spec_from_settings(path, settings)
            resolved = path.resolve()
            source = ExternalSource(resolved, kind, spec, lambda: _load_module(resolved, kind), [resolved])
    source.name = name or source.name
    return source


# -- identity and checks ---------------------------------------------------------------------------
def _file_digest(path: Path, digest: Any) -> None:
    if path.name == "config.json" and path.parent.joinpath("model.safetensors").is_file():
        # an export-encoder config: what defines the encoder, not when and where it was exported
        config = json.loads(path.read_text())
        defining = {k: config.get(k) for k in ("format_version", "method", "method_config", "input")}
        digest.update(json.dumps(defining, sort_keys=True).encode())
        return
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def tensors_digest(module: nn.Module) -> str:
    """SHA-256 of a module's tensors (names, dtypes, shapes, bytes), in name order."""
    digest = hashlib.sha256()
    unused = module.method.is_pretraining_only if isinstance(module, _ExportedMethod) else None
    for name, tensor in sorted(module.state_dict().items()):
        if unused is not None and unused(name.removeprefix("method.")):
            continue  # an export-encoder folder leaves out the decoders: initialised anew each time, never used
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}\0".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def content_hash(source: ExternalSource, module: nn.Module) -> str:
    digest = hashlib.sha256(source.format.encode())
    for path in source.files:
        digest.update(b"\0file\0")
        _file_digest(path, digest)
    digest.update(json.dumps(to_jsonable(source.spec), sort_keys=True).encode())
    digest.update(tensors_digest(module).encode())
    return digest.hexdigest()


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
