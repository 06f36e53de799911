"""LAMAE: latent attention masked autoencoder over the set of ECG leads.

Source: "From Leads to Latents: Attention-Driven Masked Autoencoder for ECG Time Series"
(arXiv 2603.26475, ICLR 2026 workshop) [paper]. No public code; checked against the paper text
only (§2, loss equation, Fig. 1).

From the paper:
* one per-lead encoder E_phi and one per-lead decoder D_theta, weights shared across leads;
* MAE patch masking inside each lead (ratio alpha_E); only visible patches enter E_phi;
* Latent Attention (LA): multi-head, multi-layer self-attention over the set of lead latents
  with an extra CLS token; a random lead mask M_LA (ratio alpha_LA) before LA;
* loss: squared error on the masked patches, normalised by alpha_E and the number of leads;
* downstream: the LA CLS token (linear probing and fine-tuning).

[choice] items (our decisions, each a config field):
* ``lead_latent``: what represents a lead in LA — its encoder CLS token (default) or the mean of
  its visible tokens; a learnable lead-identity embedding is added (``lead_embedding``).
* LA-masked leads enter LA as a learned mask token + their lead embedding, so LA must infer
  them from the other leads; their encoders are skipped and all their patches count as masked.
* ``la_mask_ratio`` 0.5 (paper sweeps 0.25/0.5/0.75), ``la_depth`` 2, ``mask_ratio`` (alpha_E)
  0.75; at least one present lead always stays visible to LA.
* decoder input for lead l: LA's CLS output and LA's output for lead l, prepended to the lead's
  visible patch latents and mask tokens at the masked positions (sin-cos temporal positions).
  Feeding the CLS to every decoder is what trains it as the global summary the paper reads out
  (as MAE passes its CLS token to the decoder); ``norm_pix`` off, as the
  paper's loss is on raw samples. The loss is the mean over masked samples, which equals the
  paper's (1/alpha_E)(1/|L|) sum up to a constant factor.
* missing leads (lead mask False) are neither encoded, attended to, nor reconstructed; any
  subset of leads works at evaluation time (set-based).
* ``readout``: "la_cls" (LAMAE, default) or "encoder_mean" (the mean of per-lead encoder
  latents, LA discarded) — the latter is the default reading of LAMAE_E (``lamae_e``). With
  "encoder_mean" the LA modules and lead embeddings are pretraining-only: not run, counted or
  fine-tuned downstream.
* with ``la_mask_ratio`` 0 no lead is ever hidden from LA, so there is no LA mask token.
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
    Transformer,
    masked_mean,
    masked_patch_mse,
    patchify,
    random_keep_ids,
    scatter_visible,
    to_lead_slots,
)

LA_MASK_SALT = 0x4C41  # the key stream of the LA lead mask (salts 0-11 are the leads' patch masks)


@dataclass
class LAMAEConfig(MethodConfig):
    mask_ratio: float = 0.75
    la_mask_ratio: float = 0.5
    la_depth: int = 2
    lead_latent: str = "cls"
    lead_embedding: bool = True
    norm_pix: bool = False
    readout: str = "la_cls"

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.mask_ratio < 1.0 or not 0.0 <= self.la_mask_ratio < 1.0:
            raise ValueError(f"mask ratios must be in [0, 1): {self.mask_ratio}, {self.la_mask_ratio}")
        if self.la_depth < 1:
            raise ValueError(f"la_depth must be >= 1, got {self.la_depth}")
        if self.lead_latent not in ("cls", "mean"):
            raise ValueError(f"lead_latent must be 'cls' or 'mean', got {self.lead_latent!r}")
        if self.readout not in ("la_cls", "encoder_mean"):
            raise ValueError(f"readout must be 'la_cls' or 'encoder_mean', got {self.readout!r}")


@METHODS.register("lamae")
class LAMAE(Method):
    summary = "Latent attention MAE: shared per-lead encoder, attention over lead latents, LA CLS readout"
    Config = LAMAEConfig
    pretraining_only = ("decoder.", "la_mask_token")

    def __init__(self, config: LAMAEConfig, input_spec: InputSpec):
        super().__init__(config, input_spec)
        c = config
        self.encoder = PatchEncoder(self.patch_len, self.n_patches, c.dim, c.depth, c.heads, c.mlp_ratio, c.drop_path)
        self.lead_embed = nn.Parameter(torch.zeros(len(LEADS), c.dim)) if c.lead_embedding else None
        self.la_cls = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.la_mask_token = nn.Parameter(torch.zeros(1, c.dim)) if c.la_mask_ratio > 0 else None
        self.la = Transformer(c.dim, c.la_depth, c.heads, c.mlp_ratio, c.drop_path)
        self.decoder = MAEDecoder(
            c.dim, self.patch_len, self.n_patches, c.decoder_dim, c.decoder_depth, c.decoder_heads, c.mlp_ratio
        )
        for p in (self.la_cls, self.la_mask_token, self.lead_embed):
            if p is not None:
                trunc_normal_(p, std=0.02)
        if c.readout == "encoder_mean":  # LA is discarded downstream
            self.pretraining_only = (*self.pretraining_only, "la.", "la_cls", "lead_embed")

    # -- pieces ------------------------------------------------------------------------------
    def _lead_latents(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0] if self.config.lead_latent == "cls" else tokens[:, 1:].mean(dim=1)

    def _latent_attention(self, latents: torch.Tensor, attend: torch.Tensor, return_hidden: bool = False):
        """latents (B, L, D) for the leads LA may attend to (``attend`` (B, L)); CLS first."""
        if self.lead_embed is not None:
            latents = latents + self.lead_embed
        x = torch.cat([self.la_cls.expand(len(latents), -1, -1), latents], dim=1)
        keys = torch.cat([attend.new_ones(len(attend), 1), attend], dim=1)
        return self.la(x, attn_mask=keys[:, None, None, :], return_hidden=return_hidden)

    def _la_lead_mask(self, present: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Hide la_mask_ratio of each record's present leads from LA (keep >= 1); ``noise``
        (B, L) uniform decides which."""
        n_present = present.sum(dim=1, keepdim=True)
        n_hide = (n_present.float() * self.config.la_mask_ratio).floor().clamp(max=n_present - 1)
        noise = noise.masked_fill(~present, 2.0)
        rank = noise.argsort(dim=1).argsort(dim=1)  # rank of each lead among the present ones
        return present & (rank < n_hide)

    # -- contract ----------------------------------------------------------------------------
    def pretrain_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        patches = patchify(batch.signals, self.patch_len)  # (B, L, N, p)
        present = batch.lead_mask
        hidden_from_la = self._la_lead_mask(present, rng.uniform(rng.fold_in(batch.keys, LA_MASK_SALT), len(LEADS)))
        encoded = present & ~hidden_from_la  # (B, L): leads that go through E_phi
        n_keep = max(1, int(round(self.n_patches * (1 - c.mask_ratio))))
        lead_keys = rng.split(batch.keys, len(LEADS))
        keep_ids = random_keep_ids(lead_keys[encoded], self.n_patches, n_keep)
        tokens, _ = self.encoder(patches[encoded], keep_ids)  # (S, 1 + K, D)

        latents = tokens.new_zeros(*present.shape, c.dim)
        if self.la_mask_token is not None:
            latents = latents + self.la_mask_token.to(latents.dtype)
        latents[encoded] = self._lead_latents(tokens).to(latents.dtype)
        la_out, _ = self._latent_attention(latents, present)
        # decoder context of lead l: LA's CLS (so the downstream token is trained) and LA's lead l
        lead_context = torch.stack(
            [la_out[:, :1].expand(-1, present.shape[1], -1)[present], la_out[:, 1:][present]], dim=1
        )  # (P, 2, D)

        # decoder sequences for every present lead: visible tokens only where encoded
        dense = tokens.new_zeros(*present.shape, self.n_patches, c.dim)
        is_visible = torch.zeros(*present.shape, self.n_patches, dtype=torch.bool, device=dense.device)
        dense[encoded], is_visible[encoded] = scatter_visible(tokens[:, 1:], keep_ids, self.n_patches)
        pred = self.decoder(dense[present], is_visible[present], prefix=lead_context)
        loss = masked_patch_mse(pred, patches[present], ~is_visible[present], c.norm_pix)
        return {"loss": loss, "leads_hidden_from_la": hidden_from_la.sum(1).float().mean()}

    def encode(self, signals: torch.Tensor, lead_mask: torch.Tensor, return_hidden: bool = False) -> Encoded:
        patches = patchify(signals, self.patch_len)
        tokens, enc_hidden = self.encoder(patches[lead_mask], return_hidden=return_hidden)
        latents = to_lead_slots(self._lead_latents(tokens), lead_mask)
        if self.config.readout == "la_cls":
            la_out, la_hidden = self._latent_attention(latents, lead_mask, return_hidden)
            pooled = la_out[:, 0]
        else:
            pooled, la_hidden = masked_mean(latents, lead_mask, dim=1), []
        if not return_hidden:
            return Encoded(pooled)
        # (S, 1 + N, D) -> (B, L * (1 + N), D), zeros for missing leads
        per_lead_layers = [to_lead_slots(h, lead_mask).flatten(1, 2) for h in enc_hidden]
        return Encoded(pooled, per_lead_layers + la_hidden)

    def layer_id(self, name: str) -> int:
        depth = self.config.depth
        if (i := self.block_index(name, "encoder.transformer")) is not None:
            return i + 1
        if (i := self.block_index(name, "la")) is not None:
            return depth + 2 + i
        if name.startswith("encoder.transformer.norm"):
            return depth + 1
        if name.startswith(("lead_embed", "la_cls", "la_mask_token")):
            return depth + 1
        if name.startswith("la.norm"):
            return depth + self.config.la_depth + 2
        if name.startswith("encoder."):
            return 0
        return depth + self.config.la_depth + 2  # decoder: not used downstream
