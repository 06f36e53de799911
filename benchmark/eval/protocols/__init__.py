"""Evaluation protocols (linear probe, fine-tuning, ...), registered in PROTOCOLS."""
