"""Masking noise keyed by sample (public re-export of :mod:`benchmark.rng`)."""

from benchmark.rng import epoch_keys, fold_in, mix, split, uniform

__all__ = ["epoch_keys", "fold_in", "mix", "split", "uniform"]
