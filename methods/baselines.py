"""Untrained baselines: a method's architecture with no pretraining.

* ``random_init`` — the frozen, randomly initialised encoder evaluated by the frozen protocols
  (linear probe ...). Berger et al. 2026, "Evaluation of ECG representations must be fixed"
  (arXiv 2602.17531) show that such an encoder often matches pretrained ones, so every
  leaderboard shows it.
* ``scratch`` — the same architecture trained supervised only (fine-tuning protocol).

The LAMAE paper's "Scratch" column is ``random_init`` under its linear probes (Tables 1/3 probe
frozen backbones) and ``scratch`` only under fine-tuning (benchmark/report/reported.py).

[choice] ``arch``: whose architecture (default ``lamae``, as the LAMAE paper's Scratch); the
preset's model size applies, so it matches the pretrained method of the same name. Another
architecture is a variant: ``random_init[arch=ind_p]`` is the frozen untrained independent-lead
model (the alternative reading of the paper's Ind_S under its linear probe).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ecgbench import METHODS, Encoded, InputSpec, Method, MethodConfig

#: config fields the protocols set when they rebuild a method for evaluation (fine-tuning's drop_path)
RUNTIME_FIELDS: tuple[str, ...] = ("drop_path",)


@dataclass
class UntrainedConfig(MethodConfig):
    arch: str = "lamae"
    #: the architecture's full config (the runner fills it from the preset and the
    #: architecture's defaults: a variant ``random_init[arch=ind_p]`` wraps the plain ``ind_p``);
    #: empty = the architecture's defaults with this config's shared fields
    arch_config: dict = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        if self.arch in ("random_init", "scratch"):
            raise ValueError(f"arch must name a pretraining method, got {self.arch!r}")


class UntrainedArchitecture(Method):
    """Wraps another method's network; only its downstream path is used."""

    Config = UntrainedConfig
    pretrains = False

    def __init__(self, config: UntrainedConfig, input_spec: InputSpec):
        super().__init__(config, input_spec)
        arch = METHODS.get(config.arch)
        # the architecture's config (the shared fields of this one when none is given), with the
        # fields protocols change at evaluation time (``rebuild(drop_path=...)``) taken from this one
        arch_config = config.arch_config or {f: getattr(config, f) for f in MethodConfig.field_names()}
        self.net = arch(arch.Config(**{**arch_config, **{f: getattr(config, f) for f in RUNTIME_FIELDS}}), input_spec)
        self.pretraining_only = tuple(f"net.{p}" for p in self.net.pretraining_only)
        self.downstream_only = tuple(f"net.{p}" for p in self.net.downstream_only)
        self.no_weight_decay = self.net.no_weight_decay

    @property
    def feature_dim(self) -> int:
        return self.net.feature_dim

    def encode(self, signals: torch.Tensor, lead_mask: torch.Tensor, return_hidden: bool = False) -> Encoded:
        return self.net.encode(signals, lead_mask, return_hidden)

    def readout_inputs(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
        return self.net.readout_inputs(signals, lead_mask)

    def readout(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net.readout(inputs)

    def fit_readout(self, train, val, seed: int, progress: bool = True) -> dict:
        return self.net.fit_readout(train, val, seed, progress)

    def layer_id(self, name: str) -> int:
        return self.net.layer_id(name.removeprefix("net."))


@METHODS.register("random_init")
class RandomInit(UntrainedArchitecture):
    summary = "Frozen randomly initialised encoder (reference for frozen protocols; Berger et al. 2026)"
    evaluations = frozenset({"frozen"})


@METHODS.register("scratch")
class Scratch(UntrainedArchitecture):
    summary = "Same architecture trained supervised from random init (reference for fine-tuning)"
    evaluations = frozenset({"finetune"})
