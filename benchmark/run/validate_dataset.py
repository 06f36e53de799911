"""The dataset plugin contract, checked: what `python -m benchmark validate-dataset` runs.

The dataset is built exactly as ``run`` builds it (:func:`benchmark.run.build.build_dataset`: the
preset's settings, ``--set NAME.FIELD=...``, ``--root``), loaded at the preset's rate, and its
:class:`~benchmark.data.contract.ECGArrays` are checked. Each check reuses the suite's own guard
for the property, so a dataset that passes here is one that ``run`` accepts and reads alike:

=============== ============================================================================
check           what must hold
=============== ============================================================================
load            ``load(fs, label_set, cache_root)`` returns ECGArrays (a leakage refusal by
                :meth:`ECGArrays.check_no_leakage` is reported as ``splits``)
shapes          signals (N, 12, T) float16/float32 at the requested rate, T at least the
                preset's window; lead_mask (N, 12) bool; record ids unique
units           every present lead finite; every record's amplitude (the median over its
                leads of :func:`~benchmark.data.conditioning.lead_amplitude`) inside the
                plausibility bounds of preparation
                (:class:`~benchmark.data.conditioning.Plausibility`, 0.05-20 mV): a dataset in
                uV or ADC units fails (skipped where the dataset standardises its signals)
leads           the 12 rows are :data:`~benchmark.data.contract.LEADS` in order, a subset
                declared by ``lead_mask`` (False = absent); some lead present somewhere
limb_laws       Einthoven's I + III = II and Goldberger's aVR + aVL + aVF = 0 hold within
                :data:`benchmark.data.gain.RELATION_TOLERANCE` in every record with those
                leads (:func:`benchmark.data.gain.relation_findings`): limb leads in another
                order, or with gains that disagree, break them
labels          ``labels`` integer multi-hot in {0, 1}, names unique; ``targets()`` is 0/1
                where a label is known and NaN exactly where it is not
splits          indices valid and unique, train/val/test non-empty and disjoint, patients
                disjoint (:meth:`ECGArrays.check_no_leakage`), and no train or pretrain
                record the same recording as a val/test record
                (:func:`benchmark.data.duplicates.find_duplicates` on record fingerprints)
fingerprints    ``arrays.fingerprint`` set (a result's data identity, independent of where
                the data sits) and equal on a second load; record fingerprints, where the
                dataset has them, of shape (N, 128) and matching their signals
                (:func:`benchmark.data.duplicates.fingerprint`, cosine >= MATCH_COSINE)
=============== ============================================================================

Why a failing ``limb_laws`` is a failure, not a warning [choice]: on the real PTB-XL and CinC
records no record breaks either law (benchmark/data/gain.py), so a break is a true finding.
LUDB fails it, rightly: its headers give each limb lead its own gain while its samples obey the
laws (benchmark/data/gain.py's docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tabulate import tabulate

from benchmark.data.conditioning import Plausibility
from benchmark.data.contract import LEADS, SPLITS, DatasetPlugin, ECGArrays, LeakageError
from benchmark.data.duplicates import FINGERPRINT_DIM, GUARDED, HELD_OUT, MATCH_COSINE, find_duplicates, fingerprint
from benchmark.data.gain import Measurements, measure
from benchmark.run.validate import FAIL, SKIP, Check, ContractFailure, Skipped, run_check

#: records whose stored fingerprint is recomputed from the prepared signal (fingerprints check)
FINGERPRINT_SAMPLE = 16
EXAMPLES = 3


@dataclass
class DatasetReport:
    dataset: str
    label_set: str
    fs: int
    window: int
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == FAIL]


def _examples(ids: np.ndarray, rows: np.ndarray) -> str:
    shown = ", ".join(str(ids[i]) for i in rows[:EXAMPLES])
    return shown + (f" (+{len(rows) - EXAMPLES} more)" if len(rows) > EXAMPLES else "")


def _standardize(dataset: DatasetPlugin) -> str:
    """The dataset's ``preprocess.standardize`` ("none" for datasets without preprocessing)."""
    return getattr(getattr(dataset.config, "preprocess", None), "standardize", "none")


def _plausibility(dataset: DatasetPlugin) -> Plausibility:
    """The dataset's own plausibility thresholds, or preparation's defaults."""
    checks = getattr(getattr(dataset.config, "preprocess", None), "checks", None)
    return checks if isinstance(checks, Plausibility) else Plausibility()


