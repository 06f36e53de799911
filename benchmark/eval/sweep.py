"""Sweeps: protocols run many times over variants of the evaluation data.

A sweep (label efficiency, reduced leads) is registered in ``PROTOCOLS`` like a protocol but
runs no model itself: it expands into :class:`Evaluation` s of ordinary protocols (linear
probe, fine-tuning), each with a :class:`Variant` that narrows the training records
(``CellContext.train_indices``) or the leads (``CellContext.lead_subset``). A variant is part
of the cell (``Cell.variant``, its name) and of the cell's signature (``Variant.identity``), so
every point of a sweep is its own resumable, never-recomputed cell. A variant equal to the
plain protocol (100 % of the training set, all 12 leads) *is* the plain cell.

A sweep also describes how the leaderboard shows it (its section's ``title``, the curve's
``axis`` label and ``scale``, what its points repeat over, and where a recorded result lies on
the axis: :meth:`Sweep.point`), so the leaderboard draws any sweep, a plugin's too, without
knowing it by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from benchmark.data.contract import ECGArrays
from benchmark.eval.protocol import Protocol
from benchmark.registry import PROTOCOLS


@dataclass(frozen=True)
class Variant:
    name: str = ""  # "" = the plain protocol; else a file-name-safe tag, e.g. "n10pct-s1", "leads-I+II"
    sweep: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # what the sweep varied, e.g. train_size, subset_seed
    train_indices: np.ndarray | None = field(default=None, compare=False)
    lead_subset: np.ndarray | None = field(default=None, compare=False)  # (12,) bool

    @property
    def identity(self) -> dict | None:
        """What enters the cell signature (None for the plain protocol)."""
        if not self.name:
            return None
        identity: dict[str, Any] = {"name": self.name, "sweep": self.sweep, "params": self.params}
        if self.train_indices is not None:  # the actual records, so a changed subset is never reused
            identity["n_train"] = int(len(self.train_indices))
            identity["train_records"] = _digest(self.train_indices)
        return identity


def _digest(indices: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


PLAIN = Variant()


class Sweep:
    """Base class of sweep plugins (``@PROTOCOLS.register(name)``); ``Config`` must have a
    ``protocols`` field naming the protocols the sweep runs."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    kind: ClassVar[str] = "sweep"
    Config: ClassVar[type] = object
    #: the heading of the sweep's leaderboard section (empty: its registered name)
    title: ClassVar[str] = ""
    #: the label of its curve's x axis
    axis: ClassVar[str] = ""
    #: "log": points at their numeric position on a log axis; "categories": point labels, evenly
    #: spaced in the order of their positions
    scale: ClassVar[Literal["log", "categories"]] = "categories"
    #: what a point's results repeat over besides the training seeds (e.g. "subset seeds"), if anything
    repeats: ClassVar[str] = ""

    @classmethod
    def point(cls, variant: dict, details: dict) -> tuple[str, float]:
        """Where a result lies on the sweep's axis: (its point's label, its position), from the
        result's recorded variant (``Variant.identity``; empty for the plain protocol, which is a
        point of every sweep) and its details (empty for a diverged cell). Points sort by
        position; results of one label take the largest position recorded."""
        raise NotImplementedError

    @classmethod
    def column(cls, label: str, position: float) -> str:
        """The leaderboard table's column heading of a point."""
        return label

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(self.config.protocols)

    def variants(self, arrays: ECGArrays) -> list[Variant]:
        raise NotImplementedError


@dataclass(frozen=True)
class Evaluation:
    """One protocol under one variant: with a method and a seed, one cell."""

    protocol_name: str
    protocol: Protocol
    variant: Variant = PLAIN


def expand(requested: dict[str, Protocol | Sweep], base: dict[str, Protocol], arrays: ECGArrays) -> list[Evaluation]:
    """Evaluations of the requested protocols and sweeps, without duplicates, in request order.

    ``base`` supplies the protocols that sweeps name (built from the preset whether or not they
    were requested themselves).
    """
    evaluations: dict[tuple[str, str], Evaluation] = {}
    for name, item in requested.items():
        if isinstance(item, Sweep):
            variants = item.variants(arrays)
            for protocol_name in item.protocols:
                for variant in variants:
                    evaluations.setdefault(
                        (protocol_name, variant.name), Evaluation(protocol_name, base[protocol_name], variant)
                    )
        else:
            evaluations.setdefault((name, ""), Evaluation(name, item))
    return list(evaluations.values())


PROTOCOLS.declare_base(Sweep, "benchmark.eval.sweep.Sweep")
