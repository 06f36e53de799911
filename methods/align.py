"""Alignment baseline: multi-lead MAE + pairwise lead alignment, after SwissBeatsNet.

Source: Erlacher, Agostini, Ruiperez-Campillo, Ozkan, Sutter, Vogt, "SwissBeatsNet: a
multilead masked autoencoder for Chagas disease detection", Computing in Cardiology 2025, as
described in the LAMAE paper (arXiv 2603.26475, §1): "multi-lead MAE reconstruction with a
lead-alignment objective to enforce cross-lead consistency" [paper]. No text or code of
SwissBeatsNet was reachable, so the whole design is [choice]:

* the multi-lead MAE is the one of its co-authors' MVMAE (``mvmae``, which this class
  reconfigures): one encoder shared by the leads plus a lead embedding, each lead masked
  (ratio 0.5, LAMAE's) and reconstructed, ``norm_pix`` off;
* ``align_metric`` ``lead_infonce``: InfoNCE over the leads of the batch, the other leads of
  the same ECG being the positives and the leads of other ECGs the negatives, temperature 0.5
  (benchmark/alignment.lead_infonce); ``mse`` on L2-normalised mean embeddings is the option;
* the lead embedding that is aligned: the mean of the lead's masked encoder output (CLS
  included), as MVMAE;
* lambda (``beta_final``) annealed linearly from 0 to 1 after the lr warmup (``beta_start``).

Downstream and lead masks as ``mvmae``: the mean of the present leads' CLS tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecgbench import METHODS
from ecgbench_methods.mvmae import MVMAE, MVMAEConfig


@dataclass
class AlignConfig(MVMAEConfig):
    decoder_lead_embedding: bool = False
    align_metric: str = "lead_infonce"
    beta_final: float = 1.0
    beta_schedule: str = "linear"


@METHODS.register("align")
class LeadAlignmentMAE(MVMAE):
    summary = "Multi-lead MAE + pairwise lead-alignment InfoNCE (SwissBeatsNet-style baseline)"
    Config = AlignConfig
