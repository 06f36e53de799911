"""Behaviour that defines LAMAE and the independent-lead MAEs, and the shared MAE pieces."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from benchmark.config import ConfigError
from benchmark.data.contract import LEADS, InputSpec
from benchmark.data.loader import Batch
from benchmark.method.variant import MethodVariant
from benchmark.nn.layers import masked_patch_mse, patchify, random_keep_ids, reconstruction_loss
from benchmark.registry import METHODS
from benchmark.run.build import method_config, method_spec
from benchmark.run.presets import PRESETS

SPEC = InputSpec(fs=100, window_s=2.0)
PRETRAINING = [name for name in METHODS.names() if METHODS.get(name).pretrains]


def build(name: str, **overrides):
    cls = METHODS.get(name)
    preset = PRESETS["smoke"]
    config = method_config(MethodVariant(name, tuple((k, str(v)) for k, v in sorted(overrides.items()))), preset)
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


@pytest.mark.parametrize("la_tokens", ["patch", "lead"])
def test_lamae_latent_attention_is_invariant_to_permuting_leads_with_their_embeddings(la_tokens):
    method = build("lamae", la_tokens=la_tokens, la_skip=la_tokens == "lead").eval()
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


def test_trivial_predictors_are_scored_on_the_same_masked_patches_as_the_loss():
    # one row (a lead of a record) of 4 patches of 2 samples; patches 0 and 1 visible
    target = torch.tensor([[[1.0, 3.0], [1.0, 3.0], [4.0, 4.0], [0.0, 0.0]]])
    masked = torch.tensor([[False, False, True, True]])
    losses = reconstruction_loss(torch.zeros_like(target), target, masked, norm_pix=False)
    assert losses["loss"] == pytest.approx((16 + 0) / 2)  # a zero prediction is the zero predictor
    assert losses["trivial/zero"] == pytest.approx(8.0)
    # the visible mean is 2: masked errors (2, 2) and (-2, -2)
    assert losses["trivial/visible_mean"] == pytest.approx(4.0)
    # a row with nothing visible (a lead hidden whole) predicts 0
    hidden = reconstruction_loss(target, target, torch.ones(1, 4, dtype=torch.bool), norm_pix=False)
    assert hidden["trivial/visible_mean"] == hidden["trivial/zero"] and hidden["loss"] == 0
    # normalised targets: every patch has mean 0, so zero is the best constant (loss ~ (p-1)/p)
    norm = reconstruction_loss(torch.zeros(3, 20, 25), torch.randn(3, 20, 25), torch.ones(3, 20, dtype=torch.bool))
    assert norm["trivial/zero"] == pytest.approx(norm["loss"].item()) == pytest.approx(24 / 25, rel=1e-4)
    assert not norm["trivial/zero"].requires_grad


@pytest.mark.parametrize("name", PRETRAINING)
def test_every_pretraining_method_reports_its_trivial_references(name):
    out = build(name).pretrain_loss(batch())
    trivial = {k: v for k, v in out.items() if k.startswith("trivial/")}
    assert trivial and all(torch.isfinite(v) and v > 0 for v in trivial.values())
    # at initialisation the loss is near a trivial predictor's (the decoder predicts ~ a constant)
    assert 0.3 < out["loss"].item() / min(v.item() for v in trivial.values()) < 3.0


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


# -- the two readings of LAMAE and its ablations --------------------------------------------------
def variant(spec: str):
    torch.manual_seed(0)
    return method_spec(spec, PRESETS["smoke"]).build(SPEC)


class Recorder:
    """Records LA's output and the decoder's inputs and output in ``pretrain_loss``; optionally
    replaces LA's output."""

    def __init__(self, method, replace_la=None):
        self.calls: dict = {}
        method.la.register_forward_hook(self.la_hook(replace_la))
        method.decoder.register_forward_pre_hook(
            lambda _, args, kwargs: self.calls.update(decoder_in=(args, kwargs)), with_kwargs=True
        )
        method.decoder.register_forward_hook(lambda _, args, out: self.calls.update(pred=out))

    def la_hook(self, replace_la):
        def hook(_, args, output):
            out = output[0] if replace_la is None else replace_la(output[0])
            self.calls["la_out"] = out
            return out, output[1]

        return hook


def reconstruction(method, data, replace_la=None) -> torch.Tensor:
    recorder = Recorder(method, replace_la)
    with torch.no_grad():
        method.pretrain_loss(data)
    return recorder.calls["pred"]


