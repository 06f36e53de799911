"""Reduced leads: the same pretrained encoders evaluated with only some leads present — the
setting a set-based model such as LAMAE is built for (docs/design.md; none of the anchors reports
it). The named protocols run with the subset on every split (the probe or fine-tuned model is
fit to the leads it will see), the other leads masked and zeroed (``WindowDataset``).

Lead sets: ``all`` (the 12 leads: the plain protocol), ``limb`` (I, II, III, aVR, aVL, aVF),
``precordial`` (V1-V6), or leads joined by ``+`` (``I+II``, ``I``, ``V1+V2+V5``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.data.contract import LEADS, LIMB_LEADS, ECGArrays
from benchmark.eval.sweep import PLAIN, Sweep, Variant
from benchmark.registry import PROTOCOLS

NAMED_SETS = {"all": LEADS, "limb": LIMB_LEADS, "precordial": LEADS[6:]}


def parse_lead_set(text: str) -> tuple[str, ...]:
    """``limb`` -> the six limb leads; ``I+II`` -> ("I", "II") in the fixed lead order."""
    if text in NAMED_SETS:
        return NAMED_SETS[text]
    by_lower = {lead.lower(): lead for lead in LEADS}
    names = [part.strip() for part in text.split("+")]
    unknown = [n for n in names if n.lower() not in by_lower]
    if not text or unknown:
        raise ValueError(
            f"lead set {text!r}: unknown lead(s) {unknown}; use {', '.join(NAMED_SETS)} or leads "
            f"joined by '+' from {', '.join(LEADS)}"
        )
    chosen = {by_lower[n.lower()] for n in names}
    return tuple(lead for lead in LEADS if lead in chosen)


@dataclass
class ReducedLeadsConfig:
    lead_sets: tuple[str, ...] = ("all", "limb", "I+II", "I")
    protocols: tuple[str, ...] = ("linear",)

    def __post_init__(self):
        if not self.lead_sets or not self.protocols:
            raise ValueError("reduced_leads needs at least one lead set and one protocol")
        for lead_set in self.lead_sets:
            parse_lead_set(lead_set)


@PROTOCOLS.register("reduced_leads")
class ReducedLeads(Sweep):
    summary = "Sweep: evaluate with lead subsets (all 12, 6 limb, I+II, I, or user-given sets)"
    Config = ReducedLeadsConfig
    title = "Reduced leads"
    axis = "leads present"

    @classmethod
    def point(cls, variant: dict, details: dict) -> tuple[str, float]:
        """The lead set's name (the plain protocol: "all"), placed by fewer leads further right."""
        leads = variant.get("params", {}).get("leads")
        return (variant["name"].removeprefix("leads-") if leads else "all"), -(len(leads) if leads else len(LEADS))

    def variants(self, arrays: ECGArrays) -> list[Variant]:
        variants = []
        for lead_set in self.config.lead_sets:
            leads = parse_lead_set(lead_set)
            if leads == LEADS:
                variants.append(PLAIN)
                continue
            name = lead_set if lead_set in NAMED_SETS else "+".join(leads)
            variants.append(
                Variant(
                    name=f"leads-{name}",
                    sweep=self.name,
                    params={"leads": list(leads), "n_leads": len(leads)},
                    lead_subset=np.isin(LEADS, leads),
                )
            )
        return variants  # duplicates (two spellings of one set) are merged by sweep.expand
