"""Counter-based random numbers keyed by sample identity.

Masking noise drawn from a global generator depends on how a batch is split: a run on two
processes (DistributedDataParallel) would mask the same ECG differently from a run on one, and
a run resumed mid-epoch would depend on restored generator state. Instead, every sample of an
epoch carries a 64-bit key (seed, epoch, record), and methods derive their noise from it with
the splitmix64 mixer (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number
generators"; the same idea as JAX's ``fold_in``). The same sample therefore gets the same masks
whatever the batch split, device or resume point.
"""

from __future__ import annotations

import numpy as np
import torch

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical (unsigned) right shift of int64."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (wrapping arithmetic)."""
    z = x + _GOLDEN
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def fold_in(keys: torch.Tensor, salt: int | torch.Tensor) -> torch.Tensor:
    """An independent key stream per salt (e.g. per lead or per random draw)."""
    return mix(keys * 1000003 + salt)


def split(keys: torch.Tensor, n: int) -> torch.Tensor:
    """(…,) keys -> (…, n) independent keys, e.g. one per lead (as JAX's ``split``).

    These are ``fold_in`` with salts 0..n-1; a method that needs another independent draw
    (e.g. which leads to hide) folds in a salt of its own >= 2**16."""
    return fold_in(keys[..., None], torch.arange(n, device=keys.device, dtype=torch.int64))


def uniform(keys: torch.Tensor, n: int) -> torch.Tensor:
    """(…,) int64 keys -> (…, n) float32 uniforms in [0, 1), one stream per key."""
    counters = torch.arange(n, device=keys.device, dtype=torch.int64)
    bits = _shift_right(mix(fold_in(keys[..., None], counters)), 40)  # top 24 bits
    return bits.to(torch.float32) / float(1 << 24)


def epoch_keys(seed: int, epoch: int, records: np.ndarray) -> np.ndarray:
    """The key of each record in an epoch: unique per (seed, epoch, record)."""
    base = mix(torch.tensor([seed * 1_000_003 + epoch], dtype=torch.int64))
    return fold_in(base, torch.as_tensor(np.asarray(records, dtype=np.int64))).numpy()