def kept_patches(method) -> tuple[int, int]:
    """Of each lead's patches: how many the encoder sees (1 - alpha_E of them), and how many of those
    reach LA (M_LA hides floor(alpha_LA * K) of each lead's K latents)."""
    n_keep = round(method.n_patches * (1 - method.config.mask_ratio))
    return n_keep, n_keep - int(n_keep * method.config.la_mask_ratio)


def test_default_lamae_decodes_each_lead_only_from_latent_attentions_outputs_at_its_positions():
    """The paper's x_hat_{l_t} = D(LA(Z_vis))_{l_t}: no skip path from a lead's encoder tokens, no
    mask tokens into LA (it sees the M_LA-kept latents only)."""
    method = variant("lamae")
    recorder = Recorder(method)
    data = batch(3)
    with torch.no_grad():
        method.pretrain_loss(data)
    la_out = recorder.calls["la_out"]  # (B, 1 + L * K', D)
    (tokens, is_visible), kwargs = recorder.calls["decoder_in"]  # per present lead: (P, N, D), (P, N)
    n_keep, n_to_la = kept_patches(method)
    assert la_out.shape[1] == 1 + len(LEADS) * n_to_la
    assert torch.equal(is_visible.sum(1), torch.full((3 * len(LEADS),), n_to_la))
    # lead l's decoder sees exactly LA's outputs at lead l's positions, after LA's CLS output
    per_lead = la_out[:, 1:].reshape(3 * len(LEADS), n_to_la, -1)
    assert torch.equal(tokens[is_visible].reshape(per_lead.shape), per_lead)
    assert torch.equal(kwargs["prefix"][:, 0], la_out[:, 0].repeat_interleave(len(LEADS), dim=0))


def scored_patches(method, data, monkeypatch) -> torch.Tensor:
    """How many patches of each present lead the loss scores."""
    import ecgbench_methods.lamae as lamae_module

    seen = {}

    def recording(pred, target, masked, norm_pix=True, patch_dim=-1):
        seen["masked"] = masked
        return reconstruction_loss(pred, target, masked, norm_pix, patch_dim)

    monkeypatch.setattr(lamae_module, "reconstruction_loss", recording)
    with torch.no_grad():
        method.pretrain_loss(data)
    return seen["masked"].sum(1)


def test_lamae_scores_the_encoder_masked_patches_as_the_papers_sum_and_the_la_hidden_ones_only_as_a_variant(
    monkeypatch,
):
    data = batch(3)
    lamae = variant("lamae")
    n = lamae.n_patches
    n_keep, n_to_la = kept_patches(lamae)
    assert (scored_patches(variant("lamae"), data, monkeypatch) == n - n_keep).all()  # t not in T_vis
    hidden_too = scored_patches(variant("lamae[la_score_hidden=true]"), data, monkeypatch)
    assert (hidden_too == n - n_to_la).all() and n_to_la < n_keep


def test_lamae_skip_path_variant_gives_each_decoder_its_own_encoder_latents():
    method, data = variant("lamae[la_skip=true]"), batch(3)
    recorder = Recorder(method)
    with torch.no_grad():
        method.pretrain_loss(data)
    (tokens, is_visible), _ = recorder.calls["decoder_in"]
    n_keep, _ = kept_patches(method)
    assert torch.equal(is_visible.sum(1), torch.full((3 * len(LEADS),), n_keep))  # every encoder-visible patch


def test_perturbing_latent_attentions_output_or_removing_it_changes_the_token_level_reconstruction():
    method, data = variant("lamae"), batch(3)
    reference = reconstruction(method, data)
    perturbed = reconstruction(variant("lamae"), data, lambda out: out + 0.1 * torch.randn_like(out))
    assert not torch.allclose(reference, perturbed, atol=1e-3)
    without_la = reconstruction(variant("lamae[la_depth=0,la_mask_ratio=0,readout=la_mean]"), data)
    with_la = reconstruction(variant("lamae[la_mask_ratio=0]"), data)
    assert not torch.allclose(with_la, without_la, atol=1e-3)  # same weights but LA's blocks


