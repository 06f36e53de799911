"""Compute accounting: FLOPs of one pretraining step, measured, not estimated.

``torch.utils.flop_counter.FlopCounterMode`` counts the matrix multiplications and attention
of the forward and backward pass as PyTorch dispatches them, so a method's masking (how many
tokens its encoder really sees) is reflected exactly. Matched-compute pretraining divides a
FLOP budget by this number.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark.data.contract import LEADS
from benchmark.data.loader import Batch
from benchmark.method.base import Method


def synthetic_batch(method: Method, batch_size: int, n_labels: int = 1, seed: int = 0) -> Batch:
    """A random batch of the method's input geometry with all leads present."""
    g = torch.Generator().manual_seed(seed)
    signals = torch.randn(batch_size, len(LEADS), method.input_spec.window, generator=g)
    return Batch(
        signals,
        torch.ones(batch_size, len(LEADS), dtype=torch.bool),
        torch.zeros(batch_size, n_labels),
        torch.arange(batch_size),
        torch.arange(batch_size) + seed,
    )


def pretrain_step_flops(method: Method, batch: Batch) -> int:
    """FLOPs of ``pretrain_loss`` forward + backward on ``batch`` (optimiser update excluded)."""
    was_training = method.training
    method.train()
    with FlopCounterMode(display=False) as counter:
        method.pretrain_loss(batch)["loss"].backward()
    method.zero_grad(set_to_none=True)
    method.train(was_training)
    return int(counter.get_total_flops())


def parameter_counts(method: Method) -> dict[str, int]:
    return {"encoder_params": method.encoder_parameters(), "total_params": sum(p.numel() for p in method.parameters())}
