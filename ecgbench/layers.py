"""Neural building blocks shared by the methods (public re-export of :mod:`benchmark.nn.layers`,
:mod:`benchmark.nn.alignment` and the frozen-readout fitting of :mod:`benchmark.eval.frozen_head`)."""

from benchmark.eval.frozen_head import FrozenHeadConfig, fit_frozen_head
from benchmark.nn.alignment import METRICS, SCHEDULES, alignment_loss, annealed_weight
from benchmark.nn.layers import (
    MAEDecoder,
    NormedPatchEmbed,
    PatchEncoder,
    Transformer,
    attention_mask,
    gather_tokens,
    init_weights,
    masked_mean,
    masked_patch_mse,
    normalize_patches,
    patchify,
    random_keep_ids,
    scatter_visible,
    sincos_positions,
    to_lead_slots,
    xavier_init,
)

__all__ = [
    "FrozenHeadConfig",
    "fit_frozen_head",
    "METRICS",
    "SCHEDULES",
    "alignment_loss",
    "annealed_weight",
    "MAEDecoder",
    "NormedPatchEmbed",
    "PatchEncoder",
    "Transformer",
    "attention_mask",
    "gather_tokens",
    "init_weights",
    "masked_mean",
    "masked_patch_mse",
    "normalize_patches",
    "patchify",
    "random_keep_ids",
    "scatter_visible",
    "sincos_positions",
    "to_lead_slots",
    "xavier_init",
]
