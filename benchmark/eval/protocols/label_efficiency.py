"""Label efficiency: how a method's downstream score grows with the number of labelled records
(the LAMAE paper's Fig. 2). Each training-set size is drawn several times (subset seeds, not
one fixed subset) by the stratified scheme of :mod:`benchmark.eval.subsets`, so every label keeps
positives; validation and test splits stay whole (model selection is not starved, the test
is the same for every point). Runs the named protocols (linear probe, fine-tuning) on each.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.data.contract import ECGArrays
from benchmark.eval.subsets import is_full, n_records, parse_train_size, stratified_subset
from benchmark.eval.sweep import PLAIN, Sweep, Variant
from benchmark.registry import PROTOCOLS


@dataclass
class LabelEfficiencyConfig:
    sizes: tuple[str, ...] = ("1%", "5%", "10%", "25%", "50%", "100%")  # fractions or record counts
    subset_seeds: int = 3  # subsets drawn per size (each with every training seed)
    protocols: tuple[str, ...] = ("linear", "finetune")

    def __post_init__(self):
        if not self.sizes or not self.protocols:
            raise ValueError("label_efficiency needs at least one size and one protocol")
        for size in self.sizes:
            parse_train_size(size)
        if self.subset_seeds < 1:
            raise ValueError(f"subset_seeds must be >= 1, got {self.subset_seeds}")


def size_tag(size: str) -> str:
    value, is_fraction = parse_train_size(size)
    return f"{value * 100:g}pct" if is_fraction else f"{int(value)}"


@PROTOCOLS.register("label_efficiency")
class LabelEfficiency(Sweep):
    summary = "Sweep: training-set sizes x subset seeds (stratified, every label keeps positives)"
    Config = LabelEfficiencyConfig
    title = "Label efficiency"
    axis = "training records (log scale)"
    scale = "log"
    repeats = "subset seeds"

    @classmethod
    def point(cls, variant: dict, details: dict) -> tuple[str, float]:
        """The requested size (the plain protocol: "100%") at the number of training records; a
        diverged cell has no details, its variant knows the number."""
        n = details.get("n_train") or variant.get("n_train", 0)
        return variant.get("params", {}).get("train_size", "100%"), n

    @classmethod
    def column(cls, label: str, position: float) -> str:
        return f"{label} (n={position:.0f})"

    def variants(self, arrays: ECGArrays) -> list[Variant]:
        train = arrays.splits["train"]
        labels = arrays.labels[train]
        variants = []
        for size in self.config.sizes:
            if is_full(size, len(train)):
                variants.append(PLAIN)
                continue
            n = n_records(size, len(train))
            for subset_seed in range(self.config.subset_seeds):
                positions = stratified_subset(labels, n, subset_seed)
                variants.append(
                    Variant(
                        name=f"n{size_tag(size)}-s{subset_seed}",
                        sweep=self.name,
                        params={"train_size": size, "subset_seed": subset_seed, "requested_n_train": n},
                        train_indices=train[positions],
                    )
                )
        return variants  # duplicates (two spellings of one set) are merged by sweep.expand
