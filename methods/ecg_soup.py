"""ECG-Soup: multi-layer aggregation on the ST-MEM backbone (``st_mem_ppa``, ``st_mem_pma``,
``ipa_st_mem``; one file because the three differ from ``st_mem`` in one hook each).

Source: Nguyen, Phan, Pham, Chatzichristos, Vandenberk, De Vos, "ECG-Soup: harnessing
multi-layer synergy for ECG foundation models" (arXiv 2509.00102) [paper: its summary and
abstract; no public code reached]. The aggregation schemes are the paper's; sizes that no text
we could read gives (the gate's hidden width and dropout, the number of groups) are [choice].
The backbone, its pretraining and lead-mask handling are ``st_mem``'s (methods/st_mem.py).
H_1..H_L are the encoder's block outputs, mean_tokens the mean over the present leads' patch
tokens (SEP removed).

* ``st_mem_ppa`` — post-pretraining pooling aggregation: h = (1/L) Σ_l mean_tokens(LN(H_l))
  [paper]; LN is the encoder's pretrained final LayerNorm, applied to every layer [choice].
* ``st_mem_pma`` — post-pretraining mixture-of-layers aggregation: a gating network
  w = softmax(MLP(g)), g = mean_tokens(H_L), h = Σ_l w_l · mean_tokens(H_l) [paper]; the MLP is
  D -> ``gate_hidden`` (128) -> GELU -> Dropout(``gate_dropout``, 0.1) -> L [choice]. The gate is
  trained with the downstream head, never by pretraining (``downstream_only``): end to end under
  fine-tuning, and under frozen protocols on cached per-layer features together with a
  temporary linear head (``fit_readout``, benchmark/nn/frozen_head.py, settings ``gate_fit``)
  before the probe [choice].
* ``ipa_st_mem`` — in-pretraining aggregation: the L block outputs are split into consecutive
  groups, averaged within each group, concatenated along channels, and a Linear(groups·D ->
  decoder width) replaces ST-MEM's decoder projection [paper]; ``groups`` 4 [choice]; each group
  average is normalised by the encoder's final LayerNorm [choice]. When the encoder has fewer
  blocks than ``groups``, each block is its own group; uneven splits put the extra blocks in the
  first groups (``torch.tensor_split``) [choice]. Downstream it reads out as ST-MEM (last layer)
  [choice].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ecgbench import METHODS, InputSpec
from ecgbench.layers import FrozenHeadConfig, fit_frozen_head
from ecgbench_methods.st_mem import STMEM, STMEMConfig


@METHODS.register("st_mem_ppa")
class STMEMPPA(STMEM):
    summary = "ECG-Soup PPA: ST-MEM read out as the mean over layers of LN-normalised pooled tokens"

    def _readout(self, hidden: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._pool(self.encoder.norm(h), present) for h in hidden]).mean(0)


class LayerGate(nn.Module):
    """PMA's gating network over per-layer pooled features (B, L, D) -> (B, D)."""

    def __init__(self, dim: int, n_layers: int, hidden: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_layers))

    def weights(self, layers: torch.Tensor) -> torch.Tensor:
        """Softmax weights (B, L) from the last layer's pooled tokens."""
        return self.mlp(layers[:, -1]).softmax(dim=-1)

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        return (self.weights(layers).unsqueeze(-1).to(layers.dtype) * layers).sum(dim=1)


@dataclass
class PMAConfig(STMEMConfig):
    gate_hidden: int = 128
    gate_dropout: float = 0.1
    #: how frozen protocols fit the gate (with a temporary linear head) on cached features
    gate_fit: FrozenHeadConfig = field(default_factory=FrozenHeadConfig)

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.gate_fit, dict):  # a config rebuilt from its asdict() form
            self.gate_fit = FrozenHeadConfig(**self.gate_fit)
        if self.gate_hidden <= 0 or not 0 <= self.gate_dropout < 1:
            raise ValueError(
                f"need gate_hidden > 0 and gate_dropout in [0, 1): {self.gate_hidden}, {self.gate_dropout}"
            )


@METHODS.register("st_mem_pma")
class STMEMPMA(STMEM):
    summary = "ECG-Soup PMA: ST-MEM with a softmax gate mixing its layers, trained with the head"
    Config = PMAConfig
    pretraining_only = ("decoder.", "encoder.norm.")  # the gate reads un-normalised layers
    downstream_only = ("gate.",)

    def __init__(self, config: PMAConfig, input_spec: InputSpec):
        super().__init__(config, input_spec)
        self.gate = LayerGate(config.dim, config.depth, config.gate_hidden, config.gate_dropout)

    def _layers(self, hidden: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._pool(h, present) for h in hidden], dim=1)  # (B, L, D)

    def _readout(self, hidden: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        return self.gate(self._layers(hidden, present))

    def readout_inputs(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
        return self._layers(self._block_outputs(signals, lead_mask), lead_mask)

    def readout(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.gate(inputs)

    def fit_readout(self, train, val, seed: int, progress: bool = True) -> dict:
        head = nn.Sequential(self.gate, nn.Linear(self.config.dim, train[1].shape[1])).to(train[0].device)
        fitted = fit_frozen_head(head, train, val, self.config.gate_fit, seed, progress, desc="PMA gate")
        self.gate.eval()
        with torch.no_grad():
            mean_weights = self.gate.weights(train[0]).mean(0)
        return {
            "gate_val_macro_auroc": fitted.val_macro_auroc,
            "gate_best_epoch": fitted.best_epoch,
            "gate_mean_layer_weights": [round(float(w), 4) for w in mean_weights],
        }


@dataclass
class IPAConfig(STMEMConfig):
    groups: int = 4

    def __post_init__(self):
        super().__post_init__()
        if self.groups < 1:
            raise ValueError(f"groups must be >= 1, got {self.groups}")


@METHODS.register("ipa_st_mem")
class IPASTMEM(STMEM):
    summary = "ECG-Soup IPA-STMEM: ST-MEM whose decoder sees group-wise averages of all encoder layers"
    Config = IPAConfig

    @property
    def n_groups(self) -> int:
        return min(self.config.groups, self.config.depth)

    @property
    def decoder_input_dim(self) -> int:
        return self.n_groups * self.config.dim

    def _decoder_input(self, out: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        groups = torch.tensor_split(torch.stack(hidden), self.n_groups)
        return torch.cat([self.encoder.norm(group.mean(dim=0)) for group in groups], dim=-1)
