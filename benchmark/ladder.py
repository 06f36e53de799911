"""Ablation ladders: the variants that answer "what does this method's key idea contribute?".

``--methods ladder:lamae`` runs LAMAE's ladder (``validate ladder:lamae`` checks it): LAMAE and
five variants, each removing one thing, all at the same pretraining FLOPs (the presets' budget)
and evaluated alike; the leaderboard puts them in one table with paired tests against LAMAE
(:func:`benchmark.report.leaderboard.ladder_table`). The rungs are ordinary method variants
(:mod:`benchmark.method.variant`), so each has its own results, row, signature and ``validate``.

A rung's settings are fixed, except a width chosen per preset so that the rung's encoder
parameters match the anchor's (:func:`benchmark.build.ladder_methods`): ``ind_p``'s twelve
private encoders are 6-10x LAMAE's encoder at the preset width (docs/methods.md, "Sizes").
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
    """One row of a ladder: a method variant and what comparing it with the anchor answers."""

    base: str
    settings: tuple[tuple[str, str], ...]  # canonical: sorted, values as typed
    label: str  # what it is, in a few words
    question: str  # what its difference to the anchor measures
    #: a field chosen per preset so that encoder parameters match the anchor's (None: fixed rung)
    matched_field: str | None = None

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
        if self.matched_field is None:
            return variant.settings == self.settings
        rest = tuple((k, v) for k, v in variant.settings if k != self.matched_field)
        return rest == self.settings and len(rest) == len(variant.settings) - 1


LADDERS: dict[str, tuple[Rung, ...]] = {
    "lamae": (
        Rung(
            "lamae",
            (),
            "LAMAE, lead-level LA (α_LA 0.5)",
            "the anchor: every other rung is tested against it",
        ),
        Rung(
            "lamae",
            (("la_tokens", "patch"),),
            "LAMAE, token-level LA (the loss equation's reading)",
            "attending over every lead×patch latent instead of one latent per lead",
        ),
        Rung(
            "lamae",
            (("la_mask_ratio", "0"),),
            "LAMAE without LA masking (α_LA = 0)",
            "the lead-imputation task that LA masking poses",
        ),
        Rung(
            "lamae",
            (("la_cross_lead", "false"), ("la_mask_ratio", "0"), ("readout", "la_mean")),
            "independent leads with LAMAE's modules (LA confined to each lead)",
            "cross-lead attention itself: same encoder, LA blocks, decoder context, parameters and FLOPs",
        ),
        Rung(
            "lamae",
            (("la_depth", "0"), ("la_mask_ratio", "0"), ("readout", "encoder_mean")),
            "LAMAE with LA removed (same encoder and decoder)",
            "latent attention as a whole: its blocks, cross-lead mixing and CLS readout",
        ),
        Rung(
            "ind_p",
            (),
            "Ind_P, width matched to LAMAE's encoder parameters (±15 %)",
            "the paper's independent-lead baseline without its 6-10x parameter advantage",
            matched_field="dim",
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
