"""MTAE: masked time autoencoder, ST-MEM's time-masking baseline.

Source: Na et al., ICLR 2024 (ST-MEM), baselines section [paper]; checked against bakqui/ST-MEM
``models/mtae.py``, ``models/encoder/vit.py`` and ``configs/pretrain/mtae.yaml`` [code]:

* a token is a time patch of p samples across all 12 leads (12·p values), embedded by
  LayerNorm(12p) -> Linear(12p -> D) -> LayerNorm(D); sin-cos positions over the N time
  patches; a CLS token (position embedding zero);
* random masking of 75 % of the time patches (int(N·0.25) kept): whole time spans are hidden
  from every lead at once;
* one ViT (pre-LN, final LayerNorm) over CLS + visible patches; decoder Linear(D -> decoder
  width), mask tokens, sin-cos positions, blocks, LayerNorm, Linear(-> 12p); the CLS output is
  the decoder's position-free first token (as the code's zero CLS position);
* loss: norm_pix MSE over the masked patches (unbiased patch variance);
* LayerNorm eps as ST-MEM's code (``ENCODER_EPS``, ``DECODER_EPS`` in methods/st_mem.py);
* downstream: the CLS token after the final LayerNorm.

[choice] items: the preset's optimiser, model size and window for every method; Xavier init as
ST-MEM. Lead masks: a token mixes all leads, so no lead can be left out of attention; missing
leads are zero-filled in the input (as the data loader delivers them) and their samples are
left out of the loss, so a missing lead's signal never reaches the model. The norm_pix target
is normalised over the whole token, zero-filled leads included.

``mlae`` (methods/mlae.py) is the same model with leads instead of time patches as tokens;
it overrides the token hooks (``_tokenize``, ``_token_present``, ``_pieces``, ``_piece_present``).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ecgbench import LEADS, METHODS, Batch, Encoded, InputSpec, Method, rng
from ecgbench.layers import (
    MAEDecoder,
    NormedPatchEmbed,
    Transformer,
    attention_mask,
    gather_tokens,
    normalize_patches,
    reconstruction_loss,
    scatter_visible,
    sincos_positions,
    xavier_init,
)
from ecgbench_methods.st_mem import (  # the same recipe: mask ratio 0.75, norm_pix, LayerNorm eps
    DECODER_EPS,
    ENCODER_EPS,
    STMEMConfig,
)

TOKEN_MASK_SALT = 0x4D54  # the key stream of the token mask


@METHODS.register("mtae")
class MTAE(Method):
    summary = "MTAE (ST-MEM baseline): multi-lead time-patch tokens, whole time spans masked, CLS readout"
    Config = STMEMConfig
    native_input = InputSpec(fs=250, window_s=9.0)
    pretraining_only = ("decoder.",)

    def __init__(self, config: STMEMConfig, input_spec: InputSpec):
        super().__init__(config, input_spec)
        c = config
        self.patch_embed = NormedPatchEmbed(self.token_size, c.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.register_buffer("pos_embed", sincos_positions(self.n_tokens, c.dim), persistent=False)
        self.encoder = Transformer(c.dim, c.depth, c.heads, c.mlp_ratio, c.drop_path, **ENCODER_EPS)
        self.decoder = MAEDecoder(
            c.dim,
            self.token_size,
            self.n_tokens,
            c.decoder_dim,
            c.decoder_depth,
            c.decoder_heads,
            c.mlp_ratio,
            **DECODER_EPS,
        )
        self.apply(xavier_init)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.decoder.mask_token, std=0.02)

    # -- the token hooks: time patches across all leads ----------------------------------------
    @property
    def n_tokens(self) -> int:
        return self.n_patches

    @property
    def token_size(self) -> int:
        return len(LEADS) * self.patch_len

    def _tokenize(self, signals: torch.Tensor) -> torch.Tensor:
        """(B, L, T) -> (B, n_tokens, token_size), contiguous (reductions over a token's samples
        run several times faster than on the strided view)."""
        return rearrange(signals, "b l (n p) -> b n (l p)", p=self.patch_len).contiguous()

    def _token_present(self, lead_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, n_tokens): tokens that carry a present lead."""
        return lead_mask.any(dim=1, keepdim=True).expand(-1, self.n_tokens)

    def _pieces(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, n_tokens, token_size) -> (B, n_tokens, pieces, samples): the tokens split into the
        parts of single leads (a view)."""
        return tokens.unflatten(-1, (len(LEADS), self.patch_len))

    def _piece_present(self, lead_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, n_tokens, pieces): whether each piece belongs to a present lead."""
        return lead_mask[:, None, :].expand(-1, self.n_tokens, -1)

    # -- pieces --------------------------------------------------------------------------------
    @property
    def n_keep(self) -> int:
        return max(1, int(self.n_tokens * (1 - self.config.mask_ratio)))

    def _keep_ids(self, token_present: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Random visible tokens (B, K), chosen among the present ones first; the noise comes
        from each sample's key (benchmark/rng.py)."""
        noise = rng.uniform(rng.fold_in(keys, TOKEN_MASK_SALT), self.n_tokens) + (~token_present).float()
        return noise.argsort(dim=1)[:, : self.n_keep].sort(dim=1).values

    def _encode_tokens(
        self, signals: torch.Tensor, lead_mask: torch.Tensor, keep_ids: torch.Tensor | None, return_hidden: bool = False
    ):
        """CLS + (visible) tokens through the encoder; absent tokens masked as attention keys."""
        signals = signals * lead_mask[:, :, None]
        x = self.patch_embed(self._tokenize(signals)) + self.pos_embed
        present = self._token_present(lead_mask)
        if keep_ids is not None:
            x, present = gather_tokens(x, keep_ids), torch.gather(present, 1, keep_ids)
        x = torch.cat([self.cls_token.to(x.dtype).expand(len(x), -1, -1), x], dim=1)
        keys = torch.cat([present.new_ones(len(x), 1), present], dim=1)
        return self.encoder(x, attn_mask=attention_mask(keys), return_hidden=return_hidden)

    # -- contract ------------------------------------------------------------------------------
    def pretrain_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        signals, lead_mask = batch.signals * batch.lead_mask[:, :, None], batch.lead_mask
        keep_ids = self._keep_ids(self._token_present(lead_mask), batch.keys)
        latent, _ = self._encode_tokens(signals, lead_mask, keep_ids)
        dense, is_visible = scatter_visible(latent[:, 1:], keep_ids, self.n_tokens)
        pred = self.decoder(dense, is_visible, prefix=latent[:, :1])
        target = self._tokenize(signals)
        if self.config.norm_pix:
            target = normalize_patches(target)
        # which single-lead pieces of the tokens were hidden, restricted to the present leads
        hidden = (~is_visible)[:, :, None] & self._piece_present(lead_mask)
        # a piece's row is its lead across the tokens: the visible-mean predictor of a lead
        return reconstruction_loss(self._pieces(pred), self._pieces(target), hidden, norm_pix=False, patch_dim=1)

    def encode(self, signals: torch.Tensor, lead_mask: torch.Tensor, return_hidden: bool = False) -> Encoded:
        out, hidden = self._encode_tokens(signals, lead_mask, None, return_hidden)
        if not return_hidden:
            return Encoded(out[:, 0])
        keep = torch.cat([lead_mask.new_ones(len(out), 1), self._token_present(lead_mask)], dim=1)[:, :, None]
        return Encoded(out[:, 0], [h * keep for h in hidden])

    def layer_id(self, name: str) -> int:
        if (i := self.block_index(name, "encoder")) is not None:
            return i + 1
        if name.startswith(("patch_embed", "cls_token")):
            return 0
        return self.config.depth + 1  # final norm, decoder (pretraining only)
