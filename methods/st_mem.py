"""ST-MEM: spatio-temporal masked electrocardiogram modeling.

Source: Na et al., "Guiding masked representation learning to capture spatio-temporal
relationship of electrocardiogram", ICLR 2024 [paper]; checked against bakqui/ST-MEM
``models/st_mem.py``, ``models/encoder/st_mem_vit.py`` and ``configs/pretrain/st_mem.yaml``
[code]. Everything below is [code] unless marked:

* patches of p samples per lead (paper: 75 of a 2250-sample, 250 Hz crop; here the preset's
  ``patch_s``), embedded by one LayerNorm(p) -> Linear(p -> D) -> LayerNorm(D) shared by all
  leads; fixed 1-D sin-cos positions 0..N-1 on the patches;
* every lead framed by two SEP tokens (one learnable vector, positions 0 and N+1 whose sin-cos
  embedding is zero in the code), never masked;
* 12 learnable lead embeddings (N(0, 0.02)) added to every token of their lead, SEP included;
* masking independent per lead: each lead keeps int(N·(1 - 0.75)) patches at its own positions
  (the same number for every lead); the noise is keyed by sample and lead (benchmark/rng.py),
  the same per-lead key streams as ``lamae`` and ``ind_*``;
* one ViT (pre-LN timm blocks, qkv bias, GELU, final LayerNorm) over the concatenation of all
  leads' tokens; Xavier-uniform init;
* decoder: Linear(D -> decoder width), a mask token, sin-cos positions; **lead-wise**: each
  lead's N + 2 tokens go separately through the same blocks, LayerNorm, Linear(-> p); no lead
  embedding in the decoder; SEP outputs dropped (here the two SEP tokens are the decoder's
  position-free prefix, which is the same computation as the code's zero SEP positions);
* loss: MSE per patch with norm_pix_loss (``norm_pix``, on; unbiased patch variance),
  averaged over masked patches;
* LayerNorm eps 1e-5 in every block and the encoder's final norm, 1e-6 in the decoder's final
  norm (``ENCODER_EPS``, ``DECODER_EPS``). With these, weights converted from an official
  checkpoint (``from_official_state_dict``) give the official code's loss (tests/test_st_mem_reference.py);
* downstream: mean over all lead x patch tokens of the last block (SEP removed) -> the
  encoder's final LayerNorm -> head. No CLS token.

[choice] items: the preset's optimiser, model size and input window are used for every method
(ST-MEM: AdamW (0.9, 0.95), wd 0.01, blr 1.5e-4, 250 Hz, 0.67-40 Hz band-pass and per-record
standardisation belong to the data pipeline and optimiser, not to this plugin);
``hidden_states`` are the block outputs without SEP tokens, missing leads zeroed.

Lead masks: the lead embeddings fix 12 lead slots, so every lead keeps its slot and a missing
lead's tokens (SEP included) are excluded as attention keys (``attn_mask``), left out of the
readout mean and of the loss, and never decoded; its signal therefore cannot reach any present
token. Any subset of leads works at evaluation time (the paper's code instead drops trailing
leads and reuses the first lead embeddings).

Subclasses (methods/ecg_soup.py) change only ``_readout`` or ``_decoder_input``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
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
    NormedPatchEmbed,
    Transformer,
    attention_mask,
    gather_tokens,
    masked_mean,
    patchify,
    random_keep_ids,
    reconstruction_loss,
    scatter_visible,
    sincos_positions,
    xavier_init,
)

#: LayerNorm eps of the official code [code]: torch's default 1e-5 in every block (``PreNorm``) and
#: in the encoder's final norm, 1e-6 in the decoder's final norm (the ``norm_layer`` of
#: ``st_mem_vit_base_dec256d4b``); shared by its MTAE and MLAE (methods/mtae.py)
ENCODER_EPS = {"block_eps": 1e-5, "norm_eps": 1e-5}
DECODER_EPS = {"block_eps": 1e-5, "norm_eps": 1e-6}


@dataclass
class STMEMConfig(MethodConfig):
    mask_ratio: float = 0.75
    norm_pix: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")


@METHODS.register("st_mem")
class STMEM(Method):
    summary = "ST-MEM: SEP-framed lead tokens, lead embeddings, joint ViT over all leads, lead-wise decoder"
    Config = STMEMConfig
    native_input = InputSpec(fs=250, window_s=9.0)
    pretraining_only = ("decoder.",)

    def __init__(self, config: STMEMConfig, input_spec: InputSpec):
        super().__init__(config, input_spec)
        c = config
        self.patch_embed = NormedPatchEmbed(self.patch_len, c.dim)
        self.register_buffer("pos_embed", sincos_positions(self.n_patches, c.dim), persistent=False)
        self.sep_token = nn.Parameter(torch.zeros(c.dim))
        self.lead_embed = nn.Parameter(torch.zeros(len(LEADS), c.dim))
        self.encoder = Transformer(c.dim, c.depth, c.heads, c.mlp_ratio, c.drop_path, **ENCODER_EPS)
        self.decoder = MAEDecoder(
            self.decoder_input_dim,
            self.patch_len,
            self.n_patches,
            c.decoder_dim,
            c.decoder_depth,
            c.decoder_heads,
            c.mlp_ratio,
            **DECODER_EPS,
        )
        self.apply(xavier_init)
        nn.init.normal_(self.sep_token, std=0.02)
        nn.init.normal_(self.lead_embed, std=0.02)
        nn.init.normal_(self.decoder.mask_token, std=0.02)

    @property
    def decoder_input_dim(self) -> int:
        return self.config.dim

    @property
    def n_keep(self) -> int:
        return max(1, int(self.n_patches * (1 - self.config.mask_ratio)))

    # -- pieces ------------------------------------------------------------------------------
    def _tokens(self, patches: torch.Tensor, keep_ids: torch.Tensor | None) -> torch.Tensor:
        """patches (B, L, N, p) -> (B, L, K + 2, D): each lead's kept patches between its SEPs."""
        x = self.patch_embed(patches) + self.pos_embed
        if keep_ids is not None:
            b, n_leads = keep_ids.shape[:2]
            x = gather_tokens(x.flatten(0, 1), keep_ids.flatten(0, 1)).unflatten(0, (b, n_leads))
        sep = self.sep_token.to(x.dtype).expand(*x.shape[:2], 1, -1)
        return torch.cat([sep, x, sep], dim=2) + self.lead_embed[:, None, :]

    def _encoder(self, tokens: torch.Tensor, present: torch.Tensor):
        """One ViT over all leads' tokens; missing leads are masked out as attention keys.

        Returns the normalised output and every block's output, both as (B, L, S, D)."""
        b, n_leads, s = tokens.shape[:3]
        keys = present[:, :, None].expand(-1, -1, s).flatten(1)
        out, hidden = self.encoder(tokens.flatten(1, 2), attn_mask=attention_mask(keys), return_hidden=True)
        return out.unflatten(1, (n_leads, s)), [h.unflatten(1, (n_leads, s)) for h in hidden]

    def _decoder_input(self, out: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        """What the decoder's input projection sees: the normalised last layer (ST-MEM)."""
        return out

    def _pool(self, layer: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Mean over the present leads' patch tokens (SEP removed): (B, L, S, D) -> (B, D)."""
        patches = layer[:, :, 1:-1]
        weight = present[:, :, None].expand(-1, -1, patches.shape[2])
        return masked_mean(patches.flatten(1, 2), weight.flatten(1), dim=1)

    def _readout(self, hidden: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        return self.encoder.norm(self._pool(hidden[-1], present))

    # -- contract ----------------------------------------------------------------------------
    def pretrain_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        patches = patchify(batch.signals, self.patch_len)  # (B, L, N, p)
        present = batch.lead_mask
        keep_ids = random_keep_ids(rng.split(batch.keys, len(LEADS)), self.n_patches, self.n_keep)  # (B, L, K)
        out, hidden = self._encoder(self._tokens(patches, keep_ids), present)
        decoder_input = self._decoder_input(out, hidden)[present]  # lead-wise: (P, K + 2, D_in)
        dense, is_visible = scatter_visible(decoder_input[:, 1:-1], keep_ids[present], self.n_patches)
        pred = self.decoder(dense, is_visible, prefix=decoder_input[:, [0, -1]])
        return reconstruction_loss(pred, patches[present], ~is_visible, self.config.norm_pix)

    def _block_outputs(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output (B, L, N + 2, D) for the unmasked input."""
        return self._encoder(self._tokens(patchify(signals, self.patch_len), None), lead_mask)[1]

    def encode(self, signals: torch.Tensor, lead_mask: torch.Tensor, return_hidden: bool = False) -> Encoded:
        hidden = self._block_outputs(signals, lead_mask)
        pooled = self._readout(hidden, lead_mask)
        if not return_hidden:
            return Encoded(pooled)
        keep = lead_mask[:, :, None, None]
        return Encoded(pooled, [(h[:, :, 1:-1] * keep).flatten(1, 2) for h in hidden])

    def layer_id(self, name: str) -> int:
        depth = self.config.depth
        if (i := self.block_index(name, "encoder")) is not None:
            return i + 1
        if name.startswith(("patch_embed", "sep_token", "lead_embed")):
            return 0
        return depth + 1  # final norm, readout modules, decoder (pretraining only)


#: official block sub-module -> ours (timm ``Block``): PreNorm(attention), PreNorm(feed-forward)
_OFFICIAL_BLOCK = {
    "attn.norm.": "norm1.",
    "attn.fn.to_qkv.": "attn.qkv.",
    "attn.fn.to_out.0.": "attn.proj.",
    "ff.norm.": "norm2.",
    "ff.fn.net.0.": "mlp.fc1.",
    "ff.fn.net.3.": "mlp.fc2.",
}
#: official module prefix -> ours, for everything outside the blocks
_OFFICIAL_MODULES = {
    "to_patch_embedding.1.": "patch_embed.0.",  # index 0 is the Rearrange
    "to_patch_embedding.2.": "patch_embed.1.",
    "to_patch_embedding.3.": "patch_embed.2.",
    "sep_embedding": "sep_token",
    "norm.": "encoder.norm.",
    "to_decoder_embedding.": "decoder.embed.",
    "mask_embedding": "decoder.mask_token",
    "decoder_norm.": "decoder.transformer.norm.",
    "decoder_head.": "decoder.predict.",
}


def _check_positions(name: str, positions: torch.Tensor) -> None:
    """The official code's frozen positions (1, N + 2, D): sin-cos on the patches, zeros for the
    two SEP slots — what ours compute, so they are checked rather than loaded."""
    n, dim = positions.shape[1] - 2, positions.shape[2]
    expected = torch.zeros_like(positions[0])
    expected[1:-1] = sincos_positions(n, dim)
    if not torch.allclose(positions[0].float(), expected, atol=1e-4):
        raise ValueError(f"{name} is not ST-MEM's fixed sin-cos embedding; this checkpoint cannot be converted")


def from_official_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights of an official ST-MEM checkpoint (bakqui/ST-MEM) in this plugin's layout.

    Takes the full model's state dict (``ST_MEM``: encoder + decoder; as saved by their
    ``main_pretrain.py``, also inside its ``{"model": ...}`` wrapper) or the encoder's alone
    (``ST_MEM_ViT``, their released "Encoder" file; a classification ``head`` is dropped). The
    result loads into an ``st_mem`` built with the same sizes (their ViT-B/75: the ``paper``
    preset with ``--set model.patch_s=0.3``; their attention heads are 64 wide, so ``dim`` must be
    64 x ``heads``); an encoder-only checkpoint leaves the decoder out
    (``load_state_dict(..., strict=False)``)::

        state = torch.load("st_mem_vit_base.pth", map_location="cpu", weights_only=True)
        method.load_state_dict(from_official_state_dict(state), strict=False)

    Their fixed positional embeddings are checked against ours, not copied.
    """
    if isinstance(state.get("model"), dict):
        state = state["model"]
    if any(k.startswith("encoder.") for k in state):  # the full model
        for alias in [k for k in state if k.startswith("to_patch_embedding.")]:  # the encoder's embedding,
            if not torch.equal(state[alias], state[f"encoder.{alias}"]):  # registered twice
                raise ValueError(f"{alias} differs from encoder.{alias}: not an official ST-MEM checkpoint")
        state = {k.removeprefix("encoder."): v for k, v in state.items() if not k.startswith("to_patch_embedding.")}
    converted: dict[str, torch.Tensor] = {}
    lead_embeddings: dict[int, torch.Tensor] = {}
    for name, value in state.items():
        if name in ("pos_embedding", "decoder_pos_embed"):
            _check_positions(name, value)
        elif name.startswith("head."):
            continue
        elif name.startswith("lead_embeddings."):
            lead_embeddings[int(name.split(".")[1])] = value
        elif block := re.match(r"(block|decoder_blocks\.)(\d+)\.(.+)", name):
            kind, index, rest = block.groups()
            prefix = "encoder" if kind == "block" else "decoder.transformer"
            sub = next((k for k in _OFFICIAL_BLOCK if rest.startswith(k)), None)
            if sub is None:
                raise ValueError(f"unexpected parameter {name!r} in an official ST-MEM checkpoint")
            converted[f"{prefix}.blocks.{index}.{_OFFICIAL_BLOCK[sub]}{rest.removeprefix(sub)}"] = value
        else:
            module = next((k for k in _OFFICIAL_MODULES if name.startswith(k)), None)
            if module is None:
                raise ValueError(f"unexpected parameter {name!r} in an official ST-MEM checkpoint")
            converted[_OFFICIAL_MODULES[module] + name.removeprefix(module)] = value
    if sorted(lead_embeddings) != list(range(len(LEADS))):
        raise ValueError(
            f"an official ST-MEM checkpoint has {len(LEADS)} lead embeddings, found {len(lead_embeddings)}"
        )
    converted["lead_embed"] = torch.stack([lead_embeddings[i] for i in range(len(LEADS))])
    return converted
