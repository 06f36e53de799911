"""Plausibility checks of preparation on real PTB-XL signals, each damaged in one way: a gain off
by a factor excludes the record, a lead copied or negated is masked with its twin, clipping runs are
flagged or masked, an implausible heart rate is flagged; every finding is a report note."""

from __future__ import annotations

import numpy as np
import pytest
from ecg_fixtures import rdsamp_leads, shared_ptbxl

from benchmark.config import ConfigError, apply_overrides
from benchmark.data.conditioning import Plausibility, Preprocessing, condition
from benchmark.data.contract import LEADS
from benchmark.data.readers import RawRecord, RecordError

LEAD = {name: k for k, name in enumerate(LEADS)}


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    """Record 1 of PTB-XL at 500 Hz, (12, 5000) mV in LEADS order."""
    return rdsamp_leads(shared_ptbxl() / "records500/00000/00001_hr")


def prepare(x: np.ndarray, fs: float = 500.0, **checks):
    raw = RawRecord(x, fs, list(LEADS), 0)
    _, mask, _, notes = condition(raw, 100, 10.0, Preprocessing(checks=Plausibility(**checks)))
    return mask, notes


def test_the_real_record_passes_every_check(signal):
    mask, notes = prepare(signal)
    assert mask.all() and notes == []


@pytest.mark.parametrize("factor", [1000.0, 0.001])
def test_a_gain_off_by_a_factor_excludes_the_record_and_names_the_cause(signal, factor):
    with pytest.raises(RecordError, match=r"^implausible amplitude.*gain or unit is probably wrong"):
        prepare(factor * signal)


def test_one_implausible_lead_is_masked(signal):
    damaged = signal.copy()
    damaged[LEAD["V3"]] *= 1000.0  # this lead's gain written in uV
    mask, notes = prepare(damaged)
    assert mask.sum() == 11 and not mask[LEAD["V3"]]
    assert [(action, detail.split(":")[0]) for action, detail, _ in notes] == [("lead masked", "V3")]


@pytest.mark.parametrize("sign, relation", [(1.0, "copy"), (-1.0, "negative")])
def test_a_lead_copied_or_negated_masks_both_twins(signal, sign, relation):
    damaged = signal.copy()
    damaged[LEAD["V2"]] = sign * damaged[LEAD["V1"]]
    mask, notes = prepare(damaged)
    assert not mask[LEAD["V1"]] and not mask[LEAD["V2"]] and mask.sum() == 10
    assert notes == [
        (
            "lead masked",
            f"V1: V2 (exact {relation}) of it (an export or wiring fault; which lead is genuine is unknown): "
            f"all 2 masked",
            0,
        )
    ]


def test_many_copies_make_one_note_per_group(signal):
    damaged = signal.copy()
    damaged[LEAD["V2"] :] = damaged[LEAD["V1"]]  # V1-V6 one signal
    damaged[LEAD["aVL"]] = -damaged[LEAD["I"]]
    mask, notes = prepare(damaged)
    assert mask.sum() == 4 and [detail.split(":")[0] for _, detail, _ in notes] == ["I", "V1"]
    assert "V2 (exact copy), V3 (exact copy), V4 (exact copy), V5 (exact copy), V6 (exact copy)" in notes[1][1]


def test_clipping_runs_are_flagged_and_long_ones_mask_the_lead(signal):
    damaged = signal.copy()
    lead = damaged[LEAD["II"]]
    rail = np.percentile(lead, 99.9)
    lead[1000:1040] = rail + 0.5  # one 80 ms run at the maximum: flagged
    mask, notes = prepare(damaged)
    assert mask.all()
    assert [(a, d.split(":")[0]) for a, d, _ in notes] == [("flagged", "II")] and "2.00 s" in notes[0][1]
    damaged[LEAD["II"]] = np.minimum(signal[LEAD["II"]], np.median(signal[LEAD["II"]]))  # rail at the median
    mask, notes = prepare(damaged)
    assert not mask[LEAD["II"]] and any("clip_max_fraction" in detail for _, detail, _ in notes)


def test_an_implausible_heart_rate_is_flagged_not_excluded(signal):
    arrest = signal.copy()
    arrest[:, 700:] = arrest[:, 700:701]  # one beat, then the baseline: no rhythm to measure
    mask, notes = prepare(arrest)
    assert mask.all()
    assert [action for action, _, _ in notes] == ["flagged"] and "heart rate" in notes[0][1]
    mask, notes = prepare(arrest, heart_rate_bpm=())  # the check can be switched off
    assert notes == []
    mask, notes = prepare(signal, heart_rate_bpm=(20.0, 50.0))  # record 1 beats at 64 bpm
    assert [action for action, _, _ in notes] == ["flagged"] and "implausible heart rate 64 bpm" in notes[0][1]


def test_thresholds_are_settings_validated_like_every_other(signal):
    prep = apply_overrides(Preprocessing(), {"checks.amplitude_mv": "0.05,2"}, "ptbxl.preprocess")
    assert prep.checks.amplitude_mv == (0.05, 2.0)
    with pytest.raises(ConfigError, match="amplitude_mv must be"):
        apply_overrides(Preprocessing(), {"checks.amplitude_mv": "3,2"}, "ptbxl.preprocess")
    with pytest.raises(RecordError):  # record 1's amplitude is above 0.05-0.1 mV
        prepare(signal, amplitude_mv=(0.05, 0.1))
