"""Counter-based noise: deterministic per key, independent across keys, uniform."""

from __future__ import annotations

import numpy as np
import torch

from benchmark import rng
from benchmark.nn.layers import random_keep_ids


def test_noise_is_a_function_of_the_key_only():
    keys = torch.tensor([5, 17, 5, -3])
    noise = rng.uniform(keys, 64)
    assert torch.equal(noise[0], noise[2]) and not torch.equal(noise[0], noise[1])
    assert torch.equal(rng.uniform(keys[1:2], 64), noise[1:2])
    assert noise.min() >= 0 and noise.max() < 1


def test_noise_is_uniform_and_streams_are_uncorrelated():
    noise = rng.uniform(torch.arange(4000), 50).numpy()
    assert abs(noise.mean() - 0.5) < 0.005 and abs(noise.var() - 1 / 12) < 0.002
    histogram = np.histogram(noise, bins=10, range=(0, 1))[0] / noise.size
    assert np.abs(histogram - 0.1).max() < 0.005
    assert abs(np.corrcoef(noise[:, 0], noise[:, 1])[0, 1]) < 0.05
    assert abs(np.corrcoef(noise[:-1, 0], noise[1:, 0])[0, 1]) < 0.05


def test_epoch_keys_differ_across_epochs_and_seeds():
    records = np.arange(100)
    a, b, c = rng.epoch_keys(0, 0, records), rng.epoch_keys(0, 1, records), rng.epoch_keys(1, 0, records)
    assert len(set(a)) == 100 and not set(a) & set(b) and not set(a) & set(c)
    assert np.array_equal(a, rng.epoch_keys(0, 0, records))


def test_masks_follow_the_keys():
    keys = torch.arange(10)
    assert torch.equal(random_keep_ids(keys, 20, 5)[3:6], random_keep_ids(keys[3:6], 20, 5))
