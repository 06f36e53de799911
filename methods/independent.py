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
* masking ratio 0.5 per lead, loss = MSE on masked patches of present leads, ``norm_pix`` off
  — the same reconstruction target as LAMAE so that the comparison isolates cross-lead LA. The
  ratio was 0.75 until the regime study (docs/pretraining-regime.md, "Lower masking at 32x on the
  pool"): on the pooled PTB-XL, LUDB and CinC records at 2.2e14 pretraining FLOPs (the
  ``cpu-long`` preset; seed 0) Ind_P ended at 0.781 of the trivial loss at 0.75 (linear probe 0.815
  macro AUROC, PTB-XL superdiagnostic), at 0.590 at 0.5 (probe 0.835); on the synthetic default
  at 0.5 and the same FLOPs at 0.426 (probe 0.946; section 5 of that page).
  ``ind_p[mask_ratio=0.75]`` is the earlier default.
* ``feature_dim``: 0 (default) reads out the encoder width; another value adds a fixed
  (frozen, semi-orthogonal, seeded) projection of the lead average to that width, counted in the
  encoder's parameters — so that a narrower, parameter-matched Ind_P (the ablation ladder's rung)
  is probed with features as wide as LAMAE's. It carries no information the width-``dim``
  features lack; it keeps "every probe sees features of the same dimension" true.
* ``decoder_lead_embed``: None here; a subclass may set a learnable per-lead embedding added to
  every token of the shared decoder (MVMAE's decoder ``mod_embedding``, methods/mvmae.py).

Lead masks: every lead is encoded on its own, so a missing lead is simply left out of the
lead average (and of the loss); any subset of leads works at evaluation time.

Execution (no modelling choice): no lead sees another, but all leads run at once. The twelve
private weight sets go through one vectorised call (``call_stacked``: ``torch.func.vmap`` over
their stacked weights, so each layer is one batched matmul instead of twelve); a shared encoder
encodes all present (record, lead) pairs as one batch. Loss, gradients and features equal a loop
over the leads (tests/test_lead_batching.py).
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
    call_stacked,
    lead_indices,
    masked_mean,
    patchify,
    random_keep_ids,
    reconstruction_loss,
    scatter_visible,
    to_lead_slots,
)


