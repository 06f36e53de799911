"""The independent-lead methods run all leads at once (private weights through ``call_stacked``,
shared ones on the batch of present leads) and compute exactly what a loop over the leads
computes: the loss, its gradients, the aligned lead features and the downstream features.

The loops below are the reference: the per-lead code these methods ran before, on the
methods' own modules.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from test_methods import SPEC, build
from torch.overrides import TorchFunctionMode

from benchmark import rng
from benchmark.data.contract import LEADS
from benchmark.data.loader import Batch
from benchmark.nn.layers import (
    call_stacked,
    masked_mean,
    masked_patch_mse,
    normalize_patches,
    patchify,
    random_keep_ids,
    scatter_visible,
)

METHODS = ["ind_p", "ind_s", "mvmae", "align"]


def looped_reconstruct(method, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    patches = patchify(batch.signals, method.patch_len)
    lead_keys = rng.split(batch.keys, len(LEADS))
    total, weight = patches.new_zeros(()), patches.new_zeros(())
    features = patches.new_zeros(*batch.lead_mask.shape, method.config.dim)
    for lead in range(len(LEADS)):
        present = batch.lead_mask[:, lead]
        n = int(present.sum())
        if not n:
            continue
        k = lead if method.config.private else 0
        extra = None if method.lead_embed is None else method.lead_embed[lead].expand(n, -1)
        keep_ids = random_keep_ids(lead_keys[present, lead], method.n_patches, method.n_keep)
        tokens, _ = method.encoders[k](patches[present, lead], keep_ids, extra)
        dense, is_visible = scatter_visible(tokens[:, 1:], keep_ids, method.n_patches)
        decoder_extra = None if method.decoder_lead_embed is None else method.decoder_lead_embed[lead].expand(n, -1)
        pred = method.decoders[k](dense, is_visible, prefix=tokens[:, :1], extra=decoder_extra)
        n_masked = (~is_visible).sum()
        total = total + masked_patch_mse(pred, patches[present, lead], ~is_visible, method.config.norm_pix) * n_masked
        weight = weight + n_masked
        features[present, lead] = tokens.mean(dim=1)
    return total / weight, features


def looped_encode(method, signals: torch.Tensor, lead_mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    patches = patchify(signals, method.patch_len)
    pooled, hidden = [], []
    for lead in range(len(LEADS)):
        k = lead if method.config.private else 0
        extra = None if method.lead_embed is None else method.lead_embed[lead].expand(len(signals), -1)
        tokens, layers = method.encoders[k](patches[:, lead], extra=extra, return_hidden=True)
        pooled.append(tokens[:, 0] if method.config.lead_pool == "cls" else tokens[:, 1:].mean(1))
        hidden.append(layers)
    keep = lead_mask[:, :, None, None]
    per_layer = [
        (torch.stack([hidden[lead][i] for lead in range(len(LEADS))], dim=1) * keep).flatten(1, 2)
        for i in range(method.config.depth)
    ]
    return masked_mean(torch.stack(pooled, dim=1), lead_mask, dim=1), per_layer


def ragged_batch(b: int = 6) -> Batch:
    """Random signals; record 0 has every lead, the others miss some (record 1 keeps only V6)."""
    g = torch.Generator().manual_seed(3)
    lead_mask = torch.rand(b, len(LEADS), generator=g) > 0.4
    lead_mask[0] = True
    lead_mask[1] = False
    lead_mask[1, -1] = True
    signals = torch.randn(b, len(LEADS), SPEC.window, generator=g) * lead_mask[:, :, None]
    return Batch(signals, lead_mask, torch.zeros(b, 2), torch.arange(b), torch.arange(b) + 77)


def gradients(method, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    names, params = zip(*[(n, p) for n, p in method.named_parameters() if p.requires_grad])
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for n, p, g in zip(names, params, grads)}


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("norm_pix", [False, True])
def test_batched_leads_give_the_looped_loss_features_and_gradients(name, norm_pix):
    method = build(name, norm_pix=norm_pix)
    if name == "mvmae":  # the decoder's lead embedding (MVMAE) takes part
        assert method.decoder_lead_embed is not None
    batch = ragged_batch()
    weights = torch.randn(*batch.lead_mask.shape, method.config.dim, generator=torch.Generator().manual_seed(1))

    losses, features = method._reconstruct(batch)
    loss = losses["loss"]
    reference_loss, reference_features = looped_reconstruct(method, batch)
    assert loss.item() == pytest.approx(reference_loss.item(), rel=1e-5)
    assert torch.allclose(features, reference_features, atol=1e-5)

    # gradients of both outputs (the loss and the features the alignment term sees)
    batched = gradients(method, loss + (features * weights).sum() * 1e-3)
    looped = gradients(method, reference_loss + (reference_features * weights).sum() * 1e-3)
    for n in looped:
        assert torch.allclose(batched[n], looped[n], rtol=1e-4, atol=1e-7), n
    last_encoder = f"encoders.{len(method.encoders) - 1}."  # V6's own weights under ind_p
    assert any(g.abs().sum() > 0 for n, g in batched.items() if n.startswith(last_encoder))


@pytest.mark.parametrize("name", ["ind_p", "ind_s"])
def test_batched_leads_give_the_looped_downstream_features_and_hidden_states(name):
    method = build(name).eval()
    batch = ragged_batch()
    with torch.no_grad():
        encoded = method.encode(batch.signals, batch.lead_mask, return_hidden=True)
        pooled, hidden = looped_encode(method, batch.signals, batch.lead_mask)
    assert torch.allclose(encoded.pooled, pooled, atol=1e-5)
    assert len(encoded.hidden_states) == len(hidden)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(encoded.hidden_states, hidden))


def test_stacked_modules_each_run_on_their_own_slice_and_train_their_own_weights():
    modules = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU()) for _ in range(3))
    x = torch.randn(3, 5, 4)
    out = call_stacked(modules, x)
    assert torch.allclose(out, torch.stack([m(x[i]) for i, m in enumerate(modules)]), atol=1e-6)
    out[1].sum().backward()
    assert modules[0][0].weight.grad is None or not modules[0][0].weight.grad.any()
    assert modules[1][0].weight.grad.abs().sum() > 0


def test_stochastic_depth_draws_independently_for_each_private_encoder():
    method = build("ind_p", drop_path=0.5).train()
    x = torch.randn(len(LEADS), 64, method.n_patches, method.patch_len)
    same_input = x[:1].expand_as(x)
    # identical weights and input in every slot: only the drop decisions can differ between slots
    for encoder in method.encoders[1:]:
        encoder.load_state_dict(method.encoders[0].state_dict())
    torch.manual_seed(0)
    tokens, _ = call_stacked(method.encoders, same_input)
    assert not torch.allclose(tokens[0], tokens[1])


class LinearCalls(TorchFunctionMode):
    """Counts the linear-layer calls made while active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += func is F.linear
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["ind_p", "ind_s"])
def test_a_layer_runs_once_per_step_however_many_leads_are_present(name):
    """One call per layer for all leads: a loop over leads makes twelve calls with all leads."""
    method = build(name)
    counts = []
    for n_leads in (len(LEADS), 1):
        batch = ragged_batch()
        lead_mask = torch.zeros_like(batch.lead_mask)
        lead_mask[:, :n_leads] = True
        with LinearCalls() as counter:
            method.pretrain_loss(Batch(batch.signals, lead_mask, batch.labels, batch.index, batch.keys))
        counts.append(counter.calls)
    assert counts[0] == counts[1]


