"""The properties that define each method of the zoo (beyond the generic plugin contract)."""

from __future__ import annotations

import math

import pytest
import torch
from test_methods import SPEC, batch, build  # the same tiny input (8 patches per lead) and builder

from benchmark.nn.alignment import alignment_loss, annealed_weight
from benchmark.nn.layers import patchify
from benchmark.registry import METHODS
from benchmark.run.build import method_config
from benchmark.run.presets import PRESETS


# -- ST-MEM ------------------------------------------------------------------------------------
def test_st_mem_keeps_the_same_number_of_patches_in_every_lead_and_frames_each_lead_with_sep():
    method = build("st_mem", mask_ratio=0.75)
    patches = patchify(batch(3).signals, method.patch_len)
    keep = torch.stack([torch.randperm(8)[:2].sort().values for _ in range(3 * 12)]).view(3, 12, 2)
    tokens = method._tokens(patches, keep)
    assert method.n_keep == int(8 * 0.25) == 2
    assert tokens.shape == (3, 12, 2 + 2, method.config.dim)  # K kept patches + 2 SEP, in every lead
    sep = method.sep_token + method.lead_embed  # (12, D): SEP is never masked, carries its lead embedding
    assert torch.allclose(tokens[:, :, 0], sep.expand(3, -1, -1)) and torch.allclose(
        tokens[:, :, -1], sep.expand(3, -1, -1)
    )
    embedded = method.patch_embed(patches) + method.pos_embed + method.lead_embed[:, None]
    expected = torch.gather(embedded, 2, keep[..., None].expand(-1, -1, -1, method.config.dim))
    assert torch.allclose(tokens[:, :, 1:-1], expected, atol=1e-6)


def test_st_mem_masks_each_lead_independently():
    method = build("st_mem")
    seen = []
    method.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(args[1].clone()), with_kwargs=True
    )
    method.pretrain_loss(batch(8))
    is_visible = seen[0].view(8, 12, 8)
    assert (is_visible.sum(-1) == 2).all()  # the configured ratio in every lead
    assert not (is_visible == is_visible[:, :1]).all()  # leads do not share one mask


def test_st_mem_readout_is_the_normalised_mean_of_the_last_layer_patch_tokens():
    method = build("st_mem").eval()
    data = batch(3)
    with torch.no_grad():
        encoded = method.encode(data.signals, data.lead_mask, return_hidden=True)
        assert encoded.hidden_states[-1].shape == (3, 12 * 8, method.config.dim)  # SEP removed
        assert torch.allclose(encoded.pooled, method.encoder.norm(encoded.hidden_states[-1].mean(1)), atol=1e-5)


# -- ECG-Soup -----------------------------------------------------------------------------------
def test_ppa_is_the_mean_over_layers_of_normalised_pooled_tokens():
    method = build("st_mem_ppa").eval()
    data = batch(3)
    with torch.no_grad():
        encoded = method.encode(data.signals, data.lead_mask, return_hidden=True)
        expected = torch.stack([method.encoder.norm(h).mean(1) for h in encoded.hidden_states]).mean(0)
    assert len(encoded.hidden_states) == method.config.depth
    assert torch.allclose(encoded.pooled, expected, atol=1e-5)


def test_pma_gate_weights_are_a_softmax_that_mixes_the_layers():
    method = build("st_mem_pma").eval()
    data = batch(3)
    with torch.no_grad():
        layers = method.readout_inputs(data.signals, data.lead_mask)
        weights = method.gate.weights(layers)
        encoded = method.encode(data.signals, data.lead_mask, return_hidden=True)
    assert layers.shape == (3, method.config.depth, method.config.dim)
    assert (weights >= 0).all() and torch.allclose(weights.sum(-1), torch.ones(3))
    assert torch.allclose(layers, torch.stack([h.mean(1) for h in encoded.hidden_states], dim=1), atol=1e-5)
    assert torch.allclose(encoded.pooled, (weights[..., None] * layers).sum(1), atol=1e-5)
    assert all(n.startswith("gate.") for n, _ in method.named_parameters() if method.is_downstream_only(n))


def test_pma_gate_is_trained_with_the_head_under_the_linear_probe(toy_arrays):
    from benchmark.eval.protocol import CellContext
    from benchmark.eval.protocols.linear import LinearProbe, LinearProbeConfig

    cls = METHODS.get("st_mem_pma")
    preset = PRESETS["smoke"]
    config = method_config("st_mem_pma[gate_fit.epochs=3]", preset)
    torch.manual_seed(0)
    method = cls(config, preset.input)
    before = {k: v.clone() for k, v in method.gate.state_dict().items()}
    output = LinearProbe(LinearProbeConfig(l2_grid=(1.0,), max_iter=20)).run(
        CellContext(method, None, toy_arrays, seed=0, device=torch.device("cpu"), progress=False)
    )
    assert any(not torch.equal(before[k], v) for k, v in method.gate.state_dict().items())
    assert len(output.details["gate_mean_layer_weights"]) == config.depth
    assert output.details["feature_dim"] == config.dim and 0 <= output.details["gate_val_macro_auroc"] <= 1


