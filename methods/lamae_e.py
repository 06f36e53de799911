"""LAMAE_E: the LAMAE variant that the LAMAE paper's tables report beside LAMAE.

Source: "From Leads to Latents" (arXiv 2603.26475), Tables 1, 3 and 4 [paper]. The paper never
defines the subscript E, so both readings are available as config (``reading``) [choice]:

* ``encoders`` (default): the same pretraining as LAMAE (``lamae``, unchanged), but the
  downstream representation comes from the **E**ncoders alone — the mean of the present leads'
  encoder latents (their CLS tokens), LA discarded. It isolates what LA pretraining taught the
  per-lead encoder E_phi. LA, its CLS and the lead embeddings become pretraining-only (not
  counted as encoder parameters, frozen in fine-tuning).
* ``alpha_la_0``: LAMAE pretrained with encoder masking only (alpha_LA = la_mask_ratio = 0, so
  no lead is ever hidden from LA), read out through the LA CLS token as LAMAE.

``reading`` sets ``readout`` (and, for ``alpha_la_0``, ``la_mask_ratio``); every other field
and [choice] is LAMAE's (methods/lamae.py). With the default reading, pretraining is identical
to ``lamae``'s (same config and seed give the same weights); the runner pretrains it anyway.

Lead masks as LAMAE: missing leads are neither encoded nor averaged; any subset works.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecgbench import METHODS
from ecgbench_methods.lamae import LAMAE, LAMAEConfig

READINGS = {"encoders": "encoder_mean", "alpha_la_0": "la_cls"}  # reading -> readout


@dataclass
class LAMAEEConfig(LAMAEConfig):
    reading: str = "encoders"
    readout: str = "encoder_mean"

    def __post_init__(self):
        if self.reading not in READINGS:
            raise ValueError(f"reading must be one of {', '.join(READINGS)}, got {self.reading!r}")
        self.readout = READINGS[self.reading]
        if self.reading == "alpha_la_0":
            self.la_mask_ratio = 0.0
        super().__post_init__()


@METHODS.register("lamae_e")
class LAMAEE(LAMAE):
    summary = "LAMAE_E: LAMAE read out from its per-lead encoders alone (reading=alpha_la_0: no LA masking)"
    Config = LAMAEEConfig