@pytest.mark.parametrize("name", ["mtae", "mlae"])
def test_token_methods_lose_what_the_lead_major_layout_loses(name):
    """MTAE/MLAE score the single-lead pieces of their tokens in token layout (a view); the
    reference rearranges prediction and target lead-major first (their earlier layout)."""
    method = build(name)
    batch = ragged_batch()
    signals, lead_mask = batch.signals * batch.lead_mask[:, :, None], batch.lead_mask
    keep_ids = method._keep_ids(method._token_present(lead_mask), batch.keys)
    latent, _ = method._encode_tokens(signals, lead_mask, keep_ids)
    dense, is_visible = scatter_visible(latent[:, 1:], keep_ids, method.n_tokens)
    pred = method.decoder(dense, is_visible, prefix=latent[:, :1])
    target = normalize_patches(method._tokenize(signals))
    if name == "mtae":
        per_lead = lambda t: rearrange(t, "b n (l p) -> b l n p", l=len(LEADS))  # noqa: E731
    else:
        per_lead = lambda t: t[:, :, None, :]  # noqa: E731
    hidden = per_lead((~is_visible)[:, :, None].expand_as(target))[..., 0] & lead_mask[:, :, None]
    reference = masked_patch_mse(per_lead(pred), per_lead(target), hidden, norm_pix=False)
    assert method.pretrain_loss(batch)["loss"].item() == pytest.approx(reference.item(), rel=1e-5)
