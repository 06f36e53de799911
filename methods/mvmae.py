"""MVMAE / MMVM: multiview masked autoencoder with annealed cross-view alignment, leads as views.

Source: Laguna, Agostini et al. 2025, "Structure is supervision: multiview masked autoencoders
for radiology" (arXiv 2511.22294) [paper]; checked against agostini335/MVMAE
``mm_maes/mm_mae_mmvm.py``, ``mm_maes/utils.py``, ``networks/NetworksMAE.py`` and
``config/config_base.yaml`` [code]. The LAMAE paper's tables name it MMVM/MVMAE.

From the code:
* one encoder shared by all views plus a per-view embedding (``mod_embedding``) on the encoder
  input and on the decoder tokens; a shared decoder; each view is masked and reconstructed on
  its own (``ind_s``, which this class extends, plus ``decoder_lead_embedding``);
* L = L_rec + beta·L_align; L_align on the masked encoder outputs, per view the mean over all
  tokens including CLS, L2-normalised (``regularization_tokens: all``, no latent heads, not
  pairwise), metric ``mse`` (config_base; the dataclass default is ``cosine_sim``), options
  ``cosine_sim``, ``simclr`` (pairwise NT-Xent, temperature 0.5) and ``mix``
  (benchmark/nn/alignment.py);
* beta sigmoid-annealed from 0 to 2 (steepness 0.02) between the end of the lr warmup and the
  end of training, set every step through ``on_train_step``;
* downstream: per-view representation -> shared linear head -> logits averaged over views
  (``EnsembleClassifier``), i.e. the mean of the leads' CLS tokens (see ``ind_p``).

[choice] items (config fields):
* ``beta_start`` 0.05: the fraction of pretraining after which annealing starts — the presets'
  lr warmup fraction (``pretrain.optim.warmup_frac``); keep the two equal when changing either.
* the sigmoid's steepness is counted per 1 % of the annealing window and the curve rescaled to
  start at exactly 0 and end at exactly ``beta_final`` (benchmark/alignment.annealed_weight).
* ``norm_pix`` off and mask ratio 0.5 (their radiology config masks 0.93 of 16x16 image
  patches): the reconstruction target of LAMAE and Ind_* (methods/independent.py says why 0.5),
  so that the comparison isolates the alignment term. The preset's optimiser is used for every method (comparability).

Lead masks: missing leads are neither encoded nor reconstructed and take part in no alignment
pair; any subset of leads works at evaluation time (the lead average of the readout).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from torch import nn

from ecgbench import LEADS, METHODS, Batch, InputSpec
from ecgbench.layers import METRICS, SCHEDULES, alignment_loss, annealed_weight
from ecgbench_methods.independent import IndependentConfig, SharedIndependentLeadMAE


@dataclass
class MVMAEConfig(IndependentConfig):
    private: bool = False
    decoder_lead_embedding: bool = True
    align_metric: str = "mse"
    temperature: float = 0.5
    beta_final: float = 2.0
    beta_schedule: str = "sigmoid"
    beta_steepness: float = 0.02
    beta_start: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        if self.private:
            raise ValueError(f"{type(self).__name__}: the views share one encoder (private must be false)")
        if self.align_metric not in METRICS:
            raise ValueError(f"align_metric must be one of {', '.join(METRICS)}, got {self.align_metric!r}")
        if self.beta_schedule not in SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {', '.join(SCHEDULES)}, got {self.beta_schedule!r}")
        if self.temperature <= 0 or self.beta_final < 0 or self.beta_steepness <= 0 or not 0 <= self.beta_start < 1:
            raise ValueError(f"need temperature > 0, beta_final >= 0, beta_steepness > 0, beta_start in [0, 1): {self}")


@METHODS.register("mvmae")
class MVMAE(SharedIndependentLeadMAE):
    summary = "Multiview MAE (leads as views): shared encoder + beta-annealed cross-lead alignment"
    Config = MVMAEConfig

    def __init__(self, config: MVMAEConfig, input_spec: InputSpec):
        super().__init__(config, input_spec)
        if config.decoder_lead_embedding:
            self.decoder_lead_embed = nn.Parameter(trunc_normal_(torch.zeros(len(LEADS), config.decoder_dim), std=0.02))
        self.beta = 0.0

    def on_train_step(self, step: int, total_steps: int) -> None:
        c = self.config
        self.beta = annealed_weight(step, total_steps, c.beta_final, c.beta_schedule, c.beta_start, c.beta_steepness)

    def pretrain_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        losses, lead_features = self._reconstruct(batch)
        reconstruction = losses.pop("loss")
        c = self.config
        alignment = alignment_loss(lead_features, batch.lead_mask, c.align_metric, c.temperature)
        # the trivial reference of the alignment term: its loss on features that are one constant
        # vector (chance for the contrastive metrics, 0 for mse/cosine, which a collapse satisfies)
        with torch.no_grad():
            chance = alignment_loss(torch.ones_like(lead_features), batch.lead_mask, c.align_metric, c.temperature)
        return {
            "loss": reconstruction + self.beta * alignment,
            **{name: trivial + self.beta * chance for name, trivial in losses.items()},
            "reconstruction": reconstruction.detach(),
            "alignment": alignment.detach(),
            "alignment_at_chance": chance,
            "beta": torch.tensor(self.beta),
        }
