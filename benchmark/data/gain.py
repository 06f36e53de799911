"""Gain and unit plausibility across a prepared dataset: amplitudes a factor off the dataset's
own, and limb leads that break Einthoven's and Goldberger's laws.

The per-record checks of preparation (:func:`benchmark.data.conditioning.check_plausibility`)
exclude a record whose amplitude is outside 0.05-20 mV: a gain off by 20x or more. A header gain
of 200 instead of 1000 (5x) leaves a typical record at 2.5 mV, inside that bound, and a gain
wrong on one lead only leaves the record's amplitude as it was. This check compares every
record with the rest of its dataset, once per prepared cache, and flags what it finds:

1. **record amplitude** (the median over its leads of each lead's 99th percentile of
   ``|x - median(x)|``, as in preparation) against the dataset's median: flagged at
   :data:`RECORD_FACTOR` times or more, or that fraction or less, with the factor;
2. **lead amplitude**: a lead's share of its record's amplitude against the dataset's median share
   for that lead: flagged at :data:`LEAD_FACTOR` times or more, with the factor (only upwards: a
   lead perpendicular to the heart's axis is small by nature);
3. **Einthoven's law** I + III = II and **Goldberger's** aVR + aVL + aVF = 0 where the three leads
   are present: the amplitude of ``I + III - II`` (or of the sum) above :data:`RELATION_TOLERANCE`
   of the three leads' median amplitude is flagged, naming the lead whose gain alone explains it
   (rescaling that lead brings the residual under :data:`RELATION_EXPLAINED`) and its factor
   against what the law implies, or saying that no single lead's gain does.

Why after preparation, on the prepared signals: the robust distribution is the whole dataset's,
and everything preparation does to a record is linear and equal across its leads (resampling,
band-pass, float16 rounding at 5e-4 relative), so both laws and the amplitude ratios survive it;
per-lead standardisation (``standardize=lead``) erases them (nothing is checked) and per-record
standardisation erases the record amplitude (laws and lead shares are still checked).

**Flags only** [choice]: the prepared arrays, the lead masks and the data's fingerprint are not
changed (a result's identity stays what it was), and which of two inconsistent leads is right is
often unknowable. Every flag is a row of the cache's ``report.csv`` (stage ``gain``, with the
record, the lead and the factor); ``gain.json`` beside it holds the thresholds and a summary per
source (the dataset, or a plugin's :attr:`~benchmark.data.readers.SignalSource.sources`: the
Challenge's databases); each load of a dataset with flags says how many in one log line.

Measured on the real records of ../shared/data prepared at 100 Hz (the ``cpu`` preset's rate;
``python -m benchmark prepare``), records flagged:

- PTB-XL, ``ptbxl/``: 2 of 500 (0.4 %), a V1 at 7.5x and at 10.4x its usual share (tall R or
  deep S waves, not a gain);
- PTB-XL, ``ptbxl1000/``: 9 of 998 (0.9 %), records at 3.03x, 3.06x and 0.33x the median
  amplitude and 6 precordial leads at 6.5-12x;
- CinC 2021, ``cinc2021/``: 9 of 339 (2.7 %), the Georgia records E00015 and E00018 at 0.10x the
  median (two of the three Georgia headers here that say 4880/mV where the others say 1000/mV),
  a Chapman record at 3.45x and 6 precordial leads at 6.1-9.3x;
- LUDB, ``ludb/``: 198 of 200 (99 %), by the laws, and rightly: its headers give each lead its
  own gain (record 1: 1716, 1206, 1229 /mV for I, II, III) while its digital samples satisfy
  I + III = II exactly, so the limb leads as read are scaled against one another by factors of
  about 0.5-2 (record 1: I at 0.71x, aVF at 1.97x what the laws imply; tests/test_gain.py).

No record of PTB-XL or CinC breaks either law (residuals at most 0.6 % and 1.1 % of the leads'
amplitude), so a flag by the laws is a true one at this tolerance.

Thresholds [choice], not settings: they only decide what is reported, and a dataset setting
would enter the data's fingerprint. ``RECORD_FACTOR`` 3x catches a 5x gain on every record above
0.6x the median (about 90 % of records); ``LEAD_FACTOR`` 6 keeps the precordial alarms under 1 %
of PTB-XL's records, at a price: a 5x gain on one precordial lead is caught in about a third of
the records only (its amplitude alone cannot tell it from real hypertrophy). A limb lead of
typical amplitude is caught by the laws once its gain is off by about 1.2x.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from benchmark.data.conditioning import lead_amplitude
from benchmark.data.contract import LEADS, SignalRows
from benchmark.data.readers import SignalSource
from benchmark.storage import DamagedFileError, atomic_write, read_json

log = logging.getLogger("benchmark")

RECORD_FACTOR = 3.0
LEAD_FACTOR = 6.0
RELATION_TOLERANCE = 0.1
RELATION_EXPLAINED = 0.05
THRESHOLDS = {
    "record_factor": RECORD_FACTOR,
    "lead_factor": LEAD_FACTOR,
    "relation_tolerance": RELATION_TOLERANCE,
    "relation_explained": RELATION_EXPLAINED,
}
SUMMARY = "gain.json"
STAGE = "gain"
FORMAT_VERSION = 1
CHUNK = 256  # records read at once from the memory-mapped signals (60 MB at 500 Hz, 10 s)

#: name, coefficients per lead: the sum is zero for correctly scaled limb leads
RELATIONS = (
    ("Einthoven's law I + III = II", {"I": 1.0, "III": 1.0, "II": -1.0}),
    ("Goldberger's aVR + aVL + aVF = 0", {"aVR": 1.0, "aVL": 1.0, "aVF": 1.0}),
)


@dataclass
class RelationFinding:
    """A record that breaks a relation: its residual, and the lead whose gain alone explains it."""

    relation: str
    residual: float
    lead: str | None = None
    factor: float | None = None

    def describe(self) -> str:
        broken = f"{self.relation} broken (residual {self.residual:.2f} of the leads' amplitude)"
        if self.lead is None:
            return f"{broken}; no single lead's gain explains it: the limb leads' gains disagree with one another"
        return f"{broken}; {self.lead}'s gain alone explains it: {self.lead} is {self.factor:.2f}x what the law implies"


@dataclass
class Measurements:
    """Per record: each lead's amplitude (NaN where masked) and the relations it breaks."""

    amplitude: np.ndarray  # (N, 12)
    findings: dict[int, list[RelationFinding]] = field(default_factory=dict)


