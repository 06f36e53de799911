"""Behaviour that defines LAMAE and the independent-lead MAEs, and the shared MAE pieces."""

from __future__ import annotations

import pytest
import torch

from benchmark.build import method_config
from benchmark.data.contract import LEADS, InputSpec
from benchmark.data.loader import Batch
from benchmark.nn.layers import masked_patch_mse, patchify, random_keep_ids
from benchmark.presets import PRESETS
from benchmark.registry import METHODS

SPEC = InputSpec(fs=100, window_s=2.0)


def build(name: str, **overrides):
    cls = METHODS.get(name)
    preset = PRESETS["smoke"]
    config = method_config(cls, preset, {name: {k: str(v) for k, v in overrides.items()}})
    torch.manual_seed(0)
    return cls(config, SPEC)


def batch(b: int = 4, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        torch.randn(b, len(LEADS), SPEC.window, generator=g),
        torch.ones(b, len(LEADS), dtype=torch.bool),
        torch.zeros(b, 2),
        torch.arange(b),
        torch.arange(b) + 1000 * seed,
    )


@pytest.mark.parametrize("name", ["lamae", "ind_p", "ind_s"])
def test_pretrain_loss_is_finite_and_reaches_every_parameter(name):
    method = build(name)
    loss = method.pretrain_loss(batch(8))["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in method.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("name", ["lamae", "ind_p", "ind_s", "random_init"])
def test_masked_leads_are_ignored_and_any_lead_subset_works(name):
    method = build(name).eval()
    data = batch()
    mask = data.lead_mask.clone()
    mask[:, 2:] = False  # only leads I and II
    with torch.no_grad():
        reference = method.features(data.signals, mask)
        changed = data.signals.clone()
        changed[:, 2:] = 100 * torch.randn_like(changed[:, 2:])
        assert torch.allclose(method.features(changed, mask), reference, atol=1e-5)
        single = method.features(data.signals, torch.zeros_like(mask).index_fill_(1, torch.tensor([0]), True))
    assert reference.shape == single.shape == (4, method.feature_dim)
    assert torch.isfinite(single).all()


@pytest.mark.parametrize("name", ["lamae", "ind_p"])
def test_features_are_deterministic_in_eval_mode(name):
    method = build(name).eval()
    data = batch()
    with torch.no_grad():
        assert torch.equal(method.features(data.signals, data.lead_mask), method.features(data.signals, data.lead_mask))


def test_lamae_latent_attention_is_invariant_to_permuting_leads_with_their_embeddings():
    method = build("lamae").eval()
    data = batch()
    permutation = torch.randperm(len(LEADS), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = method.features(data.signals, data.lead_mask)
        method.lead_embed.copy_(method.lead_embed[permutation])
        after = method.features(data.signals[:, permutation], data.lead_mask[:, permutation])
    assert torch.allclose(before, after, atol=1e-5)


def test_lamae_hides_the_configured_fraction_of_present_leads_from_latent_attention():
    method = build("lamae", la_mask_ratio=0.5)
    present = torch.ones(1000, len(LEADS), dtype=torch.bool)
    present[:500, 5:] = False  # 5 leads present in half of the records
    hidden = method._la_lead_mask(present, torch.rand(present.shape))
    assert not (hidden & ~present).any()
    assert torch.equal(hidden[500:].sum(1), torch.full((500,), 6))
    assert torch.equal(hidden[:500].sum(1), torch.full((500,), 2))  # floor(0.5 * 5)
    one_lead = torch.zeros(10, len(LEADS), dtype=torch.bool)
    one_lead[:, 0] = True
    assert not method._la_lead_mask(one_lead, torch.rand(one_lead.shape)).any()  # the only lead stays visible


def test_masking_keeps_the_configured_ratio_per_row():
    keep = random_keep_ids(torch.arange(500), 20, 5)
    assert keep.shape == (500, 5)
    assert (keep.diff(dim=1) > 0).all()  # sorted and distinct
    counts = torch.bincount(keep.flatten(), minlength=20).float()
    assert counts.min() > 0.6 * counts.mean()  # every position gets masked and kept


def test_mae_loss_ignores_visible_patches():
    target = patchify(torch.randn(2, 12, 100), 25)
    masked = torch.zeros(2, 12, 4, dtype=torch.bool)
    masked[..., :2] = True
    pred = target.clone()
    pred[..., 2:, :] += 50.0  # wrong only on visible patches
    assert masked_patch_mse(pred, target, masked, norm_pix=False) == 0
    pred[..., :2, :] += 1.0
    assert masked_patch_mse(pred, target, masked, norm_pix=False) == pytest.approx(1.0)


def test_lamae_e_reading_pools_the_encoder_latents():
    method = build("lamae", readout="encoder_mean").eval()
    data = batch()
    with torch.no_grad():
        method.la.blocks[0].mlp.fc1.weight.mul_(10)  # LA weights must not matter for this readout
        a = method.features(data.signals, data.lead_mask)
        method.la.blocks[0].mlp.fc1.weight.mul_(-3)
        b = method.features(data.signals, data.lead_mask)
    assert torch.allclose(a, b)


def test_layer_ids_run_from_embeddings_to_the_output():
    method = build("lamae")
    ids = {n: method.layer_id(n) for n, _ in method.named_parameters() if not method.is_pretraining_only(n)}
    assert ids["encoder.patch_embed.weight"] == 0
    assert ids["encoder.transformer.blocks.0.attn.qkv.weight"] == 1
    assert ids["la.blocks.0.attn.qkv.weight"] > ids["encoder.transformer.blocks.1.attn.qkv.weight"]
    assert max(ids.values()) == method.num_layers - 1
    assert sorted(set(ids.values())) == list(range(method.num_layers))


def test_private_encoders_have_twelve_weight_sets_and_shared_one():
    private, shared = build("ind_p"), build("ind_s")
    assert len(private.encoders) == len(LEADS) and len(shared.encoders) == 1
    assert private.encoder_parameters() > 10 * shared.encoder_parameters() / 1.2


@pytest.mark.parametrize("name", ["lamae", "ind_p", "mvmae", "st_mem", "ipa_st_mem", "mtae", "mlae"])
def test_masking_depends_on_the_sample_not_on_how_the_batch_is_split(name):
    """What makes a 2-process (DDP) run equal a 1-process run: each sample's masks come from its
    key, so the loss of the whole batch is the mean of the losses of its halves."""
    method = build(name)
    data = batch(8)
    half = [
        type(data)(*(t[part] for t in (data.signals, data.lead_mask, data.labels, data.index, data.keys)))
        for part in (slice(0, 4), slice(4, 8))
    ]
    with torch.no_grad():
        whole = method.pretrain_loss(data)["loss"]
        halves = [method.pretrain_loss(h)["loss"] for h in half]
        again = method.pretrain_loss(data)["loss"]
    assert torch.allclose(whole, (halves[0] + halves[1]) / 2, atol=1e-6)
    assert torch.equal(whole, again)


def test_attention_runs_through_fused_scaled_dot_product_attention():
    """timm's blocks call F.scaled_dot_product_attention (flash/memory-efficient kernels on GPUs)."""
    method = build("lamae")
    assert all(block.attn.fused_attn for block in method.encoder.blocks)
    assert all(block.attn.fused_attn for block in method.la.blocks)