def test_ipa_decoder_input_is_the_normalised_group_average_of_encoder_layers():
    method = build("ipa_st_mem", groups=2, depth=4)
    block_outputs, decoder_inputs = [], []
    for block in method.encoder.blocks:
        block.register_forward_hook(lambda module, args, output: block_outputs.append(output))
    method.decoder.embed.register_forward_pre_hook(lambda module, args: decoder_inputs.append(args[0]))
    method.pretrain_loss(batch(3))
    b, k = 3, method.n_keep
    layers = [h.view(b, 12, k + 2, -1) for h in block_outputs]  # the masked sequence, per lead
    groups = [torch.stack(layers[:2]).mean(0), torch.stack(layers[2:]).mean(0)]
    expected = torch.cat([method.encoder.norm(g) for g in groups], dim=-1)  # (B, L, K + 2, 2D)
    sep_tokens = decoder_inputs[1]  # second call: the SEP prefix of every lead
    assert method.decoder.embed.in_features == 2 * method.config.dim
    assert torch.allclose(sep_tokens, expected[:, :, [0, -1]].flatten(0, 1), atol=1e-5)


def test_ipa_uses_every_block_as_a_group_when_there_are_fewer_blocks_than_groups():
    assert build("ipa_st_mem", groups=4, depth=2).n_groups == 2


# -- MLAE / MTAE ---------------------------------------------------------------------------------
def _visible_latent(method, signals, lead_mask, keep_ids):
    with torch.no_grad():
        return method._encode_tokens(signals, lead_mask, keep_ids)[0]


def test_mlae_hides_whole_leads():
    method = build("mlae").eval()
    data = batch(1)
    keep = method._keep_ids(data.lead_mask, data.keys)
    assert keep.shape == (1, int(12 * 0.25))
    masked_lead = next(i for i in range(12) if i not in keep[0])
    reference = _visible_latent(method, data.signals, data.lead_mask, keep)
    changed = data.signals.clone()
    changed[0, masked_lead] += 5 * torch.randn(SPEC.window)  # the whole masked lead, any time
    assert torch.allclose(_visible_latent(method, changed, data.lead_mask, keep), reference)
    changed[0, keep[0, 0], :50] += 1.0  # (a constant shift would vanish in the token LayerNorm)
    assert not torch.allclose(_visible_latent(method, changed, data.lead_mask, keep), reference)


def test_mlae_keeps_present_leads_visible_before_missing_ones():
    method = build("mlae")
    present = torch.zeros(200, 12, dtype=torch.bool)
    present[:, [1, 4, 7, 8]] = True
    keep = method._keep_ids(present, torch.arange(200))
    assert torch.gather(present, 1, keep).all()


def test_mtae_hides_whole_time_spans_of_all_leads():
    method = build("mtae").eval()
    data = batch(1)
    keep = method._keep_ids(method._token_present(data.lead_mask), data.keys)
    assert keep.shape == (1, int(8 * 0.25))
    masked_patch = next(i for i in range(8) if i not in keep[0])
    p = method.patch_len
    reference = _visible_latent(method, data.signals, data.lead_mask, keep)
    changed = data.signals.clone()
    changed[0, :, masked_patch * p : (masked_patch + 1) * p] += 5.0  # that span, in every lead
    assert torch.allclose(_visible_latent(method, changed, data.lead_mask, keep), reference)
    kept_patch = int(keep[0, 0])
    changed[0, 7, kept_patch * p] += 1.0  # one sample of one lead in a kept span
    assert not torch.allclose(_visible_latent(method, changed, data.lead_mask, keep), reference)


# -- MVMAE, alignment ----------------------------------------------------------------------------
def test_mvmae_beta_schedule_rises_from_zero_after_warmup_to_two_with_the_configured_steepness():
    beta = lambda step, steepness=0.02: annealed_weight(step, 1000, 2.0, "sigmoid", 0.1, steepness)  # noqa: E731
    assert beta(0) == beta(100) == 0.0  # nothing before the end of warmup
    assert beta(1000) == pytest.approx(2.0) and beta(550) == pytest.approx(1.0)  # midpoint of the window
    values = [beta(s) for s in range(100, 1001, 50)]
    assert values == sorted(values)
    k = 0.02 * 100  # steepness per 1 % of the window
    logistic = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = 2 * (logistic(k * (0.25 - 0.5)) - logistic(-k / 2)) / (logistic(k / 2) - logistic(-k / 2))
    assert beta(325) == pytest.approx(expected)  # a quarter into the window
    assert beta(325, steepness=0.1) < beta(325)  # steeper: flatter start, sharper middle

    method = build("mvmae")
    assert method.beta == 0.0
    method.on_train_step(6, 6)
    assert method.beta == pytest.approx(method.config.beta_final) == 2.0
    method.on_train_step(0, 6)
    assert method.beta == 0.0


