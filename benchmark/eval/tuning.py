"""Choosing a downstream hyper-parameter on validation, the same way for every method.

Every protocol that tunes something (the linear probe's L2 strength, fine-tuning's learning
rate) tries each value of a grid that its preset freezes for all methods, scores each on the
validation split's macro AUROC and keeps the best (the first of equal scores). Only training and
validation records enter the choice; the test split is scored once, with the chosen value. The
grid, every value's validation score and the choice go into the result, and the leaderboard
shows the choice beside the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tuning:
    """One hyper-parameter's grid search on validation."""

    param: str  # e.g. "l2", "base_lr"
    grid: list[float] = field(default_factory=list)
    val_macro_auroc: list[float] = field(default_factory=list)

    def add(self, value: float, val_auroc: float) -> bool:
        """Record one grid point; True if it is the best so far (a tie keeps the earlier one, an
        unscorable point — NaN — is never the best)."""
        best = max(map(score, self.val_macro_auroc), default=-np.inf)
        self.grid.append(float(value))
        self.val_macro_auroc.append(float(val_auroc))
        return score(val_auroc) > best

    @property
    def best_index(self) -> int:
        if not self.grid:
            raise ValueError(f"no value of {self.param} was tried")
        return int(np.argmax([score(v) for v in self.val_macro_auroc]))  # the first maximum

    @property
    def chosen(self) -> float:
        return self.grid[self.best_index]

    def record(self) -> dict:
        return {
            "param": self.param,
            "grid": self.grid,
            "val_macro_auroc": self.val_macro_auroc,
            "chosen": self.chosen,
            "selected_on": "val",
        }


def score(val_auroc: float) -> float:
    """A comparable validation score: an unscorable point (NaN) ranks below every other."""
    return -np.inf if np.isnan(val_auroc) else float(val_auroc)