@dataclass
class IndependentConfig(MethodConfig):
    private: bool = True
    mask_ratio: float = 0.5
    lead_pool: str = "cls"
    norm_pix: bool = False
    feature_dim: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.feature_dim < 0:
            raise ValueError(f"feature_dim must be >= 0 (0: the encoder width), got {self.feature_dim}")
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
        self.feature_projection: nn.Linear | None = None
        if c.feature_dim and c.feature_dim != c.dim:
            self.feature_projection = nn.Linear(c.dim, c.feature_dim, bias=False)
            seeded = torch.randn(
                max(c.dim, c.feature_dim), min(c.dim, c.feature_dim), generator=torch.Generator().manual_seed(0)
            )
            basis = torch.linalg.qr(seeded).Q  # orthonormal columns, the same on every torch release
            with torch.no_grad():
                self.feature_projection.weight.copy_(basis if c.feature_dim > c.dim else basis.T)
            self.feature_projection.weight.requires_grad_(False)
        self.lead_embed = None if c.private else nn.Parameter(trunc_normal_(torch.zeros(len(LEADS), c.dim), std=0.02))
        self.decoder_lead_embed: nn.Parameter | None = None

    @property
    def n_keep(self) -> int:
        return max(1, int(round(self.n_patches * (1 - self.config.mask_ratio))))

    def _decoder_extra(self, lead: torch.Tensor) -> torch.Tensor | None:
        """The decoder's per-lead embedding for the leads ``lead`` (any shape of lead indices)."""
        return None if self.decoder_lead_embed is None else self.decoder_lead_embed[lead]

    def _reconstruct(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Masked reconstruction of every present lead, each lead on its own.

        Returns the losses (:func:`reconstruction_loss`: the loss and its trivial references) and each lead's masked-encoder output averaged over all its tokens
        (CLS included) as (B, L, D), zeros for missing leads — the view features that the
        alignment methods align. No lead sees another, but all leads run at once: private
        weights as one vectorised call over the twelve encoders and decoders (lead-major
        (L, B, ...); a missing lead is computed and weighted 0 in the loss), a shared encoder
        on the batch of all present (record, lead) pairs.
        """
        patches = patchify(batch.signals, self.patch_len)  # (B, L, N, p)
        keep_ids = random_keep_ids(rng.split(batch.keys, len(LEADS)), self.n_patches, self.n_keep)  # (B, L, K)
        present = batch.lead_mask
        if self.config.private:
            patches, keep_ids, present = patches.transpose(0, 1), keep_ids.transpose(0, 1), present.T
            lead = torch.arange(len(LEADS), device=patches.device)[:, None].expand_as(present)
            tokens, _ = call_stacked(self.encoders, patches, keep_ids)  # (L, B, 1 + K, D)
            dense, is_visible = scatter_visible(tokens[..., 1:, :], keep_ids, self.n_patches)
            pred = call_stacked(self.decoders, dense, is_visible, tokens[..., :1, :], self._decoder_extra(lead))
            masked = ~is_visible & present[..., None]
            lead_features = (tokens.mean(dim=2) * present[..., None]).transpose(0, 1)
        else:
            lead = lead_indices(present)
            patches, keep_ids = patches[present], keep_ids[present]
            tokens, _ = self.encoders[0](patches, keep_ids, self.lead_embed[lead])  # (P, 1 + K, D)
            dense, is_visible = scatter_visible(tokens[:, 1:], keep_ids, self.n_patches)
            pred = self.decoders[0](dense, is_visible, prefix=tokens[:, :1], extra=self._decoder_extra(lead))
            masked = ~is_visible
            lead_features = to_lead_slots(tokens.mean(dim=1), present)
        return reconstruction_loss(pred, patches, masked, self.config.norm_pix), lead_features.to(patches.dtype)

    def pretrain_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self._reconstruct(batch)[0]

    def encode(self, signals: torch.Tensor, lead_mask: torch.Tensor, return_hidden: bool = False) -> Encoded:
        patches = patchify(signals, self.patch_len)
        if self.config.private:  # every lead through its own encoder, in one call
            tokens, hidden = call_stacked(self.encoders, patches.transpose(0, 1), None, None, return_hidden)
            tokens, hidden = tokens.transpose(0, 1), [h.transpose(0, 1) for h in hidden]  # (B, L, 1 + N, D)
        else:  # the present leads as one batch
            lead = lead_indices(lead_mask)
            tokens, hidden = self.encoders[0](
                patches[lead_mask], extra=self.lead_embed[lead], return_hidden=return_hidden
            )
            tokens, hidden = to_lead_slots(tokens, lead_mask), [to_lead_slots(h, lead_mask) for h in hidden]
        lead_features = tokens[:, :, 0] if self.config.lead_pool == "cls" else tokens[:, :, 1:].mean(dim=2)
        pooled = masked_mean(lead_features, lead_mask, dim=1)
        if self.feature_projection is not None:
            pooled = self.feature_projection(pooled)
        if not return_hidden:
            return Encoded(pooled)
        # layer i: all leads' tokens side by side, missing leads zeroed
        keep = lead_mask[:, :, None, None]
        return Encoded(pooled, [(h * keep).flatten(1, 2) for h in hidden])

    def layer_id(self, name: str) -> int:
        depth = self.config.depth
        for k in range(len(self.encoders)):
            if (i := self.block_index(name, f"encoders.{k}.transformer")) is not None:
                return i + 1
            if name.startswith(f"encoders.{k}.transformer.norm"):
                return depth + 1
        if name.startswith(("encoders.", "lead_embed")):
            return 0
        return depth + 1  # the fixed feature projection; decoders: not used downstream

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim or self.config.dim


@dataclass
class SharedIndependentConfig(IndependentConfig):
    private: bool = False


@METHODS.register("ind_s")
class SharedIndependentLeadMAE(IndependentLeadMAE):
    summary = "Independent-lead MAE with one encoder shared across leads (+ lead embedding)"
    Config = SharedIndependentConfig
