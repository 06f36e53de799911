"""LAMAE: latent attention masked autoencoder over the set of ECG leads.

Source: "From Leads to Latents: Attention-Driven Masked Autoencoder for ECG Time Series"
(arXiv 2603.26475, ICLR 2026 workshop) [paper]. No public code; checked against the paper text
only (abstract, §2.1, §2.2 with the loss equation, Fig. 1, conclusion).

From the paper:
* per-lead encoders E_phi and decoders D_theta "with shared weights" across leads (§2.2);
* MAE patch masking inside each lead (ratio alpha_E); only visible patches enter E_phi (§2.2);
* Latent Attention (LA) between encoders and decoders, "a multi-head, multi-layer
  self-attention block using an additional CLS token" (§2.1); a random mask M_LA with ratio
  alpha_LA on LA's input Z, "similar to encoder E_phi in the MAE" (eq. 1);
* loss: squared error on the encoder-masked patches, normalised by alpha_E and the number of
  leads, with x_hat_{l,t} = D(LA(Z_vis))_{l,t} (§2.2);
* downstream: LA's CLS token, for linear probing and fine-tuning (§2.2, Fig. 1 right).

The default follows the paper's equations (``la_tokens`` ``patch``, the token-level reading):
* "x_hat_{l_t} = D_phi(LA(Z_vis)_{l_t})" (§2.2): the reconstruction of lead l at patch t is the
  decoder applied to LA's output at (l, t), so LA outputs one token per lead and patch and each
  lead's decoder reads LA's outputs at that lead's positions — and nothing else: no skip path
  from a lead's encoder tokens to its decoder [paper];
* "Z_vis = M_LA({z_l}_{l in L}) is the set of all non-masked latent tokens z_l coming from all
  leads" and "similar to encoder E_phi in the MAE, we apply a random mask M_LA(.) to the input
  embeddings Z" (eq. 1, §2.1): LA's input is the encoder's latent tokens of all leads with a
  fraction alpha_LA of them removed, as an MAE encoder drops masked patches — no mask tokens
  enter LA [paper];
* the loss sums over "t not in T_vis", the encoder-masked patches (§2.2): a patch whose latent
  M_LA hid is not scored (``la_score_hidden`` off) [paper]; the decoder reads a mask token there.
Other readings are named variants:
* ``lamae[la_skip=true,la_tokens=lead]`` — the suite's earlier default: one latent per lead (eq. 1's Z indexed
  by lead, the abstract's "aggregation ... of lead-specific representations"), M_LA hiding whole
  leads, which enter LA as a mask token, and each lead's decoder reading its own visible encoder
  tokens with two LA outputs prepended (a skip path the equation does not have) [choice];
* ``lamae[la_skip=true]`` — token-level with the skip path: a lead's decoder reads its own encoder
  latents at its visible positions, LA's output added where LA saw them [choice];
* ``lamae[la_score_hidden=true]`` — token-level, the patches whose latent M_LA hid scored as
  well, which makes M_LA a prediction task rather than a thinning of LA's context [choice].
The ablation ladder (``--methods ladder:lamae``) changes one of these factors per rung.

Where the paper conflicts with itself: it never mentions a lead embedding and calls the
aggregation "permutation-invariant" (abstract), yet M_LA hides leads (or latents) that the
decoders must still reconstruct, and LA can only tell which lead a hidden lead is if its input
carries the lead's identity. ``lead_embedding`` (default on) adds a learnable lead-identity
embedding to LA's inputs [choice]: the CLS readout is then invariant only to permuting leads
together with their embeddings. ``lead_embedding=false`` is the permutation-invariant reading
(LA's CLS does not depend on the order of the leads; in the lead-level reading all hidden leads
then look alike to LA).

Further [choice] items (each a config field):
* ``lead_latent``: a lead's latent in the lead-level reading, and its summary in the
  ``encoder_mean`` readout — its encoder CLS token (default) or the mean of its tokens.
* lead-level M_LA: la_mask_ratio of each record's present leads are hidden; they enter LA as a
  learned mask token + their lead embedding, so LA must infer them from the other leads; their
  encoders are skipped and all their patches count as masked; at least one lead stays visible.
* token-level M_LA: floor(la_mask_ratio x K) of each lead's K visible latents are hidden
  (stratified per lead, so every lead keeps at least one and batches stay rectangular) and
  dropped from LA's input. LA's inputs get the sin-cos time position of their patch, so that LA
  can align patches across leads.
* decoder input for lead l — token-level: LA's CLS output prepended to LA's outputs at lead l's
  positions and mask tokens elsewhere; lead-level: LA's CLS output and LA's output for lead l,
  prepended to the lead's visible encoder tokens and mask tokens at the masked positions. The
  decoder adds sin-cos time positions. Feeding the CLS to every decoder trains it as the global
  summary the paper reads out (as MAE passes its CLS token to the decoder).
* ``mask_ratio`` (alpha_E) 0.5, ``la_mask_ratio`` (alpha_LA) 0.25, ``la_depth`` 2: the paper
  gives no values. The two ratios were 0.75 (MAE's for images) and 0.5 until the regime study
  (docs/pretraining-regime.md, "Lower masking at 32x on the pool") measured that at them LAMAE
  barely leaves the trivial predictor on real ECGs: on the pooled PTB-XL (records 1-999), LUDB and
  CinC records at 2.2e14 pretraining FLOPs (the ``cpu-long`` preset; seed 0, one CPU core) it
  ended at 0.826 of the trivial loss (linear probe 0.781 macro AUROC, PTB-XL superdiagnostic),
  at 0.5 / 0.25 at 0.321 (probe 0.821). On the synthetic default at 0.5 / 0.25 and those FLOPs it
  ended at 0.250, but its probe (0.854) stayed below that of the earlier masking at half the FLOPs
  (0.869, loss ratio 0.784): one seed each. At 0.75 / 0.5 a lead's decoder reads LA's output at 3 of
  its 20 patches (5 s of 0.25 s), at 0.5 / 0.25 at 8. Every other value runs as a variant
  (``lamae[la_mask_ratio=0.5,mask_ratio=0.75]`` is the earlier default).
* ``norm_pix`` off, as the paper's loss is on raw samples; the loss is the mean over masked
  samples, which equals the paper's (1/alpha_E)(1/|L|) sum up to a constant factor.
* missing leads (lead mask False) are neither encoded, attended to, nor reconstructed; any
  subset of leads works at evaluation time (set-based).
* ``readout``: ``la_cls`` (LAMAE, default), ``la_mean`` (mean of LA's outputs at the present
  leads' latents) or ``encoder_mean`` (mean of the present leads' encoder summaries, LA
  discarded: the default reading of LAMAE_E, ``lamae_e``). Parts a readout does not use
  downstream (LA and the lead embeddings for ``encoder_mean``; LA's CLS where no output attends
  to it) are pretraining-only: not run, counted or fine-tuned downstream.
* ablations, the rungs of the ladder: ``la_depth=0`` removes LA (only its final LayerNorm stays:
  each lead's decoder reads its own latent, nothing crosses leads); ``la_cross_lead=false`` keeps
  LA's blocks but confines each latent's attention to its own lead (and LA's CLS to itself):
  independent leads with LAMAE's encoder, LA blocks, decoder context, parameters and FLOPs. Both
  need ``la_mask_ratio=0`` (nothing could inform a hidden latent) and a readout other than
  ``la_cls`` (LA's CLS sees no lead).
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
    attention_mask,
    gather_tokens,
    masked_mean,
    patchify,
    random_keep_ids,
    reconstruction_loss,
    scatter_visible,
    sincos_positions,
    to_lead_slots,
    xavier_init,
)

LA_MASK_SALT = 0x4C41  # the key stream of the LA lead/latent mask (salts 0-11 are the leads' patch masks)
LA_TOKENS = ("lead", "patch")
READOUTS = ("la_cls", "la_mean", "encoder_mean")


@dataclass
class LAMAEConfig(MethodConfig):
    mask_ratio: float = 0.5
    la_mask_ratio: float = 0.25
    la_depth: int = 2
    la_tokens: str = "patch"
    la_skip: bool = False
    la_score_hidden: bool = False
    la_cross_lead: bool = True
    lead_latent: str = "cls"
    lead_embedding: bool = True
    norm_pix: bool = False
    readout: str = "la_cls"

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.mask_ratio < 1.0 or not 0.0 <= self.la_mask_ratio < 1.0:
            raise ValueError(f"mask ratios must be in [0, 1): {self.mask_ratio}, {self.la_mask_ratio}")
        if self.la_depth < 0:
            raise ValueError(f"la_depth must be >= 0 (0 removes latent attention), got {self.la_depth}")
        if self.la_tokens not in LA_TOKENS:
            raise ValueError(f"la_tokens must be 'lead' or 'patch', got {self.la_tokens!r}")
        if self.la_tokens == "lead" and (not self.la_skip or self.la_score_hidden):
            raise ValueError(
                "the lead-level reading (la_tokens=lead) always has its skip path and scores hidden leads: "
                "write la_skip=true (la_score_hidden belongs to the token-level reading)"
            )
        if self.la_skip and self.la_score_hidden:
            raise ValueError("la_score_hidden with la_skip would score patches the decoder reads from its own encoder")
        if self.lead_latent not in ("cls", "mean"):
            raise ValueError(f"lead_latent must be 'cls' or 'mean', got {self.lead_latent!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        if not self.mixes_leads:
            ablation = "la_depth=0 (no LA)" if self.la_depth == 0 else "la_cross_lead=false (LA within each lead)"
            if self.la_mask_ratio:
                raise ValueError(
                    f"{ablation} needs la_mask_ratio=0: no other lead could inform a latent hidden from LA"
                )
            if self.readout == "la_cls":
                raise ValueError(f"{ablation} needs readout la_mean or encoder_mean: LA's CLS token sees no lead")

    @property
    def mixes_leads(self) -> bool:
        """Whether information crosses leads in LA (False for the ablations without it)."""
        return self.la_depth > 0 and self.la_cross_lead


@METHODS.register("lamae")
class LAMAE(Method):
    summary = "Latent attention MAE: shared per-lead encoder, attention over lead latents, LA CLS readout"
    Config = LAMAEConfig

    def __init__(self, config: LAMAEConfig, input_spec: InputSpec):
        super().__init__(config, input_spec)
        c = config
        self.encoder = PatchEncoder(self.patch_len, self.n_patches, c.dim, c.depth, c.heads, c.mlp_ratio, c.drop_path)
        self.lead_embed = nn.Parameter(torch.zeros(len(LEADS), c.dim)) if c.lead_embedding else None
        self.la_cls = nn.Parameter(torch.zeros(1, 1, c.dim))
        # hidden leads enter lead-level LA as a mask token; token-level LA drops hidden latents
        self.la_mask_token = (
            nn.Parameter(torch.zeros(1, c.dim)) if c.la_mask_ratio > 0 and c.la_tokens == "lead" else None
        )
        self.la = Transformer(c.dim, c.la_depth, c.heads, c.mlp_ratio, c.drop_path)
        self.la.apply(xavier_init)  # MAE's init, as the encoder and decoder get
        if c.la_tokens == "patch":
            self.register_buffer("la_pos_embed", sincos_positions(self.n_patches, c.dim), persistent=False)
        self.decoder = MAEDecoder(
            c.dim, self.patch_len, self.n_patches, c.decoder_dim, c.decoder_depth, c.decoder_heads, c.mlp_ratio
        )
        for p in (self.la_cls, self.la_mask_token, self.lead_embed):
            if p is not None:
                trunc_normal_(p, std=0.02)
        self.pretraining_only = ("decoder.", "la_mask_token")
        if c.readout == "encoder_mean":  # LA is discarded downstream
            self.pretraining_only = (*self.pretraining_only, "la.", "la_cls", "lead_embed")
        elif c.readout == "la_mean" and not c.mixes_leads:  # no output downstream attends to LA's CLS
            self.pretraining_only = (*self.pretraining_only, "la_cls")

    # -- pieces ------------------------------------------------------------------------------
    def _lead_latents(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0] if self.config.lead_latent == "cls" else tokens[:, 1:].mean(dim=1)

    def _lead_level_input(self, latents: torch.Tensor, present: torch.Tensor):
        """LA's input in the lead-level reading: one latent per lead slot (B, L, D)."""
        if self.lead_embed is not None:
            latents = latents + self.lead_embed
        return latents, present, torch.arange(len(LEADS), device=latents.device)

    def _token_level_input(self, tokens: torch.Tensor, positions: torch.Tensor, present: torch.Tensor):
        """LA's input in the token-level reading: the latents (P, T, D) of the present leads (rows in
        ``x[present]`` order) at time positions (P, T) -> every lead x latent of a record (B, L*T, D)."""
        n = tokens.shape[1]
        slots = to_lead_slots(tokens + self.la_pos_embed[positions].to(tokens.dtype), present)  # (B, L, T, D)
        if self.lead_embed is not None:
            slots = slots + self.lead_embed[None, :, None, :]
        valid = present[:, :, None].expand(-1, -1, n)
        leads = torch.arange(len(LEADS), device=tokens.device).repeat_interleave(n)
        return slots.flatten(1, 2), valid.flatten(1), leads

    def _latent_attention(self, x: torch.Tensor, valid: torch.Tensor, leads: torch.Tensor, return_hidden=False):
        """LA over latents x (B, S, D) of which ``valid`` (B, S) may be attended to, with LA's CLS
        first; ``leads`` (S,) is each latent's lead, to confine attention to it when LA does not
        cross leads (``la_cross_lead=false``; LA's CLS then attends to itself only)."""
        x = torch.cat([self.la_cls.expand(len(x), -1, -1), x], dim=1)
        keys = torch.cat([valid.new_ones(len(valid), 1), valid], dim=1)
        if self.config.la_cross_lead:
            mask = attention_mask(keys)
        else:
            group = torch.cat([leads.new_full((1,), -1), leads])
            same = group[:, None] == group[None, :]
            itself = torch.eye(len(group), dtype=torch.bool, device=x.device)  # every query keeps a key
            mask = ((same & keys[:, None, :]) | itself)[:, None]
        return self.la(x, attn_mask=mask, return_hidden=return_hidden)

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
        if self.config.la_tokens == "patch":
            return self._token_level_loss(batch)
        return self._lead_level_loss(batch)

    def _lead_level_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
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
        la_out, _ = self._latent_attention(*self._lead_level_input(latents, present))
        # decoder context of lead l: LA's CLS (so the downstream token is trained) and LA's lead l
        lead_context = torch.stack(
            [la_out[:, :1].expand(-1, present.shape[1], -1)[present], la_out[:, 1:][present]], dim=1
        )  # (P, 2, D)

        # decoder sequences for every present lead: visible tokens only where encoded
        dense = tokens.new_zeros(*present.shape, self.n_patches, c.dim)
        is_visible = torch.zeros(*present.shape, self.n_patches, dtype=torch.bool, device=dense.device)
        dense[encoded], is_visible[encoded] = scatter_visible(tokens[:, 1:], keep_ids, self.n_patches)
        pred = self.decoder(dense[present], is_visible[present], prefix=lead_context)
        losses = reconstruction_loss(pred, patches[present], ~is_visible[present], c.norm_pix)
        return {**losses, "leads_hidden_from_la": hidden_from_la.sum(1).float().mean()}

    def _token_level_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """x_hat_{l,t} = D(LA(Z_vis))_{l,t}: every present lead is encoded from its visible
        patches, M_LA hides latents, LA attends over the rest of all leads, and lead l's decoder
        reads LA's outputs at lead l's positions (mask tokens elsewhere) after LA's CLS; with
        ``la_skip`` also lead l's own encoder latents at its visible positions. The loss is over
        the encoder-masked patches (and the LA-hidden ones with ``la_score_hidden``)."""
        c = self.config
        patches = patchify(batch.signals, self.patch_len)  # (B, L, N, p)
        present = batch.lead_mask
        n_keep = max(1, int(round(self.n_patches * (1 - c.mask_ratio))))
        keep_ids = random_keep_ids(rng.split(batch.keys, len(LEADS))[present], self.n_patches, n_keep)  # (P, K)
        tokens, _ = self.encoder(patches[present], keep_ids)  # (P, 1 + K, D)

        n_to_la = n_keep - int(n_keep * c.la_mask_ratio)  # >= 1 as la_mask_ratio < 1
        la_keys = rng.split(rng.fold_in(batch.keys, LA_MASK_SALT), len(LEADS))[present]
        to_la = random_keep_ids(la_keys, n_keep, n_to_la)  # (P, K'): which visible latents LA sees
        positions = torch.gather(keep_ids, 1, to_la)  # their patches' time positions
        x, valid, leads = self._token_level_input(gather_tokens(tokens[:, 1:], to_la), positions, present)
        la_out, _ = self._latent_attention(x, valid, leads)  # (B, 1 + L * K', D)

        lead_out = la_out[:, 1:].unflatten(1, (len(LEADS), n_to_la))[present]  # (P, K', D)
        dense, seen_by_la = scatter_visible(lead_out, positions, self.n_patches)
        encoder_latents, encoder_visible = scatter_visible(tokens[:, 1:], keep_ids, self.n_patches)
        if c.la_skip:  # the lead's own encoder latents reach its decoder directly
            dense, is_visible = dense + encoder_latents.to(dense.dtype), encoder_visible
        else:
            is_visible = seen_by_la
        cls_context = la_out[:, :1].expand(-1, len(LEADS), -1)[present][:, None]  # (P, 1, D)
        pred = self.decoder(dense, is_visible, prefix=cls_context)
        scored = ~seen_by_la if c.la_score_hidden else ~encoder_visible
        return reconstruction_loss(pred, patches[present], scored, c.norm_pix)

    def encode(self, signals: torch.Tensor, lead_mask: torch.Tensor, return_hidden: bool = False) -> Encoded:
        c = self.config
        patches = patchify(signals, self.patch_len)
        tokens, enc_hidden = self.encoder(patches[lead_mask], return_hidden=return_hidden)
        if c.readout == "encoder_mean":
            latents = to_lead_slots(self._lead_latents(tokens), lead_mask)
            pooled, la_hidden = masked_mean(latents, lead_mask, dim=1), []
        else:
            if c.la_tokens == "lead":
                x, valid, leads = self._lead_level_input(
                    to_lead_slots(self._lead_latents(tokens), lead_mask), lead_mask
                )
            else:
                positions = torch.arange(self.n_patches, device=signals.device).expand(len(tokens), -1)
                x, valid, leads = self._token_level_input(tokens[:, 1:], positions, lead_mask)
            la_out, la_hidden = self._latent_attention(x, valid, leads, return_hidden)
            pooled = la_out[:, 0] if c.readout == "la_cls" else masked_mean(la_out[:, 1:], valid, dim=1)
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