def relation_findings(x: np.ndarray, present: np.ndarray) -> list[list[RelationFinding]]:
    """The relations each record of ``x`` (n, 12, T) breaks, where its leads are ``present``."""
    found: list[list[RelationFinding]] = [[] for _ in range(len(x))]
    for name, coefficients in RELATIONS:
        index = [LEADS.index(lead) for lead in coefficients]
        rows = np.flatnonzero(present[:, index].all(axis=1))
        if not len(rows):
            continue
        leads = x[rows][:, index]
        terms = (leads - np.median(leads, axis=-1, keepdims=True)) * np.array(list(coefficients.values()))[:, None]
        scale = np.maximum(np.median(lead_amplitude(terms), axis=1), 1e-6)
        residual = terms.sum(axis=1)
        broken = lead_amplitude(residual) / scale > RELATION_TOLERANCE
        for row in np.flatnonzero(broken):
            r, scaled = residual[row], terms[row]
            # rescaling lead k by s removes (1 - s) * term_k from the residual: least squares per lead
            shares = (scaled @ r) / np.maximum((scaled * scaled).sum(axis=1), 1e-12)
            left = lead_amplitude(r[None, :] - shares[:, None] * scaled) / scale[row]
            best = int(np.argmin(left))
            finding = RelationFinding(name, float(lead_amplitude(r) / scale[row]))
            if left[best] <= RELATION_EXPLAINED and shares[best] < 1:
                finding.lead, finding.factor = list(coefficients)[best], float(1 / (1 - shares[best]))
            found[rows[row]].append(finding)
    return found


def measure(signals: np.ndarray | SignalRows, lead_mask: np.ndarray, relations: bool = True) -> Measurements:
    """Lead amplitudes of every record and, with ``relations``, the laws each breaks (read in
    chunks from the memory map)."""
    amplitude = np.full(lead_mask.shape, np.nan)
    findings: dict[int, list[RelationFinding]] = {}
    for start in range(0, len(signals), CHUNK):
        x = np.asarray(signals[start : start + CHUNK], dtype=np.float32)
        mask = lead_mask[start : start + CHUNK]
        amplitude[start : start + len(x)] = np.where(mask, lead_amplitude(x), np.nan)
        if relations:
            for offset, record in enumerate(relation_findings(x, mask)):
                if record:
                    findings[start + offset] = record
    return Measurements(amplitude, findings)


