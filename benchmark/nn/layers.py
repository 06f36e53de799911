"""Neural building blocks shared by the method plugins (one copy, not one per method).

Transformer blocks are timm's (pre-LN ViT ``Block``, fused scaled-dot-product attention);
masking, sin-cos positions, the MAE decoder and the masked reconstruction loss follow
He et al. 2022 and facebookresearch/mae (``models_mae.py``, ``util/pos_embed.py``); the
normalised patch embedding follows ST-MEM and the Xavier init MAE and ST-MEM (bakqui/ST-MEM,
``models/encoder/st_mem_vit.py``, ``models/st_mem.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from functools import partial
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import LayerNorm, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn
from torch.func import functional_call, vmap

from benchmark.rng import uniform


def sincos_positions(n_positions: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sin-cos embedding (n_positions, dim), as MAE's get_1d_sincos_pos_embed."""
    if dim % 2:
        raise ValueError(f"sin-cos positions need an even width, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.arange(n_positions, dtype=np.float64)[:, None] * omega[None, :]
    return torch.from_numpy(np.concatenate([np.sin(angles), np.cos(angles)], axis=1)).float()


def patchify(signals: torch.Tensor, patch_len: int) -> torch.Tensor:
    """(B, L, T) -> (B, L, N, patch_len) non-overlapping patches along time."""
    return rearrange(signals, "b l (n p) -> b l n p", p=patch_len)


def random_keep_ids(keys: torch.Tensor, n: int, n_keep: int) -> torch.Tensor:
    """Sorted indices of ``n_keep`` of ``n`` positions kept visible, independently per row.

    MAE's per-sample random masking (argsort of uniform noise), the noise drawn from each
    row's key (:mod:`benchmark.rng`); sorted so that visible tokens stay in temporal order.
    """
    noise = uniform(keys, n)
    return noise.argsort(dim=-1)[..., :n_keep].sort(dim=-1).values


def gather_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """tokens (S, N, D), ids (S, K) -> (S, K, D)."""
    return torch.gather(tokens, 1, ids.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def scatter_visible(visible: torch.Tensor, keep_ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Place visible tokens (..., K, D) at their positions in a dense (..., n, D) tensor.

    Returns the dense tokens (zeros at masked positions) and the visibility mask (..., n).
    """
    dense = visible.new_zeros(*visible.shape[:-2], n, visible.shape[-1])
    dense = dense.scatter(-2, keep_ids.unsqueeze(-1).expand(*keep_ids.shape, visible.shape[-1]), visible)
    is_visible = torch.zeros(*keep_ids.shape[:-1], n, dtype=torch.bool, device=visible.device)
    is_visible.scatter_(-1, keep_ids, True)
    return dense, is_visible


def call_stacked(modules: Sequence[nn.Module], *inputs):
    """``torch.stack([modules[i](*(x[i] for x in inputs)) for i])`` in one vectorised call.

    For modules of one architecture with weights of their own (``ind_p``'s twelve private
    encoders): their parameters are stacked for the call (differentiably, so every module's own
    parameters receive their gradients and the state dict keeps one entry per module) and
    ``torch.func.vmap`` runs ``functional_call`` over the stack (the PyTorch ensembling recipe,
    ``torch.func.stack_module_state``), which turns each layer's per-module matmuls into one
    batched matmul. Tensor inputs carry one slice per module along dim 0; other inputs (None,
    flags) go to every module unchanged; outputs gain a leading module dim. Random draws
    (stochastic depth) are independent per module, as in separate calls.
    """
    names = [name for name, _ in modules[0].named_parameters()]
    params = [dict(module.named_parameters()) for module in modules]
    stacked = {name: torch.stack([p[name] for p in params]) for name in names}
    in_dims = (0, *(0 if isinstance(x, torch.Tensor) else None for x in inputs))

    def one(weights: dict[str, torch.Tensor], *args):
        return functional_call(modules[0], weights, args)

    with explicit_attention(modules[0]):
        return vmap(one, in_dims=in_dims, randomness="different")(stacked, *inputs)


@contextlib.contextmanager
def explicit_attention(module: nn.Module):
    """Inside the ``with`` block, timm's attention layers in ``module`` compute softmax(QKᵀ/√d)V with explicit
    matmuls (their ``fused_attn = False`` path, the same function) instead of
    ``F.scaled_dot_product_attention``. vmap batches the matmuls on every torch release; SDPA's
    kernels have no batching rule on the CPU (nor its math fallback before torch 2.5), so vmap
    would loop over them. At MAE sequence lengths (tens of tokens) the fused kernel saves little.
    """
    layers = [m for m in module.modules() if hasattr(m, "fused_attn")]
    fused = [m.fused_attn for m in layers]
    for m in layers:
        setattr(m, "fused_attn", False)  # noqa: B010 (an attribute timm declares, not typed on Module)
    try:
        yield
    finally:
        for m, was in zip(layers, fused):
            setattr(m, "fused_attn", was)  # noqa: B010


def to_lead_slots(rows: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
    """Rows (P, ...) of the present (record, lead) pairs, in ``x[lead_mask]`` order -> (B, L, ...)
    with zeros in the slots of missing leads."""
    full = rows.new_zeros(*lead_mask.shape, *rows.shape[1:])
    full[lead_mask] = rows
    return full


def lead_indices(lead_mask: torch.Tensor) -> torch.Tensor:
    """The lead index of every present (record, lead) pair, in ``x[lead_mask]`` order: (P,)."""
    return torch.arange(lead_mask.shape[1], device=lead_mask.device).expand_as(lead_mask)[lead_mask]


def attention_mask(keys: torch.Tensor) -> torch.Tensor | None:
    """Key mask (B, S) bool -> the (B, 1, 1, S) mask timm's attention takes, None when every
    key is valid (so the fused kernel runs unmasked). Every query row must keep a valid key."""
    return None if bool(keys.all()) else keys[:, None, None, :]


def xavier_init(module: nn.Module) -> None:
    """MAE's and ST-MEM's init: Xavier-uniform linears ("following official JAX ViT",
    facebookresearch/mae ``models_mae._init_weights``; bakqui/ST-MEM likewise), zero biases, unit
    LayerNorms. Not timm's truncated normal of std 0.02: at the suite's widths (64) that starts
    every linear ~6x smaller than Xavier, and LAMAE memorising 16 records (1 s windows, smoke widths,
    AdamW 3e-3) needed 800 steps to reach 0.1 of the trivial loss with it against 513 with Xavier
    (docs/pretraining-regime.md)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class NormedPatchEmbed(nn.Sequential):
    """ST-MEM's patch embedding: LayerNorm(in) -> Linear(in -> dim) -> LayerNorm(dim).

    The input LayerNorm makes every token scale-free (a lead patch for ST-MEM, a multi-lead
    time patch for MTAE, a whole lead for MLAE); an all-zero (missing) token maps to the bias.
    """

    def __init__(self, in_dim: int, dim: int):
        super().__init__(nn.LayerNorm(in_dim), nn.Linear(in_dim, dim), nn.LayerNorm(dim))


class Transformer(nn.Module):
    """A stack of timm pre-LN ViT blocks with a final LayerNorm; optionally returns every layer.

    ``block_eps`` is the LayerNorm eps inside the blocks (timm's 1e-6 by default), ``norm_eps``
    the final LayerNorm's (torch's 1e-5 by default); ports of published code set theirs.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        block_eps: float = 1e-6,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        rates = np.linspace(0, drop_path, depth).tolist()  # stochastic depth grows with depth
        # timm's own LayerNorm (its blocks' default) with our eps; timm types the argument as a class
        norm = cast(type[nn.Module], partial(LayerNorm, eps=block_eps))
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio, qkv_bias=True, drop_path=rate, norm_layer=norm) for rate in rates
        )
        self.norm = nn.LayerNorm(dim, eps=norm_eps)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, return_hidden: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden = []
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
            if return_hidden:
                hidden.append(x)
        return self.norm(x), hidden


class PatchEncoder(nn.Module):
    """ViT over the patches of one lead: linear patch embedding, fixed sin-cos time positions,
    a CLS token, transformer. Only the visible patches are encoded (MAE)."""

    pos_embed: torch.Tensor  # a buffer (register_buffer)

    def __init__(
        self,
        patch_len: int,
        n_patches: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.patch_embed = nn.Linear(patch_len, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_positions(n_patches + 1, dim)[None], persistent=False)
        self.transformer = Transformer(dim, depth, heads, mlp_ratio, drop_path)
        self.apply(xavier_init)
        trunc_normal_(self.cls_token, std=0.02)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.blocks

    def forward(
        self,
        patches: torch.Tensor,
        keep_ids: torch.Tensor | None = None,
        extra: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """patches (S, N, p) -> tokens (S, 1 + K, dim) with the CLS token first.

        ``keep_ids`` (S, K) selects the visible patches (all if None); ``extra`` (S, dim) is
        added to every token (e.g. a lead embedding for a shared encoder).
        """
        x = self.patch_embed(patches) + self.pos_embed[:, 1:]
        if keep_ids is not None:
            x = gather_tokens(x, keep_ids)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        if extra is not None:
            x = x + extra[:, None, :]
        return self.transformer(x, return_hidden=return_hidden)


class MAEDecoder(nn.Module):
    """MAE decoder over one lead's patch sequence.

    Input: dense encoder-width tokens (S, N, D) with a visibility mask; masked positions get a
    learned mask token; optional prefix tokens (S, k, D) (e.g. cross-lead context, a CLS token,
    ST-MEM's SEP tokens) are prepended without positions and dropped at the output; ``extra``
    (S, dim) is added to every token (e.g. MVMAE's decoder view embedding). Predicts
    ``patch_len`` samples per patch. ``block_eps`` / ``norm_eps``: the LayerNorm eps of the blocks and
    of the final norm (:class:`Transformer`).
    """

    pos_embed: torch.Tensor  # a buffer (register_buffer)

    def __init__(
        self,
        encoder_dim: int,
        patch_len: int,
        n_patches: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        block_eps: float = 1e-6,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_positions(n_patches, dim)[None], persistent=False)
        self.transformer = Transformer(dim, depth, heads, mlp_ratio, block_eps=block_eps, norm_eps=norm_eps)
        self.predict = nn.Linear(dim, patch_len)
        self.apply(xavier_init)
        trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self,
        tokens: torch.Tensor,
        is_visible: torch.Tensor,
        prefix: torch.Tensor | None = None,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.embed(tokens)
        x = torch.where(is_visible[..., None], x, self.mask_token.to(x.dtype)) + self.pos_embed
        n_prefix = 0
        if prefix is not None:
            n_prefix = prefix.shape[1]
            x = torch.cat([self.embed(prefix), x], dim=1)
        if extra is not None:
            x = x + extra[:, None, :]
        x, _ = self.transformer(x)
        return self.predict(x[:, n_prefix:])


def normalize_patches(target: torch.Tensor) -> torch.Tensor:
    """MAE's norm_pix target: each patch (last dim) standardised by its own mean and variance,
    (t - mean) / sqrt(var + 1e-6).

    The variance is the unbiased one (``torch.var``'s default), as in the official code of MAE
    (facebookresearch/mae ``models_mae.forward_loss``) and ST-MEM (bakqui/ST-MEM
    ``models/st_mem.py``); a patch needs at least two samples. Computed as one fused
    ``layer_norm`` (biased variance v = var·(n-1)/n): (t - mean) / sqrt(var + eps) equals
    sqrt((n-1)/n) · (t - mean) / sqrt(v + eps·(n-1)/n).
    """
    n = target.shape[-1]
    shrink = (n - 1) / n
    return F.layer_norm(target, (n,), eps=1e-6 * shrink) * shrink**0.5


def masked_patch_mse(
    pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor, norm_pix: bool = True
) -> torch.Tensor:
    """Mean squared error over masked patches only (MAE's loss).

    pred/target (..., N, p), masked (..., N) bool. With ``norm_pix`` the target patch is
    normalised by its own mean and variance ((t - mu) / sqrt(var + 1e-6), :func:`normalize_patches`),
    as MAE recommends.
    """
    if norm_pix:
        target = normalize_patches(target)
    per_patch = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=-1)  # one fused kernel
    weight = masked.float()
    return (per_patch * weight).sum() / weight.sum().clamp_min(1.0)


#: prefix of the pretraining-loss entries that hold the loss of a trivial predictor on the same
#: targets (``Method.pretrain_loss``); the training loop reports loss / the lowest of them
TRIVIAL = "trivial/"


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor, norm_pix: bool = True, patch_dim: int = -1
) -> dict[str, torch.Tensor]:
    """MAE's masked loss (:func:`masked_patch_mse`) and, on the very same targets and masked
    patches, the loss of the trivial predictors a run must beat to have learned anything:

    * ``trivial/zero``: predict 0 everywhere (for ``norm_pix`` targets, whose every patch has mean
      0, this is the best constant);
    * ``trivial/visible_mean``: predict, for every masked sample, the mean of the visible samples
      of its own row along ``patch_dim`` of ``masked`` (a lead of a record for per-lead patches;
      0 where a row has no visible sample, e.g. a lead hidden whole).

    A pretraining run whose loss ends near the lower of them has learned nothing a constant does
    not know (issue 20: the committed runs ended at exactly the zero predictor's loss). The
    trivial losses carry no gradient.
    """
    if norm_pix:
        target = normalize_patches(target)
    loss = masked_patch_mse(pred, target, masked, norm_pix=False)
    with torch.no_grad():
        t = target.detach().float()
        weight = masked.float()
        total = weight.sum().clamp_min(1.0)
        visible = 1.0 - weight
        row_sum = (t.sum(-1) * visible).sum(patch_dim, keepdim=True)
        row_count = (visible * t.shape[-1]).sum(patch_dim, keepdim=True)
        row_mean = (row_sum / row_count.clamp_min(1.0)).unsqueeze(-1)
        zero = (t.square().mean(-1) * weight).sum() / total
        visible_mean = ((t - row_mean).square().mean(-1) * weight).sum() / total
    return {"loss": loss, f"{TRIVIAL}zero": zero, f"{TRIVIAL}visible_mean": visible_mean}


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``tokens`` over ``dim`` where ``mask`` (broadcastable, bool) is True."""
    weight = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weight).sum(dim) / weight.sum(dim).clamp_min(1.0)
