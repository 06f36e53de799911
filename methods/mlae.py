"""MLAE: masked lead autoencoder, ST-MEM's lead-masking baseline.

Source: Na et al., ICLR 2024 (ST-MEM), baselines section [paper]; checked against bakqui/ST-MEM
``models/mlae.py`` (``MLAE(MTAE)``), ``models/encoder/mlae_vit.py`` and
``configs/pretrain/mlae.yaml`` [code]. MTAE's model (methods/mtae.py) with one token per lead:

* a token is a whole lead (T samples), embedded by LayerNorm(T) -> Linear(T -> D) ->
  LayerNorm(D); sin-cos positions over the 12 lead slots; a CLS token;
* random masking of 75 % of the leads (int(12·0.25) = 3 kept): whole leads are hidden;
* the decoder predicts each masked lead's T samples; norm_pix MSE over masked leads;
* downstream: the CLS token after the final LayerNorm.

[choice] items: the preset's optimiser, model size and window; Xavier init as ST-MEM. Lead
masks: a missing lead's token is excluded as an attention key and from the loss, and never
chosen visible while present leads remain (with fewer present leads than kept slots the extra
slots are masked keys); any subset of leads works at evaluation time.
"""

from __future__ import annotations

import torch

from ecgbench import LEADS, METHODS
from ecgbench_methods.mtae import MTAE


@METHODS.register("mlae")
class MLAE(MTAE):
    summary = "MLAE (ST-MEM baseline): one token per lead, whole leads masked, CLS readout"

    @property
    def n_tokens(self) -> int:
        return len(LEADS)

    @property
    def token_size(self) -> int:
        return self.input_spec.window

    def _tokenize(self, signals: torch.Tensor) -> torch.Tensor:
        return signals

    def _token_present(self, lead_mask: torch.Tensor) -> torch.Tensor:
        return lead_mask

    def _pieces(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, :, None, :]

    def _piece_present(self, lead_mask: torch.Tensor) -> torch.Tensor:
        return lead_mask[:, :, None]
