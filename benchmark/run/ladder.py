"""Ablation ladders: the variants that answer "what does this method's key idea contribute?".

``--methods ladder:lamae`` runs LAMAE's ladder (``validate ladder:lamae`` checks it): LAMAE as its
paper writes it and a chain of variants in which **each rung differs from its neighbour in one
factor** (the masking of LA's input, the readout, attention across leads, LA's blocks, the skip
path, the granularity of LA), all at the same pretraining FLOPs (the presets' budget) and
evaluated alike. The leaderboard tests each rung against its neighbour, so every difference
measures one change (:func:`benchmark.report.leaderboard.ladder_table`). The rungs are ordinary
method variants (:mod:`benchmark.method.variant`), so each has its own results, row, signature
and ``validate``.

A rung's settings are fixed, except a width chosen per preset so that the rung's encoder
parameters match the anchor's (:func:`benchmark.run.build.ladder_methods`): ``ind_p``'s twelve
private encoders are 6-10x LAMAE's encoder at the preset width (docs/methods.md, "Sizes"); the
matched ``ind_p`` also reads out features as wide as the anchor's (``feature_dim``, a fixed
projection counted in its parameters), so that every probe sees features of one dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.config import ConfigError
from benchmark.method.variant import MethodVariant, parse_variant

LADDER_PREFIX = "ladder:"
#: a matched rung's encoder parameters may differ from the anchor's by at most this fraction
PARAMETER_TOLERANCE = 0.15


@dataclass(frozen=True)
class Rung:
    """One row of a ladder: a method variant, the rung it differs from in one factor, and what
    comparing the two answers."""

    base: str
    settings: tuple[tuple[str, str], ...]  # canonical: sorted, values as typed
    label: str  # what it is, in a few words
    question: str  # what its difference to its neighbour measures
    #: index of the rung it is tested against (None: the anchor)
    neighbour: int | None = 0
    #: a field chosen per preset so that encoder parameters match the anchor's (None: fixed rung)
    matched_field: str | None = None
    #: whether its ``feature_dim`` is set to the anchor's feature width at each preset
    match_features: bool = False

    @property
    def fixed(self) -> MethodVariant:
        return MethodVariant(self.base, self.settings)

    def matches(self, name: str) -> bool:
        """Whether a (canonical) method name is this rung at some preset."""
        try:
            variant = parse_variant(name)
        except ValueError:
            return False
        if variant.base != self.base:
            return False
        chosen = {self.matched_field} if self.matched_field else set()
        if self.match_features:
            chosen.add("feature_dim")
        rest = tuple((k, v) for k, v in variant.settings if k not in chosen)
        return rest == self.settings and len(rest) == len(variant.settings) - len(chosen)


LADDERS: dict[str, tuple[Rung, ...]] = {
    "lamae": (
        Rung(
            "lamae",
            (),
            "LAMAE as the paper writes it (token-level LA, α_LA 0.25, LA's CLS readout)",
            "the anchor",
            neighbour=None,
        ),
        Rung(
            "lamae",
            (("la_mask_ratio", "0"),),
            "α_LA = 0 (no masking of LA's input)",
            "masking LA's input (α_LA 0.25 vs 0)",
            neighbour=0,
        ),
        Rung(
            "lamae",
            (("la_mask_ratio", "0"), ("readout", "la_mean")),
            "α_LA 0, read out as the mean of LA's outputs",
            "the readout: LA's CLS token vs the mean of LA's outputs",
            neighbour=1,
        ),
        Rung(
            "lamae",
            (("la_cross_lead", "false"), ("la_mask_ratio", "0"), ("readout", "la_mean")),
            "LA confined to each lead (α_LA 0, mean readout)",
            "attention across leads: the same blocks, parameters and FLOPs, each latent attending within its lead",
            neighbour=2,
        ),
        Rung(
            "lamae",
            (("la_cross_lead", "false"), ("la_depth", "0"), ("la_mask_ratio", "0"), ("readout", "la_mean")),
            "LA removed (α_LA 0, mean readout)",
            "LA's blocks within a lead vs none (each lead's decoder reads its normalised encoder latents)",
            neighbour=3,
        ),
        Rung(
            "lamae",
            (("la_skip", "true"),),
            "token-level LA with a skip path",
            "a lead's decoder also reading its own encoder latents (a path around LA)",
            neighbour=0,
        ),
        Rung(
            "lamae",
            (("la_skip", "true"), ("la_tokens", "lead")),
            "lead-level LA (one latent per lead; the suite's earlier default)",
            "granularity: one latent per lead, M_LA hiding whole leads, vs every lead×patch latent (both with "
            "a skip path)",
            neighbour=5,
        ),
        Rung(
            "ind_p",
            (),
            "Ind_P, encoder parameters matched to LAMAE's (±15 %), features as wide",
            "the paper's independent-lead baseline without its 6-10x parameter advantage, against the anchor",
            neighbour=0,
            matched_field="dim",
            match_features=True,
        ),
    ),
}


def ladder_rungs(text: str) -> tuple[str, tuple[Rung, ...]]:
    """``ladder:lamae`` -> ("lamae", its rungs); an unknown ladder fails with the valid ones."""
    anchor = text.removeprefix(LADDER_PREFIX)
    if anchor not in LADDERS:
        valid = ", ".join(LADDER_PREFIX + name for name in LADDERS)
        raise ConfigError(f"unknown ablation ladder {text!r}; ladders: {valid}")
    return anchor, LADDERS[anchor]


def rung_of(anchor: str, name: str) -> Rung | None:
    """The rung of ``anchor``'s ladder that ``name`` is, if any."""
    return next((rung for rung in LADDERS.get(anchor, ()) if rung.matches(name)), None)
