"""The shared optimiser: fused AdamW where the device has the kernel, torch's default elsewhere."""

from __future__ import annotations

import torch

from benchmark.train import optim
from benchmark.train.optim import OptimConfig, build_optimizer


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 2))


def test_training_uses_the_fused_adamw_kernel_on_cpu_with_the_default_update():
    model, reference = small_model(), small_model()
    optimizer, _ = build_optimizer(model, OptimConfig(), batch_size=256, total_steps=10)
    assert optimizer.defaults["fused"] is True
    # the same parameter groups (weight decay, lr) on torch's default implementation
    by_id = {id(p): n for n, p in model.named_parameters()}
    reference_params = dict(reference.named_parameters())
    default = torch.optim.AdamW(
        [{**g, "params": [reference_params[by_id[id(p)]] for p in g["params"]]} for g in optimizer.param_groups]
    )
    assert not default.defaults["fused"]
    x = torch.randn(32, 8)
    for _ in range(3):
        for m, opt in ((model, optimizer), (reference, default)):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_device_without_the_fused_kernel_gets_the_default_adamw(monkeypatch):
    class AdamWWithoutFusedKernel(torch.optim.AdamW):  # what AdamW does on such a device
        def __init__(self, params, fused=None, **options):
            if fused:
                raise RuntimeError(
                    "`fused=True` requires all the params to be floating point Tensors of supported devices"
                )
            super().__init__(params, fused=fused, **options)

    monkeypatch.setattr(optim.torch.optim, "AdamW", AdamWWithoutFusedKernel)
    optimizer, _ = build_optimizer(small_model(), OptimConfig(), batch_size=256, total_steps=10)
    assert isinstance(optimizer, AdamWWithoutFusedKernel) and not optimizer.defaults["fused"]