@pytest.mark.parametrize(
    "spec, crosses",
    [
        ("lamae", True),
        ("lamae[la_skip=true]", True),
        ("lamae[la_mask_ratio=0,la_skip=true,la_tokens=lead]", True),
        ("lamae[la_cross_lead=false,la_mask_ratio=0,readout=la_mean]", False),
        ("lamae[la_cross_lead=false,la_mask_ratio=0,la_skip=true,la_tokens=lead,readout=la_mean]", False),
        ("lamae[la_depth=0,la_mask_ratio=0,readout=la_mean]", False),
        ("lamae[la_depth=0,la_mask_ratio=0,la_skip=true,la_tokens=lead,readout=encoder_mean]", False),
    ],
)
def test_information_crosses_leads_exactly_when_latent_attention_mixes_them(spec, crosses):
    """Lead I's reconstruction depends on lead V1's signal through LA, and only through LA: the
    ablations without cross-lead attention are independent-lead models."""
    method, data = variant(spec), batch(3)
    changed = replace(data, signals=data.signals.clone())
    changed.signals[:, 6] = 10 * torch.randn_like(changed.signals[:, 6])  # V1
    lead_i = slice(0, None, len(LEADS))  # rows of lead I among the present leads
    before, after = reconstruction(method, data)[lead_i], reconstruction(variant(spec), changed)[lead_i]
    assert torch.equal(before, after) != crosses  # exactly equal: not one operation reads V1


@pytest.mark.parametrize("la_tokens", ["lead", "patch"])
def test_without_lead_embeddings_latent_attention_is_permutation_invariant(la_tokens):
    """The abstract's "permutation-invariant aggregation" holds for lead_embedding=false; with
    embeddings, permuting leads together with their embeddings leaves LA's CLS unchanged."""
    data = batch()
    permutation = torch.randperm(len(LEADS), generator=torch.Generator().manual_seed(3))
    permuted = (data.signals[:, permutation], data.lead_mask[:, permutation])
    plain = variant(
        f"lamae[la_skip={str(la_tokens == 'lead').lower()},la_tokens={la_tokens},lead_embedding=false]"
    ).eval()
    embedded = variant(f"lamae[la_skip={str(la_tokens == 'lead').lower()},la_tokens={la_tokens}]").eval()
    with torch.no_grad():
        assert torch.allclose(plain.features(data.signals, data.lead_mask), plain.features(*permuted), atol=1e-5)
        before = embedded.features(data.signals, data.lead_mask)
        embedded.lead_embed.copy_(embedded.lead_embed[permutation])
        assert torch.allclose(before, embedded.features(*permuted), atol=1e-5)


@pytest.mark.parametrize(
    "settings, message",
    [
        ("la_depth=0", "la_depth=0 .no LA. needs la_mask_ratio=0"),
        ("la_depth=0,la_mask_ratio=0", "needs readout la_mean or encoder_mean"),
        ("la_cross_lead=false,la_mask_ratio=0", "la_cross_lead=false .LA within each lead. needs readout"),
        ("la_tokens=time", "la_tokens must be 'lead' or 'patch'"),
        ("la_tokens=lead", "write la_skip=true"),
        ("la_skip=true,la_score_hidden=true", "would score patches the decoder reads"),
    ],
)
def test_ablations_refuse_settings_that_would_train_or_read_out_nothing(settings, message):
    with pytest.raises(ConfigError, match=message):
        method_config(f"lamae[{settings}]", PRESETS["smoke"])


def test_every_transformer_gets_maes_xavier_initialisation():
    """Regressions: LA's blocks once kept PyTorch's default init (the only blocks without the ViT
    init); then every block had timm's std-0.02 init, ~6x smaller than MAE's Xavier-uniform at
    width 32-64, which slowed memorising 16 records from 513 to 800 steps."""
    method = build("lamae")
    for qkv in (
        method.la.blocks[0].attn.qkv,
        method.encoder.blocks[0].attn.qkv,
        method.decoder.transformer.blocks[0].attn.qkv,
    ):
        fan_out, fan_in = qkv.weight.shape
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert qkv.weight.abs().max() <= bound and qkv.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.1)
        assert not qkv.bias.any()


def test_a_narrow_ind_p_reads_out_features_as_wide_as_asked_through_a_fixed_projection():
    """The ladder's parameter-matched Ind_P keeps the probe's feature width equal to LAMAE's: a
    frozen semi-orthogonal projection (inner products kept), counted in its encoder parameters."""
    narrow, wide = build("ind_p", dim=16), build("ind_p", dim=16, feature_dim=32)
    data = batch()
    with torch.no_grad():
        features = wide.eval().features(data.signals, data.lead_mask)
    assert features.shape == (len(data), 32) == (len(data), wide.feature_dim)
    weight = wide.feature_projection.weight
    assert not weight.requires_grad and torch.allclose(weight.T @ weight, torch.eye(16), atol=1e-5)
    assert wide.encoder_parameters() == narrow.encoder_parameters() + 16 * 32