class _DatasetContract:
    """The checks for one dataset, in order; each returns a detail string."""

    def __init__(self, dataset: DatasetPlugin, fs: int, window: int, label_set: str, cache_root: Path, progress: bool):
        self.dataset, self.fs, self.window, self.label_set = dataset, fs, window, label_set
        self.cache_root, self.progress = cache_root, progress
        self.report = DatasetReport(dataset.name, label_set, fs, window)
        self.arrays: ECGArrays | None = None
        self._measured: Measurements | None = None

    #: the checks after ``load``, in order (methods of this class)
    CHECKS = ("shapes", "units", "leads", "limb_laws", "labels", "splits", "fingerprints")

    def run(self) -> DatasetReport:
        load, refused = run_check("load", self.load)
        self.report.checks.append(load)
        for name in self.CHECKS:
            if self.arrays is not None:
                self.report.checks.append(run_check(name, getattr(self, name))[0])
            elif name == "splits" and isinstance(refused, LeakageError):
                self.report.checks.append(Check(name, FAIL, str(refused)))
            else:
                self.report.checks.append(Check(name, SKIP, "the dataset did not load"))
        return self.report

    @property
    def loaded(self) -> ECGArrays:
        if self.arrays is None:
            raise Skipped("the dataset did not load")
        return self.arrays

    @property
    def measured(self) -> Measurements:
        """Lead amplitudes and limb-law findings of every record, read once (benchmark/data/gain.py)."""
        if self._measured is None:
            arrays = self.loaded
            relations = _standardize(self.dataset) in ("none", "record")
            self._measured = measure(arrays.signals, np.asarray(arrays.lead_mask, dtype=bool), relations)
        return self._measured

    # -- the checks ----------------------------------------------------------------------------
    def load(self) -> str:
        self.dataset.check_label_set(self.label_set)
        arrays = self.dataset.load(self.fs, self.label_set, self.cache_root, self.progress)
        if not isinstance(arrays, ECGArrays):
            raise ContractFailure(f"load returned {type(arrays).__name__}, not ecgbench.ECGArrays")
        self.arrays = arrays
        return f"{len(arrays.signals)} records, label set {self.label_set!r} ({len(arrays.label_names)} labels)"

    def shapes(self) -> str:
        arrays = self.loaded
        n, t = len(arrays.signals), arrays.n_samples
        problems = []
        if n == 0:
            problems.append("no records")
        if arrays.fs != self.fs:
            problems.append(f"arrays.fs is {arrays.fs} Hz but {self.fs} Hz was asked for: resample in load")
        if np.dtype(arrays.signals.dtype) not in (np.float16, np.float32):
            problems.append(f"signals are {arrays.signals.dtype}, expected float16 or float32 (mV)")
        if t < self.window:
            problems.append(f"records have {t} samples, the preset's window needs {self.window} ({self.fs} Hz)")
        if np.asarray(arrays.lead_mask).dtype != bool:
            problems.append(f"lead_mask is {np.asarray(arrays.lead_mask).dtype}, expected bool")
        for attr in ("patient_ids", "record_ids"):
            if np.asarray(getattr(arrays, attr)).ndim != 1:
                problems.append(f"{attr} must be 1-D, got shape {np.asarray(getattr(arrays, attr)).shape}")
        record_ids = np.asarray(arrays.record_ids).astype(str)
        repeated = np.unique(record_ids, return_counts=True)
        if (repeated[1] > 1).any():
            problems.append(f"record ids repeat: {', '.join(repeated[0][repeated[1] > 1][:EXAMPLES])}")
        if problems:
            raise ContractFailure("; ".join(problems))
        return (
            f"signals ({n}, {len(LEADS)}, {t}) {arrays.signals.dtype}: {t / self.fs:g} s at {self.fs} Hz, "
            f"window {self.window} fits"
        )

    def units(self) -> str:
        standardize = _standardize(self.dataset)
        if standardize != "none":
            raise Skipped(f"preprocess.standardize={standardize}: the signals are not in mV")
        arrays, amplitude = self.loaded, self.measured.amplitude
        present = np.asarray(arrays.lead_mask, dtype=bool)
        record_ids = np.asarray(arrays.record_ids)
        broken = np.flatnonzero((present & ~np.isfinite(amplitude)).any(axis=1))
        if len(broken):
            raise ContractFailure(
                f"{len(broken)} record(s) have NaN or infinite samples in a present lead (e.g. "
                f"{_examples(record_ids, broken)}): repair gaps or mask the lead"
            )
        usable = present.any(axis=1)
        if not usable.any():
            raise Skipped("no record has a present lead")
        record = np.full(len(amplitude), np.nan)
        record[usable] = np.nanmedian(amplitude[usable], axis=1)
        low, high = _plausibility(self.dataset).amplitude_mv
        outside = np.flatnonzero(usable & ~((record >= low) & (record <= high)))
        median = float(np.median(record[usable]))
        if len(outside):
            raise ContractFailure(
                f"{len(outside)} of {int(usable.sum())} records have an amplitude outside {low:g}-{high:g} mV (e.g. "
                f"{_examples(record_ids, outside)}; dataset median {median:.4g} mV, a typical ECG's is about 1 mV): "
                f"signals must be in millivolts (uV given as mV, or ADC units without a gain?)"
            )
        return (
            f"record amplitudes {np.nanmin(record):.3g}-{np.nanmax(record):.3g} mV (median {median:.3g}), "
            f"all within {low:g}-{high:g} mV"
        )

    def leads(self) -> str:
        arrays = self.loaded
        present = np.asarray(arrays.lead_mask, dtype=bool)
        if not present.any():
            raise ContractFailure("lead_mask is False everywhere: no lead of any record is present")
        without = int((~present.any(axis=1)).sum())
        per_lead = present.mean(axis=0)
        absent = [LEADS[k] for k in np.flatnonzero(per_lead == 0)]
        partial = [f"{LEADS[k]} {100 * per_lead[k]:.1f}%" for k in np.flatnonzero((per_lead > 0) & (per_lead < 1))]
        declared = (f"; absent everywhere: {', '.join(absent)}" if absent else "") + (
            f"; present in: {', '.join(partial)}" if partial else ""
        )
        unusable = f"; {without} record(s) without a present lead" if without else ""
        return f"rows in ecgbench.LEADS order ({', '.join(LEADS)}), subsets by lead_mask{declared}{unusable}"

    def limb_laws(self) -> str:
        standardize = _standardize(self.dataset)
        if standardize not in ("none", "record"):
            raise Skipped(f"preprocess.standardize={standardize} rescales each lead: the laws do not survive it")
        arrays, findings = self.loaded, self.measured.findings
        present = np.asarray(arrays.lead_mask, dtype=bool)
        checked = int((present[:, :3].all(axis=1) | present[:, 3:6].all(axis=1)).sum())
        if not checked:
            raise Skipped("no record has I, II and III or aVR, aVL and aVF")
        if findings:
            rows = np.array(sorted(findings))
            first = int(rows[0])
            raise ContractFailure(
                f"{len(rows)} of {checked} records break the limb-lead laws (e.g. {_examples(np.asarray(arrays.record_ids), rows)}); "
                f"record {arrays.record_ids[first]}: {findings[first][0].describe()}. Limb leads in another order than "
                f"ecgbench.LEADS, or per-lead gains that disagree (benchmark/data/gain.py)"
            )
        return f"I + III = II and aVR + aVL + aVF = 0 hold in all {checked} records with those leads"

    def labels(self) -> str:
        arrays = self.loaded
        names = list(arrays.label_names)
        if not names:
            raise ContractFailure("no labels: label_names is empty")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ContractFailure(f"label names repeat: {', '.join(repeated)}")
        labels = np.asarray(arrays.labels)
        if labels.dtype.kind not in "biu":
            raise ContractFailure(
                f"labels are {labels.dtype}, expected uint8 multi-hot 0/1 (an unknown label is declared by "
                f"label_sources/source_labels, and targets() turns it into NaN)"
            )
        values = np.unique(labels)
        if not np.isin(values, (0, 1)).all():
            raise ContractFailure(
                f"labels hold {values[~np.isin(values, (0, 1))].tolist()}: multi-hot labels are 0 or 1"
            )
        targets, known = arrays.targets(), arrays.known_labels()
        if not np.array_equal(np.isnan(targets), ~known) or not np.isin(targets[known], (0.0, 1.0)).all():
            raise ContractFailure("targets() must be 0/1 where a label is known and NaN exactly where it is not")
        positives = labels.sum(axis=0)
        unknown = f"; {100 * (~known).mean():.1f}% unknown (NaN)" if not known.all() else ""
        return (
            f"{len(names)} labels, multi-hot 0/1, {int(positives.min())}-{int(positives.max())} positives per label"
            f"{unknown}"
        )

    def splits(self) -> str:
        arrays = self.loaded
        n = len(arrays.signals)
        problems = []
        for name, indices in arrays.splits.items():
            if len(indices) and (indices.min() < 0 or indices.max() >= n):
                problems.append(f"{name} has indices outside [0, {n})")
            elif len(np.unique(indices)) != len(indices):
                problems.append(f"{name} lists a record twice")
        problems += [f"{name} is empty" for name in ("train", "val", "test") if not len(arrays.splits[name])]
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = np.intersect1d(arrays.splits[a], arrays.splits[b])
            if len(shared):
                problems.append(f"{len(shared)} record(s) are in both {a} and {b}")
        if problems:
            raise ContractFailure("; ".join(problems))
        arrays.check_no_leakage()
        sizes = ", ".join(f"{name} {len(arrays.splits[name])}" for name in SPLITS)
        if arrays.record_fingerprints is None:
            return f"{sizes}; patient-disjoint; no record fingerprints: the content duplicate guard does not apply"
        held = np.concatenate([arrays.splits[s] for s in HELD_OUT])
        stored = np.asarray(arrays.record_fingerprints)
        for split in GUARDED:
            candidates = arrays.splits[split]
            rows, cols, cosine = find_duplicates(stored[held], stored[candidates])
            if len(rows):
                raise ContractFailure(
                    f"{len(np.unique(cols))} {split} record(s) are the same recording as a val/test record (e.g. "
                    f"{arrays.record_ids[candidates[cols[0]]]} = {arrays.record_ids[held[rows[0]]]}, fingerprint "
                    f"cosine {cosine[0]:.3f}): leave them out of {split}"
                )
        return f"{sizes}; patient-disjoint; no val/test recording repeated in train or pretrain"

    def fingerprints(self) -> str:
        arrays = self.loaded
        if not arrays.fingerprint:
            raise ContractFailure(
                "arrays.fingerprint is empty: set it in load to a signature of the records' content "
                "(ecgbench.data.signature), so that a result's data identity does not depend on where the data sits"
            )
        again = self.dataset.load(self.fs, self.label_set, self.cache_root, progress=False)
        if again.fingerprint != arrays.fingerprint:
            raise ContractFailure(
                f"arrays.fingerprint changes between two loads ({arrays.fingerprint} then {again.fingerprint}): "
                f"derive it from the content only, never from times, paths or random draws"
            )
        if arrays.record_fingerprints is None:
            return f"data {arrays.fingerprint}, equal on a second load; no record fingerprints (generated data)"
        stored = np.asarray(arrays.record_fingerprints, dtype=np.float32)
        if stored.shape != (len(arrays.signals), FINGERPRINT_DIM) or not np.isfinite(stored).all():
            raise ContractFailure(
                f"record_fingerprints must be finite ({len(arrays.signals)}, {FINGERPRINT_DIM}), got {stored.shape}"
            )
        present = np.asarray(arrays.lead_mask, dtype=bool)
        usable = np.flatnonzero(present.any(axis=1))
        sample = usable[np.linspace(0, len(usable) - 1, min(FINGERPRINT_SAMPLE, len(usable))).astype(int)]
        cosines = np.array(
            [
                fingerprint(np.asarray(arrays.signals[i], dtype=np.float32), present[i], arrays.fs) @ stored[i]
                for i in sample
            ]
        )
        off = sample[cosines < MATCH_COSINE]
        if len(off):
            raise ContractFailure(
                f"{len(off)} of {len(sample)} recomputed record fingerprints differ from the stored ones (e.g. "
                f"{_examples(np.asarray(arrays.record_ids), off)}, cosine {cosines.min():.3f} < {MATCH_COSINE}): "
                f"compute them from the conditioned signal (benchmark/data/duplicates.py)"
            )
        return (
            f"data {arrays.fingerprint}, equal on a second load; record fingerprints ({len(stored)}, "
            f"{FINGERPRINT_DIM}) match their signals (cosine >= {cosines.min():.3f} on {len(sample)} records)"
        )


def validate_dataset(
    dataset: DatasetPlugin, fs: int, window: int, label_set: str, cache_root: Path, progress: bool = False
) -> DatasetReport:
    """Load ``dataset`` (built by :func:`benchmark.run.build.build_dataset`) and run every check."""
    return _DatasetContract(dataset, fs, window, label_set, cache_root, progress).run()


def render_dataset_report(report: DatasetReport) -> str:
    title = (
        f"{report.dataset} · labels {report.label_set!r} · {report.fs} Hz, window {report.window}: "
        f"{'PASS' if report.passed else 'FAIL: ' + ', '.join(report.failed)}"
    )
    rows = [(c.name, c.status, c.detail) for c in report.checks]
    table = tabulate(rows, headers=("check", "result", "detail"), tablefmt="simple", maxcolwidths=[None, None, 100])
    return f"{title}\n{table}"
