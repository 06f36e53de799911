"""Independent-lead masked autoencoders (Ind_P, Ind_S): per-lead MAE, no cross-lead interaction.

Source: the baselines "Ind_P" and "Ind_S" of the LAMAE paper's Tables 1/3 (arXiv 2603.26475)
[paper]; the paper does not define P and S. Readout after the MVMAE code's EnsembleClassifier
(agostini335/MVMAE) [code]: per-lead representation -> shared linear head -> logits averaged
over the available leads. Because the head is linear, averaging the logits equals applying the
head to the mean of the lead representations, so ``features`` returns that mean and every
linear probe / fine-tuning head reproduces the ensemble exactly.

[choice] items (config fields):
* ``private``: Ind_P = one encoder (and decoder) per lead, 12 private weight sets (default
  reading of "P"); Ind_S = one encoder shared by all leads plus a learnable lead embedding
  ("S"). The paper's Ind_S scores close to Scratch, so "S" might instead mean the independent
  model not pretrained; under the paper's linear probe that reading is the frozen untrained
  ``random_init[arch=ind_p]`` (as its Scratch column is ``random_init``), under fine-tuning
  ``scratch[arch=ind_p]``.
* ``lead_pool``: a lead's representation is its encoder CLS token (default) or token mean; the
  CLS token is passed to the decoder, as in MAE (facebookresearch/mae ``forward_decoder``).
* masking ratio 0.75 per lead, loss = MSE on masked patches of present leads, ``norm_pix`` off
  — the same reconstruction target as LAMAE so that the comparison isolates cross-lead LA.
* ``decoder_lead_embed``: None here; a subclass may set a learnable per-lead embedding added to
  every token of the shared decoder (MVMAE's decoder ``mod_embedding``, methods/mvmae.py).

Lead masks: every lead is encoded on its own, so a missing lead is simply left out of the
lead average (and of the loss); any subset of leads works at evaluation time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from torch import nn

from ecgbench import (
    LEADS,
    METHODS,
    Batch,
    Encoded,
    InputSpec,
    Method,
    MethodConfig,
    rng,
)
from ecgbench.layers import (
    MAEDecoder,
    PatchEncoder,
    masked_mean,
    masked_patch_mse,
    patchify,
    random_keep_ids,
    scatter_visible,
)


@dataclass
class IndependentConfig(MethodConfig):
    private: bool = True
    mask_ratio: float = 0.75
    lead_pool: str = "cls"
    norm_pix: bool = False

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.lead_pool not in ("cls", "mean"):
            raise ValueError(f"lead_pool must be 'cls' or 'mean', got {self.lead_pool!r}")


@METHODS.register("ind_p")
class IndependentLeadMAE(Method):
    summary = "Independent-lead MAE with private per-lead encoders; lead-averaged readout"
    Config = IndependentConfig
    pretraining_only = ("decoders.", "decoder_lead_embed")

    def __init__(self, config: IndependentConfig, input_spec: InputSpec):
        super().__init__(config, input_spec)
        c = config
        n_weight_sets = len(LEADS) if c.private else 1
        self.encoders = nn.ModuleList(
            PatchEncoder(self.patch_len, self.n_patches, c.dim, c.depth, c.heads, c.mlp_ratio, c.drop_path)
            for _ in range(n_weight_sets)
        )
        self.decoders = nn.ModuleList(
            MAEDecoder(
                c.dim, self.patch_len, self.n_patches, c.decoder_dim, c.decoder_depth, c.decoder_heads, c.mlp_ratio
            )
            for _ in range(n_weight_sets)
        )
        self.lead_embed = None if c.private else nn.Parameter(trunc_normal_(torch.zeros(len(LEADS), c.dim), std=0.02))
        self.decoder_lead_embed: nn.Parameter | None = None

    def _per_lead(self, lead: int, batch_size: int) -> tuple[PatchEncoder, MAEDecoder, torch.Tensor | None]:
        k = lead if self.config.private else 0
        extra = None if self.lead_embed is None else self.lead_embed[lead].expand(batch_size, -1)
        return self.encoders[k], self.decoders[k], extra

    def _reconstruct(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked reconstruction of every present lead, each lead on its own.

        Returns the loss and each lead's masked-encoder output averaged over all its tokens
        (CLS included) as (B, L, D), zeros for missing leads — the view features that the
        alignment methods align.
        """
        patches = patchify(batch.signals, self.patch_len)
        n_keep = max(1, int(round(self.n_patches * (1 - self.config.mask_ratio))))
        lead_keys = rng.split(batch.keys, len(LEADS))
        total, weight = patches.new_zeros(()), patches.new_zeros(())
        lead_features = patches.new_zeros(*batch.lead_mask.shape, self.config.dim)
        for lead in range(len(LEADS)):
            present = batch.lead_mask[:, lead]
            if not present.any():
                continue
            encoder, decoder, extra = self._per_lead(lead, int(present.sum()))
            keep_ids = random_keep_ids(lead_keys[present, lead], self.n_patches, n_keep)
            tokens, _ = encoder(patches[present, lead], keep_ids, extra)
            dense, is_visible = scatter_visible(tokens[:, 1:], keep_ids, self.n_patches)
            decoder_extra = (
                None if self.decoder_lead_embed is None else self.decoder_lead_embed[lead].expand(len(dense), -1)
            )
            pred = decoder(dense, is_visible, prefix=tokens[:, :1], extra=decoder_extra)
            n_masked = (~is_visible).sum()
            total = total + masked_patch_mse(pred, patches[present, lead], ~is_visible, self.config.norm_pix) * n_masked
            weight = weight + n_masked
            lead_features[present, lead] = tokens.mean(dim=1).to(lead_features.dtype)
        return total / weight.clamp_min(1), lead_features

    def pretrain_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss, _ = self._reconstruct(batch)
        return {"loss": loss}

    def encode(self, signals: torch.Tensor, lead_mask: torch.Tensor, return_hidden: bool = False) -> Encoded:
        patches = patchify(signals, self.patch_len)
        lead_features, hidden = [], []
        for lead in range(len(LEADS)):
            encoder, _, extra = self._per_lead(lead, len(signals))
            tokens, layers = encoder(patches[:, lead], extra=extra, return_hidden=return_hidden)
            lead_features.append(tokens[:, 0] if self.config.lead_pool == "cls" else tokens[:, 1:].mean(1))
            hidden.append(layers)
        pooled = masked_mean(torch.stack(lead_features, dim=1), lead_mask, dim=1)
        if not return_hidden:
            return Encoded(pooled)
        # layer i: all leads' tokens side by side, missing leads zeroed
        keep = lead_mask[:, :, None, None]
        per_layer = [
            (torch.stack([hidden[lead][i] for lead in range(len(LEADS))], dim=1) * keep).flatten(1, 2)
            for i in range(self.config.depth)
        ]
        return Encoded(pooled, per_layer)

    def layer_id(self, name: str) -> int:
        depth = self.config.depth
        for k in range(len(self.encoders)):
            if (i := self.block_index(name, f"encoders.{k}.transformer")) is not None:
                return i + 1
            if name.startswith(f"encoders.{k}.transformer.norm"):
                return depth + 1
        if name.startswith(("encoders.", "lead_embed")):
            return 0
        return depth + 1  # decoders: not used downstream


@dataclass
class SharedIndependentConfig(IndependentConfig):
    private: bool = False


@METHODS.register("ind_s")
class SharedIndependentLeadMAE(IndependentLeadMAE):
    summary = "Independent-lead MAE with one encoder shared across leads (+ lead embedding)"
    Config = SharedIndependentConfig
