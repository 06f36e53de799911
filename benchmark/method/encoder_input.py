"""A record or an array as an exported encoder's input: ``ecgbench.read_record`` and
``ecgbench.prepare_input``.

An exported encoder (``python -m benchmark export-encoder``, read by ``ecgbench.load_encoder``)
takes (batch, 12, window) in mV at its rate, leads in the suite's order, missing leads zero with
their ``lead_mask`` False — what the benchmark fed it. These functions make exactly that from what
a user has, with the preparation's own code (benchmark/data/conditioning.py ``condition``):

* leads matched **by name**, case and spaces ignored (``AVR`` is ``aVR``, LUDB's ``avr`` too),
  never by position; an unknown name is ignored, a lead absent or named twice is masked;
* NaN gaps up to ``max_gap_s`` interpolated, longer ones and flat leads masked;
* **units checked**: signals are converted to mV from ``units`` and the record's amplitude must
  lie within the preparation's plausible range (0.05-20 mV by default), which catches µV given as
  mV and ADC counts without a gain;
* resampled to the encoder's rate with the preparation's polyphase filter, band-passed and
  standardised as the encoder's training data were (its config's ``preprocessing``), stored at
  float16 as the prepared cache stores them;
* the **window the benchmark evaluates**: the centred ``window`` samples of the record.

The heart-rate plausibility check of preparation is skipped [choice]: it only flags, and needs
neurokit2's ~1 s import. Every repair is listed in ``PreparedInput.notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import ConfigError, from_jsonable
from benchmark.data.conditioning import Preprocessing, condition
from benchmark.data.contract import LEADS, DataError
from benchmark.data.readers import RawRecord, RecordError, WfdbReader

#: mV per unit of the signals given to :func:`prepare_input`
MV_PER_UNIT = {"mV": 1.0, "uV": 1e-3, "µV": 1e-3, "V": 1e3}


@dataclass
class PreparedInput:
    """An encoder's input: ``signals`` (batch, 12, window) float32 in mV at ``fs``, leads in the
    suite's order; ``lead_mask`` (batch, 12) bool; ``notes`` what preparation did per record.
    ``encoder(prepared)`` reads the rate and the mask from it."""

    signals: torch.Tensor
    lead_mask: torch.Tensor
    fs: float
    notes: list[list[str]] = field(default_factory=list)

    def to(self, device: str | torch.device) -> PreparedInput:
        return replace(self, signals=self.signals.to(device), lead_mask=self.lead_mask.to(device))


def _encoder_input(encoder: Any) -> tuple[int, int, Preprocessing]:
    """(rate, window, preprocessing) of an exported encoder (``load_encoder``'s result)."""
    declared = (
        getattr(encoder, "config", {}).get("input") if isinstance(getattr(encoder, "config", None), dict) else None
    )
    if not declared:
        raise DataError("encoder: give the encoder returned by ecgbench.load_encoder (it knows its input)")
    try:
        prep = from_jsonable(Preprocessing, declared.get("preprocessing") or {}, "preprocessing")
    except ConfigError as exc:
        raise DataError(f"the encoder's config.json: {exc}") from None
    checks = replace(prep.checks, heart_rate_bpm=())
    return int(declared["fs"]), int(declared["window"]), replace(prep, duration_s=None, checks=checks)


def _prepare(
    raw: RawRecord, fs: int, window: int, prep: Preprocessing, what: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    duration_s = raw.signal.shape[1] / raw.fs
    if round(duration_s * fs) < window:
        raise DataError(
            f"{what} is {duration_s:g} s long; the encoder takes {window / fs:g} s windows ({window} samples at "
            f"{fs} Hz): give a longer record"
        )
    try:
        x, mask, _, notes = condition(raw, fs, duration_s, prep)
    except RecordError as exc:
        hint = " (signals in another unit? give units=)" if "implausible amplitude" in str(exc) else ""
        raise DataError(f"{what}: {exc}{hint}") from None
    start = (x.shape[1] - window) // 2  # the benchmark's evaluation window: centred
    return x[:, start : start + window].astype(np.float32), mask, [detail for _, detail, _ in notes]


def _prepared(rows: list[tuple[np.ndarray, np.ndarray, list[str]]], fs: int) -> PreparedInput:
    return PreparedInput(
        torch.from_numpy(np.stack([x for x, _, _ in rows])),
        torch.from_numpy(np.stack([mask for _, mask, _ in rows])),
        float(fs),
        [notes for _, _, notes in rows],
    )


def prepare_input(signals: Any, fs: float, lead_names: list[str], encoder: Any, units: str = "mV") -> PreparedInput:
    """``signals`` (leads, samples) or (batch, leads, samples) at ``fs`` Hz in ``units``, its
    channels named ``lead_names`` -> the encoder's input (module docstring)."""
    if units not in MV_PER_UNIT:
        raise DataError(f"units {units!r}: give one of {', '.join(MV_PER_UNIT)}")
    array = np.asarray(signals.detach().cpu() if isinstance(signals, torch.Tensor) else signals, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1] != len(lead_names):
        raise DataError(
            f"signals of shape {np.shape(signals)} with {len(lead_names)} lead names: give (leads, samples) or "
            f"(batch, leads, samples) with one name per lead (e.g. {', '.join(LEADS[:3])}, ...)"
        )
    if not fs or fs <= 0:
        raise DataError(f"fs must be the signals' sampling rate in Hz, got {fs!r}")
    target_fs, window, prep = _encoder_input(encoder)
    rows = [
        _prepare(
            RawRecord(record * MV_PER_UNIT[units], float(fs), [str(n) for n in lead_names], 0),
            target_fs,
            window,
            prep,
            f"record {i}" if len(array) > 1 else "the record",
        )
        for i, record in enumerate(array)
    ]
    return _prepared(rows, target_fs)


def read_record(path: str | Path, encoder: Any) -> PreparedInput:
    """A WFDB record (``.hea`` + ``.dat``, or a PhysioNet/CinC ``.mat``), by its path with or
    without ``.hea``, as the encoder's input of one record (module docstring)."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".hea", ".dat", ".mat") else path
    if not base.with_suffix(".hea").is_file():
        raise DataError(f"{base.with_suffix('.hea')} does not exist; give the path of a WFDB record (its .hea file)")
    try:
        raw = WfdbReader(str(base.parent), [base.name]).read(0)
    except RecordError as exc:
        raise DataError(f"{base}: {exc}") from None
    target_fs, window, prep = _encoder_input(encoder)
    return _prepared([_prepare(raw, target_fs, window, prep, str(base))], target_fs)
