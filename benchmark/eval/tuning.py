"""Choosing a downstream hyper-parameter on validation, the same way for every method.

Every protocol that tunes something (the linear probe's L2 strength, fine-tuning's learning
rate) tries each value of a grid that its preset freezes for all methods, scores each on the
validation split's macro AUROC and keeps the best (the first of equal scores). Only training and
validation records enter the choice; the test split is scored once, with the chosen value. The
grid, every value's validation score and the choice go into the result, and the leaderboard
shows the choice beside the score.

Grids bracket their choice (issue 21) [choice]: a value chosen at the edge of the values tried
says only that the optimum lies at or beyond that edge, so the search adds one grid step in
that direction — the ratio of the edge value to its neighbour, so a geometric grid stays
geometric — and tries again, until the choice is interior or a stated limit is hit:
``max_extensions`` added values, a value that cannot be stepped from (0, the lower limit of an
L2 strength; a grid of one value, which has no step), or no scorable value at all. A value whose
training diverged (an unscorable NaN) beyond the choice brackets it like a lower score. The
values added, the edge a choice still sits on and the limit that stopped the search are recorded
(:meth:`Tuning.record`), and the leaderboard marks edge choices.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

#: ``Tuning.edge`` values: the choice is the lowest, the highest or the only value tried
EDGES = ("low", "high", "only")


@dataclass
class Tuning:
    """One hyper-parameter's grid search on validation, extended at an edge choice."""

    param: str  # e.g. "l2", "base_lr"
    max_extensions: int = 0  # values the search may add beyond the grid to bracket the choice
    grid: list[float] = field(default_factory=list)  # every value tried, in order (extensions last)
    val_macro_auroc: list[float] = field(default_factory=list)
    extended: list[float] = field(default_factory=list)  # the values added beyond the initial grid
    limit: str | None = None  # why the search stopped with the choice at an edge

    def __post_init__(self):
        if self.max_extensions < 0:
            raise ValueError(f"max_extensions must be >= 0, got {self.max_extensions}")

    def add(self, value: float, val_auroc: float) -> bool:
        """Record one grid point; True if it is the best so far (a tie keeps the earlier one, an
        unscorable point — NaN — is never the best)."""
        best = max(map(score, self.val_macro_auroc), default=-np.inf)
        self.grid.append(float(value))
        self.val_macro_auroc.append(float(val_auroc))
        return score(val_auroc) > best

    def values(self, grid: Sequence[float]) -> Iterator[float]:
        """The values to try: ``grid``, then one step beyond the edge the choice sits on while
        it sits on one (module docstring). Call :meth:`add` with each value's score before
        asking for the next."""
        yield from grid
        while (value := self.next_value()) is not None:
            self.extended.append(value)
            yield value

    def next_value(self) -> float | None:
        """One grid step beyond the edge the current choice sits on, or None (interior, or a
        limit reached: ``limit`` says which)."""
        edge = self.edge
        if edge is None:
            return None
        if not np.isfinite(max(map(score, self.val_macro_auroc))):
            self.limit = "no value could be scored"
            return None
        if edge == "only":
            self.limit = "a grid of one value has no step to extend by"
            return None
        if len(self.extended) >= self.max_extensions:
            self.limit = f"{self.max_extensions} extension{'s' * (self.max_extensions != 1)} (the most allowed)"
            return None
        tried = sorted(set(self.grid))
        end, neighbour = (tried[0], tried[1]) if edge == "low" else (tried[-1], tried[-2])
        if end <= 0 or neighbour <= 0:
            self.limit = f"{self.param} {min(end, neighbour):g} cannot be stepped from"
            return None
        return float(
            f"{end * end / neighbour:.12g}"
        )  # no float noise in the recorded values: 0.01, not 0.010000000000000002

    @property
    def best_index(self) -> int:
        if not self.grid:
            raise ValueError(f"no value of {self.param} was tried")
        return int(np.argmax([score(v) for v in self.val_macro_auroc]))  # the first maximum

    @property
    def chosen(self) -> float:
        return self.grid[self.best_index]

    @property
    def edge(self) -> str | None:
        """Where the choice sits among the values tried: "low", "high", "only" (the one value
        tried) or None (interior: a tried value on either side)."""
        if not self.grid:
            return None
        low, high = min(self.grid), max(self.grid)
        if low == high:
            return "only"
        return "low" if self.chosen == low else "high" if self.chosen == high else None

    def record(self) -> dict:
        edge = self.edge
        return {
            "param": self.param,
            "grid": self.grid,
            "val_macro_auroc": self.val_macro_auroc,
            "chosen": self.chosen,
            "selected_on": "val",
            "extended": self.extended,
            "max_extensions": self.max_extensions,
            "edge": edge,
            "limit": self.limit if edge is not None else None,
        }


def score(val_auroc: float) -> float:
    """A comparable validation score: an unscorable point (NaN) ranks below every other."""
    return -np.inf if np.isnan(val_auroc) else float(val_auroc)
