"""Compute accounting: FLOPs of one pretraining or fine-tuning step, counted by rules this suite owns.

Matched-compute pretraining divides a FLOP budget by the FLOPs of one step, so that count fixes
the number of steps and is part of what a result *is*. It must depend on the model and the batch
only, never on the installed PyTorch. ``torch.utils.flop_counter.FlopCounterMode`` counts at the
dispatcher, below the Python code, where releases decompose attention and linear layers
differently: the same LAMAE step measured 8.51 GFLOPs under torch 2.15.0 and 8.12 under 2.14.1,
which gave Ind_P 518 or 514 steps and made results computed under one torch "stale" under the
other. Here a ``TorchFunctionMode`` sees the calls the model's Python code makes and counts them
with fixed formulas of the tensor shapes:

* a matrix product (..., M, K) @ (..., K, N) — ``F.linear``, ``matmul``/``@``, ``mm``, ``bmm``,
  ``addmm``, ``baddbmm``: 2·M·K·N per element of the (broadcast) batch: a multiply and an add;
* attention softmax(Q Kᵀ) V — ``F.scaled_dot_product_attention``, and
  ``F.multi_head_attention_forward`` with its projections — with Q (..., Lq, E), K (..., Lk, E),
  V (..., Lk, Ev): 2·Lq·Lk·(E + Ev) per batch × head, whatever the mask or the kernel;
* a convolution (``F.conv1d``/``conv2d``/``conv3d``): 2 · output elements · input channels per
  group · kernel elements;
* ``einsum`` of two operands: 2 · the product of the sizes of all its indices;
* nothing else (norms, activations, softmax, element-wise arithmetic), as FlopCounterMode and the
  scaling-law literature count (Kaplan et al. 2020, "Scaling laws for neural language models").

A training step counts 3 × its forward pass: the backward pass of each product computes the
gradients of both operands, two products of the same size (Kaplan et al.'s 6·N·D rule). The
forward pass is run once, without autograd, on the real batch shape (contrastive losses over the
batch grow faster than linearly with it). :data:`RULES` names these rules; it keys cached
measurements and is recorded with every pretraining plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch._C._functorch as _functorch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from benchmark.data.contract import LEADS
from benchmark.data.loader import Batch
from benchmark.method.base import Method

#: the counting rules' name and version (bump it when a formula changes)
RULES = "matmul-attention-conv-einsum/3x-forward/v1"
#: forward + backward = 3 x forward
TRAINING_STEP_FACTOR = 3


def _matmul(a: torch.Tensor, b: torch.Tensor) -> int:
    """2·M·K·N per element of the broadcast batch; vectors count as one row / one column."""
    m = a.shape[-2] if a.dim() > 1 else 1
    n = b.shape[-1] if b.dim() > 1 else 1
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]) if a.dim() > 2 or b.dim() > 2 else ()
    return 2 * m * a.shape[-1] * n * math.prod(batch)


def _linear(x: torch.Tensor, weight: torch.Tensor, *args: Any, **kwargs: Any) -> int:
    return 2 * math.prod(x.shape[:-1]) * weight.shape[0] * weight.shape[1]


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any, **kwargs: Any) -> int:
    return 2 * math.prod(q.shape[:-2]) * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def _multi_head_attention(query: torch.Tensor, key: torch.Tensor, *args: Any, **kwargs: Any) -> int:
    """``F.multi_head_attention_forward`` on (L, N, E) or unbatched (L, E) inputs: q/k/v input
    projections, attention over all heads, output projection."""
    lq, lk, e = query.shape[0], key.shape[0], query.shape[-1]
    batch = query.shape[1] if query.dim() == 3 else 1
    projections = 2 * batch * e * e * (2 * lq + 2 * lk)  # q and out over Lq tokens, k and v over Lk
    return projections + 2 * batch * lq * lk * 2 * e


def _convolution(out: torch.Tensor, weight: torch.Tensor) -> int:
    """weight (out channels, in channels / groups, *kernel)."""
    return 2 * out.numel() * weight.shape[1] * math.prod(weight.shape[2:])


def _einsum(equation: str, *operands: Any) -> int:
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    if len(operands) != 2 or any("..." in letters for letters in inputs):
        raise NotImplementedError(f"FLOP rules cover two-operand einsums without '...', not {equation!r}")
    sizes: dict[str, int] = {}
    for letters, operand in zip(inputs, operands):
        sizes.update(zip(letters, operand.shape))
    return 2 * math.prod(sizes.values())


def _vmapped_copies(out: Any) -> int:
    """How many computations one call stands for: inside ``torch.func.vmap`` a tensor's shape is
    the per-sample (logical) one, and the call runs once per vmapped sample (e.g. Ind_P's twelve
    stacked lead encoders). Read from the output's batched wrappers, level by level."""
    copies = 1
    while isinstance(out, torch.Tensor) and _functorch.is_batchedtensor(out):
        inner = _functorch.get_unwrapped(out)
        copies *= inner.numel() // max(out.numel(), 1)
        out = inner
    return copies


