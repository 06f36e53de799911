"""``st_mem`` computes the official ST-MEM loss: weights laid out like an official checkpoint,
converted by ``from_official_state_dict``, reproduce the losses the official code
(bakqui/ST-MEM) computed on the same input, weights and masks (tests/st_mem_official.py)."""

from __future__ import annotations

import json

import pytest
import torch
from st_mem_official import (
    FS,
    PATCH_S,
    REFERENCE,
    SIZES,
    WINDOW_S,
    batch_keys,
    official_input,
    official_weights,
)
from test_methods import build

from benchmark import rng
from benchmark.data.contract import LEADS, InputSpec
from benchmark.data.loader import Batch
from benchmark.nn.layers import normalize_patches, random_keep_ids
from benchmark.registry import METHODS
from ecgbench_methods.st_mem import from_official_state_dict

OFFICIAL = json.loads(REFERENCE.read_text())


def st_mem(norm_pix: bool = True):
    cls = METHODS.get("st_mem")
    method = cls(cls.Config(**SIZES, mlp_ratio=4.0, patch_s=PATCH_S, norm_pix=norm_pix), InputSpec(FS, WINDOW_S))
    method.load_state_dict(from_official_state_dict(official_weights(OFFICIAL["official_shapes"])))
    return method


def official_batch() -> Batch:
    signals = official_input()
    n = len(signals)
    return Batch(signals, torch.ones(n, len(LEADS), dtype=torch.bool), torch.zeros(n, 1), torch.arange(n), batch_keys())


def test_the_official_masks_are_the_ones_st_mem_draws_from_the_batch_keys():
    method = st_mem()
    keep_ids = random_keep_ids(rng.split(batch_keys(), len(LEADS)), method.n_patches, method.n_keep)
    assert keep_ids.tolist() == OFFICIAL["keep_ids"]


@pytest.mark.parametrize("target", ["norm_pix", "raw"])
def test_official_weights_give_the_official_loss(target):
    method = st_mem(norm_pix=target == "norm_pix").eval()
    with torch.no_grad():
        loss = method.pretrain_loss(official_batch())["loss"].item()
    assert loss == pytest.approx(OFFICIAL["loss"][target], rel=2e-6)


def test_an_encoder_only_checkpoint_converts_without_the_decoder():
    full = official_weights(OFFICIAL["official_shapes"])
    encoder_only = {k.removeprefix("encoder."): v for k, v in full.items() if k.startswith("encoder.")}
    encoder_only["head.weight"] = torch.zeros(5, SIZES["dim"])  # a fine-tuned classifier: dropped
    converted = from_official_state_dict({"model": encoder_only})
    full_converted = from_official_state_dict(full)
    assert converted.keys() == {k for k in full_converted if not k.startswith("decoder.")}
    assert all(torch.equal(converted[k], full_converted[k]) for k in converted)


def test_a_checkpoint_with_learned_positions_is_refused():
    weights = official_weights(OFFICIAL["official_shapes"])
    weights["encoder.pos_embedding"] = weights["encoder.pos_embedding"] + 0.1
    with pytest.raises(ValueError, match="pos_embedding is not ST-MEM's fixed sin-cos"):
        from_official_state_dict(weights)


def test_norm_pix_target_uses_the_unbiased_patch_variance():
    patch = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    expected = (patch - 3.0) / (torch.tensor(14.0 / 3) + 1e-6).sqrt()  # sum of squares 14 over n - 1 = 3
    assert torch.allclose(normalize_patches(patch), expected)


@pytest.mark.parametrize("name", ["st_mem", "ipa_st_mem", "mtae", "mlae"])
def test_layer_norms_use_the_eps_of_the_official_code(name):
    """torch's 1e-5 in every block (their PreNorm) and the encoder's final norm, 1e-6 in the
    decoder's final norm (``norm_layer`` of st_mem/mtae/mlae_vit_base_dec256d4b). With activations
    of unit scale the eps moves the loss by ~1e-7 only, below what the reference losses resolve."""
    method = build(name)
    blocks = [*method.encoder.blocks, *method.decoder.transformer.blocks]
    assert {norm.eps for block in blocks for norm in (block.norm1, block.norm2)} == {1e-5}
    assert (method.encoder.norm.eps, method.decoder.transformer.norm.eps) == (1e-5, 1e-6)