def test_mvmae_loss_is_reconstruction_plus_beta_times_alignment():
    method = build("mvmae")
    method.on_train_step(6, 6)
    data = batch(3)
    out = method.pretrain_loss(data)
    losses, lead_features = method._reconstruct(data)
    alignment = alignment_loss(lead_features, data.lead_mask, "mse")
    assert torch.allclose(out["loss"], losses["loss"] + 2.0 * alignment)
    assert torch.equal(lead_features.norm(dim=-1) > 0, data.lead_mask)
    # its trivial references: the reconstruction's trivial predictors with the alignment term at
    # chance, which for mse alignment is 0 (constant features are perfectly aligned)
    assert torch.allclose(out["trivial/zero"], losses["trivial/zero"])
    assert out["alignment_at_chance"] == 0


def test_align_baseline_is_a_linear_lambda_from_zero_to_one_with_lead_infonce():
    method = build("align")
    assert method.config.align_metric == "lead_infonce" and method.config.beta_schedule == "linear"
    method.on_train_step(6, 6)
    assert method.beta == pytest.approx(1.0)


def test_alignment_metrics_on_known_configurations():
    present = torch.ones(4, 3, dtype=torch.bool)
    same = torch.randn(4, 1, 8).expand(-1, 3, -1)  # every lead of a record identical
    for metric in ("mse", "cosine_sim"):
        aligned, random = alignment_loss(same, present, metric), alignment_loss(torch.randn(4, 3, 8), present, metric)
        assert aligned < random
    assert alignment_loss(same, present, "mse") == pytest.approx(0.0, abs=1e-7)
    assert alignment_loss(same, present, "cosine_sim") == pytest.approx(-1.0)
    orthogonal = torch.eye(4)[:, None, :].expand(-1, 3, -1) * 10  # records far apart, leads aligned
    for metric in ("simclr", "lead_infonce"):
        assert alignment_loss(orthogonal, present, metric, 0.5) < alignment_loss(
            torch.randn(4, 3, 4), present, metric, 0.5
        )


@pytest.mark.parametrize("metric", ["mse", "cosine_sim", "simclr", "lead_infonce"])
def test_alignment_ignores_missing_leads(metric):
    f = torch.randn(5, 12, 16)
    present = torch.rand(5, 12) > 0.3
    present[:, 0] = True
    changed = torch.where(present[..., None], f, torch.randn_like(f))
    assert torch.allclose(alignment_loss(f, present, metric), alignment_loss(changed, present, metric))


# -- LAMAE_E -------------------------------------------------------------------------------------
def test_lamae_e_default_reading_pretrains_as_lamae_and_discards_latent_attention_downstream():
    lamae, lamae_e = build("lamae"), build("lamae_e")
    data = batch(3)
    loss = lamae.pretrain_loss(data)["loss"]
    assert torch.equal(lamae_e.pretrain_loss(data)["loss"], loss)
    assert lamae_e.config.readout == "encoder_mean"
    la_params = sum(p.numel() for n, p in lamae.named_parameters() if n.startswith(("la.", "la_cls", "lead_embed")))
    assert lamae_e.encoder_parameters() == lamae.encoder_parameters() - la_params


def test_lamae_e_alternative_reading_pretrains_without_latent_attention_masking():
    method = build("lamae_e", reading="alpha_la_0")
    assert method.config.la_mask_ratio == 0.0 and method.config.readout == "la_cls"
    assert method.la_mask_token is None
    assert not method._la_lead_mask(torch.ones(4, 12, dtype=torch.bool), torch.rand(4, 12)).any()
    with pytest.raises(ValueError, match="reading must be one of"):
        build("lamae_e", reading="sometimes")


# -- end to end ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_method_runs_end_to_end_and_reaches_the_leaderboard(tmp_path):
    from conftest import run_cli

    out = tmp_path / "results"
    result = run_cli(
        "run",
        "--methods",
        "all",
        "--preset",
        "smoke",
        "--results",
        str(out),
        "--leaderboard",
        str(out / "LB.md"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "--set",
        "pretrain.steps=2",
        "--set",
        "finetune.epochs=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    board = (out / "LB.md").read_text()
    from benchmark.method.external import is_external

    # externals other tests registered in this process are not part of the subprocess's "all"
    for name in (n for n in METHODS.names() if not is_external(METHODS.get(n))):
        assert f"| {name} " in board or METHODS.get(name).missing_requirements(), name
    # tables sorted by protocol (their headings; figure captions repeat the protocol's name)
    finetune_table, linear_table = board.split("preset `smoke` · finetune\n")[1].split("preset `smoke` · linear\n")
    for supervised, frozen in (
        ("scratch", "random_init"),
        ("xresnet1d", "ecg_features"),
    ):  # references where they apply
        assert f"| {supervised} " in finetune_table and f"| {frozen} " not in finetune_table
        assert f"| {supervised} " not in linear_table
    assert "| random_init " in linear_table