_PRODUCTS = {
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.mm,
    torch.Tensor.mm,
    torch.bmm,
    torch.Tensor.bmm,
}
_PRODUCTS_PLUS_INPUT = {torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm}
_CONVOLUTIONS = {F.conv1d, F.conv2d, F.conv3d}


class _ForwardCounter(TorchFunctionMode):
    """Adds up the FLOPs of the counted calls made while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flops = 0
        if func in _PRODUCTS:
            flops = _matmul(args[0], args[1])
        elif func is torch.Tensor.__rmatmul__:
            flops = _matmul(args[1], args[0])
        elif func in _PRODUCTS_PLUS_INPUT:
            flops = _matmul(args[1], args[2])
        elif func is F.linear:
            flops = _linear(*args, **kwargs)
        elif func is F.scaled_dot_product_attention:
            flops = _attention(*args, **kwargs)
        elif func is F.multi_head_attention_forward:
            flops = _multi_head_attention(*args, **kwargs)
        elif func in _CONVOLUTIONS:
            flops = _convolution(out, args[1] if len(args) > 1 else kwargs["weight"])
        elif func is torch.einsum:
            flops = _einsum(*args)
        if flops:
            self.flops += flops * _vmapped_copies(out[0] if isinstance(out, tuple) else out)
        return out


def forward_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs of the forward computation ``fn(*args, **kwargs)`` by the rules of this module.

    A model whose computation runs below Python calls (an external TorchScript or torch.export
    encoder: ``opaque_to_flop_rules``) is counted by torch's ``FlopCounterMode`` at the
    dispatcher instead; such a count is only recorded (fine-tuning compute), never part of what
    a result is."""
    if getattr(getattr(fn, "__self__", None), "opaque_to_flop_rules", False):
        dispatcher = FlopCounterMode(display=False)
        with dispatcher:
            fn(*args, **kwargs)
        return int(dispatcher.get_total_flops())
    counter = _ForwardCounter()
    with counter:
        fn(*args, **kwargs)
    return counter.flops


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
    """FLOPs of one pretraining step on ``batch`` (forward + backward; optimiser update excluded):
    3 × the forward FLOPs of ``pretrain_loss`` in training mode."""
    was_training = method.training
    method.train()
    try:
        with torch.no_grad():
            flops = forward_flops(method.pretrain_loss, batch)
    finally:
        method.train(was_training)
    return TRAINING_STEP_FACTOR * flops


def supervised_step_flops(method: Method, batch: Batch, n_labels: int) -> int:
    """FLOPs of one supervised (fine-tuning) step on ``batch``: 3 × the forward FLOPs of the
    downstream features plus a linear head to ``n_labels`` outputs. Counted in evaluation mode
    (dropout and stochastic depth change no counted product), so BatchNorm accepts any batch."""
    was_training = method.training
    method.eval()
    try:
        with torch.no_grad():
            flops = forward_flops(method.features, batch.signals, batch.lead_mask)
    finally:
        method.train(was_training)
    head = 2 * len(batch) * method.feature_dim * n_labels
    return TRAINING_STEP_FACTOR * (flops + head)


def parameter_counts(method: Method) -> dict[str, int]:
    return {"encoder_params": method.encoder_parameters(), "total_params": sum(p.numel() for p in method.parameters())}
