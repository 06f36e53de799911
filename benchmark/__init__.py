"""ecgbench: a benchmark suite for self-supervised ECG pretraining methods."""

__version__ = "0.1.0"
