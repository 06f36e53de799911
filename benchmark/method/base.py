"""The method contract: one base class that every pretraining method plugin subclasses.

Shape after solo-learn's ``solo/methods/base.py``: the base class owns what all methods share
(configuration, input geometry, pooled features and per-layer hidden states from one encoder
pass, layer ids for layer-wise lr decay, which modules are pretraining-only), so that a method
file holds only its model and its loss. The harness never looks inside a method.

A method implements:

* ``pretrain_loss(batch) -> {"loss": scalar, "trivial/NAME": scalar, ...logs}`` (only if
  ``pretrains``); every ``trivial/`` entry is the same objective evaluated for a trivial predictor
  on the same targets and masks (zero, a lead's visible mean: ``reconstruction_loss``; chance for
  an alignment term), so that the harness can tell a run that learned from one that sits at the
  loss a constant reaches (``PretrainReport.loss_ratio``);
* ``encode(signals, lead_mask, return_hidden) -> Encoded`` — the downstream representation
  (``pooled``: (B, feature_dim)) and optionally every layer's tokens;
* ``layer_id(param_name) -> int`` — 0 for embeddings, increasing towards the output;
* ``num_layers`` — the largest layer id + 1.

A method whose readout has its own trainable part (ECG-Soup's PMA gate over layers) declares it
in ``downstream_only`` and overrides ``readout_inputs`` / ``readout`` / ``fit_readout``, so that
frozen protocols can cache the encoder's outputs and fit that part with their head.
`python -m benchmark validate` checks every part of this contract.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from benchmark.data.contract import InputSpec
from benchmark.data.loader import Batch
from benchmark.registry import METHODS


@dataclass
class MethodConfig:
    """Architecture fields every method shares; presets fill them (``ModelSize``), methods add
    their own fields in a subclass. ``drop_path`` is raised by the fine-tuning protocol."""

    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    patch_s: float = 0.25
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 4
    drop_path: float = 0.0

    def __post_init__(self):
        for f in ("dim", "depth", "heads", "decoder_dim", "decoder_depth", "decoder_heads"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{type(self).__name__}.{f} must be positive, got {getattr(self, f)}")
        if self.dim % self.heads or self.decoder_dim % self.decoder_heads:
            raise ValueError(
                f"{type(self).__name__}: dim must be divisible by heads "
                f"({self.dim}/{self.heads}, {self.decoder_dim}/{self.decoder_heads})"
            )
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")
        if self.patch_s <= 0:
            raise ValueError(f"patch_s must be positive, got {self.patch_s}")

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


@dataclass
class Encoded:
    pooled: torch.Tensor  # (B, feature_dim): the representation probes and heads use
    hidden_states: list[torch.Tensor] | None = None  # per layer, (B, tokens, width)


class Method(nn.Module):
    """Base class of all methods. Subclasses register with ``@METHODS.register(name)``."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    pretrains: ClassVar[bool] = True
    #: protocol kinds ("frozen": probes, "finetune") or single protocols (e.g. "linear") this
    #: method is evaluated under. A method that does not pretrain but is fine-tuned is trained
    #: supervised from random init (``supervised_only``) by the fine-tuning recipe of every
    #: method, without layer decay and with the labels' prior as its head's start.
    evaluations: ClassVar[frozenset[str]] = frozenset({"frozen", "finetune"})
    #: the input its paper used (documentation and the `validate` contract; presets decide)
    native_input: ClassVar[InputSpec | None] = None
    #: parameter-name prefixes used only by ``pretrain_loss`` (e.g. the decoder); they are
    #: frozen when fine-tuning and not counted as encoder parameters
    pretraining_only: tuple[str, ...] = ()
    #: parameter-name prefixes of a trainable readout that pretraining never trains; it is
    #: trained with the downstream head (``fit_readout`` under frozen protocols)
    downstream_only: tuple[str, ...] = ()
    #: fnmatch patterns of parameters exempt from weight decay (tokens and embeddings, as MAE)
    no_weight_decay: tuple[str, ...] = ("*cls*", "*token*", "*lead_embed*")
    #: whether the preset's shared model size (the :class:`MethodConfig` fields: width, depth,
    #: heads, patch length, decoder) configures the method; it then cuts each lead into patches
    #: (``patch_len``, ``n_patches``). A CNN or a feature extractor has its own fields instead,
    #: no patches, and keeps its configuration at every preset.
    uses_model_size: ClassVar[bool] = True
    #: whether its frozen outputs depend on nothing but the input (no weights, no randomness, e.g.
    #: a feature extractor): then they are the same for every seed and run, and the harness
    #: computes them once per dataset and caches them on disk
    seed_independent: ClassVar[bool] = False
    #: distributions (pip names) it needs beyond the suite's own dependencies, e.g. ("neurokit2",)
    requires: ClassVar[tuple[str, ...]] = ()
    #: pretrained outside the suite (an external encoder, benchmark/method/external.py): its
    #: weights come with it, fine-tuning uses the recipe of pretrained methods, and its
    #: pretraining compute is unknown (recorded so, never matched)
    pretrained_elsewhere: ClassVar[bool] = False

    def __init__(self, config: MethodConfig, input_spec: InputSpec):
        super().__init__()
        self.config = config
        self.input_spec = input_spec
        if not self.uses_model_size:
            return
        self.patch_len = int(round(config.patch_s * input_spec.fs))
        if self.patch_len < 1 or input_spec.window % self.patch_len:
            raise ValueError(
                f"{self.name}: window of {input_spec.window} samples ({input_spec.window_s} s at "
                f"{input_spec.fs} Hz) is not a multiple of the patch ({config.patch_s} s = "
                f"{config.patch_s * input_spec.fs:g} samples); change patch_s or the window"
            )
        self.n_patches = input_spec.window // self.patch_len

    @classmethod
    def default_config(cls, shared: dict) -> MethodConfig:
        """The configuration before ``--set`` and variant settings: the preset's ``shared``
        architecture fields on the config's defaults (an external encoder's come from its file)."""
        return cls.Config(**shared)

    @classmethod
    def missing_requirements(cls) -> list[str]:
        """The distributions of ``requires`` that are not installed."""
        return [name for name in cls.requires if importlib.util.find_spec(name) is None]

    @classmethod
    def supervised_only(cls) -> bool:
        """Trained from random init on the labels alone (``scratch``, ``xresnet1d``)."""
        return not cls.pretrains and not cls.pretrained_elsewhere and "finetune" in cls.evaluations

    # -- the contract ------------------------------------------------------------------------
    def pretrain_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{self.name} does not pretrain")

    def encode(self, signals: torch.Tensor, lead_mask: torch.Tensor, return_hidden: bool = False) -> Encoded:
        raise NotImplementedError

    def layer_id(self, param_name: str) -> int:
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        return max((self.layer_id(n) for n, _ in self.named_parameters()), default=0) + 1

    @property
    def feature_dim(self) -> int:
        return self.config.dim

    def on_train_step(self, step: int, total_steps: int) -> None:
        """Hook for schedules inside the objective (e.g. an annealed loss weight)."""

    # -- frozen protocols: a readout with trainable parts -------------------------------------
    def readout_inputs(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
        """What frozen protocols extract once per record and cache (default: the features)."""
        return self.features(signals, lead_mask)

    def readout(self, inputs: torch.Tensor) -> torch.Tensor:
        """Cached ``readout_inputs`` -> (B, feature_dim), equal to ``features`` (default: identity)."""
        return inputs

    def fit_readout(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor],
        seed: int,
        progress: bool = True,
    ) -> dict:
        """Fit the ``downstream_only`` parameters on cached (readout inputs, labels) of the
        train/val records, before a frozen probe reads ``readout`` (default: nothing to fit).
        Returns details for the result record."""
        return {}

    # -- shared conveniences -----------------------------------------------------------------
    def features(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
        return self.encode(signals, lead_mask).pooled

    def hidden_states(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> list[torch.Tensor]:
        hidden = self.encode(signals, lead_mask, return_hidden=True).hidden_states
        if hidden is None:
            raise RuntimeError(f"{type(self).__name__}.encode(return_hidden=True) returned no hidden_states")
        return hidden

    def is_pretraining_only(self, param_name: str) -> bool:
        return bool(self.pretraining_only) and param_name.startswith(self.pretraining_only)

    def is_downstream_only(self, param_name: str) -> bool:
        return bool(self.downstream_only) and param_name.startswith(self.downstream_only)

    def encoder_parameters(self) -> int:
        """Parameters used downstream (everything but the pretraining-only modules)."""
        return sum(p.numel() for n, p in self.named_parameters() if not self.is_pretraining_only(n))

    @staticmethod
    def block_index(param_name: str, prefix: str) -> int | None:
        """Index i of a parameter under ``{prefix}.blocks.{i}.``, else None."""
        match = re.match(rf"{re.escape(prefix)}\.blocks\.(\d+)\.", param_name)
        return int(match.group(1)) if match else None


METHODS.declare_base(Method, "ecgbench.Method")