def assess(
    measurements: Measurements, record_ids: np.ndarray, sources: np.ndarray, standardize: str, dataset: str
) -> tuple[list[tuple[str, str, str, str, int]], dict]:
    """The report rows of every flag and the summary (thresholds, per source)."""
    amplitude = measurements.amplitude
    usable = np.isfinite(amplitude).any(axis=1)
    checks = {
        "record_amplitude": standardize == "none",
        "lead_amplitude": standardize in ("none", "record"),
        "laws": standardize in ("none", "record"),
    }
    record_amplitude = np.full(len(amplitude), np.nan)
    record_amplitude[usable] = np.nanmedian(amplitude[usable], axis=1)
    median = float(np.median(record_amplitude[usable])) if usable.any() else float("nan")
    record_factor = record_amplitude / median
    share = amplitude / record_amplitude[:, None]
    usual_share = np.full(len(LEADS), np.nan)
    for k in range(len(LEADS)):
        present = np.isfinite(share[:, k])
        if present.any():
            usual_share[k] = np.median(share[present, k])
    lead_factor = share / usual_share[None, :]
    flags: dict[str, np.ndarray] = {name: np.zeros(len(amplitude), dtype=bool) for name in checks}
    rows = []
    for i in np.flatnonzero(usable).tolist():
        details = []
        if checks["record_amplitude"] and not 1 / RECORD_FACTOR < record_factor[i] < RECORD_FACTOR:
            flags["record_amplitude"][i] = True
            details.append(
                f"record amplitude {record_amplitude[i]:.3g} mV is {record_factor[i]:.2f}x the dataset's median "
                f"({median:.3g} mV; flagged beyond {RECORD_FACTOR:g}x either way): is the header's gain or unit off by "
                f"a factor?"
            )
        if checks["lead_amplitude"]:
            for k in np.flatnonzero(lead_factor[i] >= LEAD_FACTOR).tolist():
                flags["lead_amplitude"][i] = True
                details.append(
                    f"{LEADS[k]}: {lead_factor[i, k]:.2f}x its usual share of the record's amplitude "
                    f"({amplitude[i, k]:.3g} mV; flagged from {LEAD_FACTOR:g}x): its gain may be wrong, or its waves "
                    f"are that large"
                )
        if checks["laws"] and i in measurements.findings:
            flags["laws"][i] = True
            details += [finding.describe() for finding in measurements.findings[i]]
        rows += [(str(record_ids[i]), STAGE, "flagged", detail, 0) for detail in details]

    def counts(selected: np.ndarray) -> dict:
        checked = selected & usable
        flagged = np.zeros(len(amplitude), dtype=bool)
        for flag in flags.values():
            flagged |= flag
        source_median = float(np.median(record_amplitude[checked])) if checked.any() else None
        return {
            "records": int(checked.sum()),
            "median_amplitude_mv": source_median,
            "factor_to_dataset": None if source_median is None else source_median / median,
            "flagged_records": int((flagged & checked).sum()),
            **{f"flagged_{name}": int((flag & checked).sum()) for name, flag in flags.items() if checks[name]},
        }

    summary = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "checks": checks,
        "thresholds": THRESHOLDS,
        "all": counts(np.ones(len(amplitude), dtype=bool)),
        "sources": {str(name): counts(sources == name) for name in dict.fromkeys(sources.tolist())},
    }
    return rows, summary


def describe(summary: dict, report: Path) -> str:
    """One line: what was flagged, per check and per source."""
    total = summary["all"]
    parts = [
        f"{total[f'flagged_{name}']} by {name.replace('_', ' ')}"
        for name, checked in summary["checks"].items()
        if checked and total[f"flagged_{name}"]
    ]
    sources = summary["sources"]
    per_source = (
        "; per source: "
        + ", ".join(f"{name} {counts['flagged_records']}/{counts['records']}" for name, counts in sources.items())
        if len(sources) > 1
        else ""
    )
    return (
        f"{summary['dataset']}: the gain check flagged {total['flagged_records']} of {total['records']} records "
        f"({', '.join(parts)}){per_source}; each flag (record, lead, factor) is in {report} (stage {STAGE})"
    )


def check_prepared(directory: Path, source: SignalSource, standardize: str) -> dict:
    """The gain check of the prepared cache ``directory`` (computed once, then read back from
    :data:`SUMMARY`); flags go to its ``report.csv``. A cache that cannot be written to (a shared,
    read-only copy) is checked but nothing is saved, said in the log."""
    summary_path = directory / SUMMARY
    summary = None
    if summary_path.is_file():
        try:
            summary = read_json(summary_path, "it is computed again")
        except DamagedFileError as exc:
            log.warning("%s", exc)
    if summary is None or (summary.get("format_version"), summary.get("thresholds")) != (FORMAT_VERSION, THRESHOLDS):
        signals = np.load(directory / "signals.npy", mmap_mode="r")
        lead_mask = np.load(directory / "lead_mask.npy")
        measurements = measure(signals, lead_mask, relations=standardize in ("none", "record"))
        sources = np.asarray(source.sources if source.sources is not None else [source.dataset] * len(lead_mask))
        rows, summary = assess(measurements, np.asarray(source.record_ids), sources, standardize, source.dataset)
        try:
            with FileLock(f"{directory}.lock"):
                report = pd.read_csv(directory / "report.csv", keep_default_na=False)
                report = pd.concat(
                    [report[report["stage"] != STAGE], pd.DataFrame(rows, columns=list(report.columns))],
                    ignore_index=True,
                )
                atomic_write(directory / "report.csv", lambda f: report.to_csv(f, index=False))
                atomic_write(summary_path, json.dumps(summary, indent=1))  # last: the check is done
        except OSError as exc:
            log.warning("%s: the gain check's results could not be saved there (%s)", directory, exc.strerror or exc)
        for name, counts in summary["sources"].items() if len(summary["sources"]) > 1 else ():
            log.info(
                "%s source %s: %d records, median amplitude %.3g mV (%.2fx the dataset's), %d flagged by the gain check",
                source.dataset,
                name,
                counts["records"],
                counts["median_amplitude_mv"] or float("nan"),
                counts["factor_to_dataset"] or float("nan"),
                counts["flagged_records"],
            )
    if summary["all"]["flagged_records"]:
        log.warning("%s", describe(summary, directory / "report.csv"))
    return summary
