"""``python -m benchmark new-dataset NAME``: write a documented template dataset plugin.

The template is a small but real dataset — 12-lead ECGs projected from a beating cardiac dipole,
labelled by their heart rate, split by patient — that passes ``python -m benchmark
validate-dataset`` as written and needs no download, so a contributor starts from something that
works and replaces the source with their records. It imports only from ``ecgbench`` (plus numpy).
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from benchmark.run.template import check_plugin_name, class_name

DATASET_TEMPLATE = Template('''"""$title: <one sentence: what the recordings are and what the labels mean>.

Source: <who recorded them, where, when; citation and DOI; licence> [paper]; label definitions
from <the source's documentation> [code/paper]. Mark every fact [paper], [code] or [choice]
(your decision where the sources are silent) and expose each [choice] as a field of
``${class_name}Config``.

As written the records are generated, so that the plugin runs anywhere: a cardiac dipole whose
P, QRS and T waves repeat at each patient's heart rate is projected onto the 12 leads (so the
limb leads obey Einthoven's and Goldberger's laws), and the labels are tachycardia (> 100 bpm)
and bradycardia (< 60 bpm). Replace ``_read_source`` with your reader and keep the contract,
which ``python -m benchmark validate-dataset $path`` checks:

* ``signals`` (N, 12, T) float16/float32 in **millivolts** (a typical lead is 0.1-5 mV) at the
  rate ``load`` is asked for, rows in ``ecgbench.LEADS`` order (I, II, III, aVR, aVL, aVF,
  V1-V6); a lead a record lacks is False in ``lead_mask`` (its row holds zeros);
* ``labels`` (N, K) uint8 multi-hot 0/1, ``label_names`` unique; a label a record's source does
  not annotate is declared by ``label_sources``/``source_labels`` and becomes NaN in
  ``targets()``, never a 0;
* ``splits``: ``train``, ``val`` and ``test`` disjoint by **patient**; ``pretrain`` may reuse
  training patients but never a validation or test one (``ECGArrays`` refuses otherwise);
* ``arrays.fingerprint``: a signature of the content (signals, records, splits), equal wherever
  the data sits and on every load, so that a result's identity does not depend on the folder.

Real records read from files: build on ``ecgbench.data.PreparedDataset`` instead (see
datasets/ludb.py): it reads, repairs, checks, resamples and caches records under ``cache_root``,
and computes each record's content fingerprint for the duplicate guard. Run it with
``python -m benchmark run --dataset $name --plugin $path`` (or drop the file in datasets/).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgbench import DATASETS, LEADS, DatasetConfig, DatasetPlugin, ECGArrays
from ecgbench.data import signature

LABELS = {
    "tachycardia": "heart rate above 100 bpm",
    "bradycardia": "heart rate below 60 bpm",
}
# [choice] each wave: (centre relative to the R peak in s, width in s, dipole direction x, y, z in mV)
WAVES = (
    (-0.16, 0.025, (0.12, 0.10, 0.02)),  # P
    (-0.025, 0.008, (-0.05, 0.10, 0.30)),  # Q
    (0.0, 0.012, (0.70, 0.90, -0.50)),  # R
    (0.03, 0.010, (-0.10, -0.20, -0.40)),  # S
    (0.28, 0.050, (0.20, 0.25, -0.15)),  # T
)
# [choice] chest leads V1-V6: horizontal-plane angles of a unit projection, from right to left
CHEST_ANGLES_DEG = (115.0, 95.0, 75.0, 55.0, 30.0, 0.0)


@dataclass
class ${class_name}Config(DatasetConfig):
    n_patients: int = 40  # [choice] small: the template loads in well under a second
    records_per_patient: int = 2
    duration_s: float = 10.0
    val_fraction: float = 0.2  # of patients
    test_fraction: float = 0.2
    noise_mv: float = 0.02  # [choice] white noise on the dipole, mV
    seed: int = 0

    def __post_init__(self):
        if self.n_patients < 5 or self.records_per_patient < 1 or self.duration_s <= 0 or self.noise_mv < 0:
            raise ValueError("n_patients >= 5, records_per_patient >= 1, duration_s > 0 and noise_mv >= 0 are required")
        if self.val_fraction <= 0 or self.test_fraction <= 0 or self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction and test_fraction must be > 0 and leave patients for training")


@DATASETS.register("$name")
class ${class_name}(DatasetPlugin):
    summary = "$title: <one line for `python -m benchmark list`>"
    Config = ${class_name}Config
    label_sets = ("rhythm",)  # the first is the default

    def load(self, fs: int, label_set: str, cache_root: Path, progress: bool = True) -> ECGArrays:
        """The records at ``fs`` Hz. Small and generated, so nothing is cached under ``cache_root``."""
        self.check_label_set(label_set)
        c = self.config
        signals, lead_mask, heart_rate = self._read_source(fs)
        patient_ids = np.repeat([f"p{p:03d}" for p in range(c.n_patients)], c.records_per_patient)
        record_ids = np.array([f"r{k:05d}" for k in range(len(signals))])
        labels = np.stack([heart_rate > 100, heart_rate < 60], axis=1).astype(np.uint8)
        arrays = ECGArrays(
            name=self.name,
            fs=fs,
            signals=signals,
            lead_mask=lead_mask,
            labels=labels,
            label_names=list(LABELS),
            patient_ids=patient_ids,
            record_ids=record_ids,
            splits=self._patient_splits(patient_ids),
            label_descriptions=dict(LABELS),
        )
        # the content, not the config: equal for equal records wherever they come from
        arrays.fingerprint = signature(
            {
                "signals": hashlib.sha256(np.ascontiguousarray(signals).tobytes()).hexdigest(),
                "lead_mask": hashlib.sha256(lead_mask.tobytes()).hexdigest(),
                "records": record_ids.tolist(),
                "patients": patient_ids.tolist(),
                "splits": {name: indices.tolist() for name, indices in arrays.splits.items()},
            }
        )
        return arrays

    def _read_source(self, fs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(signals (N, 12, T) float32 mV, lead_mask (N, 12) bool, heart rate (N,) bpm). Replace
        with your reader: convert ADC units to mV with each lead's gain, reorder the channels to
        ``LEADS`` and resample to ``fs``."""
        c = self.config
        rng = np.random.default_rng(c.seed)
        n = c.n_patients * c.records_per_patient
        t = np.arange(int(round(c.duration_s * fs))) / fs
        patient_rate = rng.uniform(45.0, 130.0, c.n_patients)
        heart_rate = np.repeat(patient_rate, c.records_per_patient) + rng.normal(0.0, 3.0, n)
        limb = np.radians([0.0, 60.0, 120.0])  # I, II, III in the frontal plane (x right, y down)
        chest = np.radians(CHEST_ANGLES_DEG)
        projection = np.concatenate(
            [
                np.stack([np.cos(limb), np.sin(limb), np.zeros(3)], axis=1),
                np.stack([np.cos(chest), np.zeros(6), np.sin(chest)], axis=1),
            ]
        )  # (9, 3): I, II, III, V1-V6
        signals = np.zeros((n, len(LEADS), len(t)), dtype=np.float32)
        lead_mask = np.ones((n, len(LEADS)), dtype=bool)
        for i in range(n):
            period = 60.0 / heart_rate[i]
            peaks = np.arange(rng.uniform(0.2, 0.2 + period), t[-1] + 1.0, period)
            dipole = np.zeros((3, len(t)))
            for centre, width, direction in WAVES:
                pulses = np.exp(-0.5 * ((t[None, :] - peaks[:, None] - centre) / width) ** 2).sum(axis=0)
                dipole += np.asarray(direction)[:, None] * pulses
            dipole += c.noise_mv * rng.standard_normal(dipole.shape)
            leads = projection @ dipole
            first, second = leads[0], leads[1]
            signals[i, :3] = leads[:3]
            signals[i, 3] = -(first + second) / 2  # aVR
            signals[i, 4] = first - second / 2  # aVL
            signals[i, 5] = second - first / 2  # aVF
            signals[i, 6:] = leads[3:]
            if rng.random() < 0.1:  # an electrode off: that chest lead is absent
                lead = LEADS.index("V1") + int(rng.integers(6))
                lead_mask[i, lead] = False
                signals[i, lead] = 0.0
        return signals, lead_mask, heart_rate

    def _patient_splits(self, patient_ids: np.ndarray) -> dict[str, np.ndarray]:
        """train/val/test by patient (seeded); pretraining uses the training records."""
        c = self.config
        patients = np.random.default_rng(c.seed + 1).permutation(np.unique(patient_ids))
        n_test = max(1, round(c.test_fraction * len(patients)))
        n_val = max(1, round(c.val_fraction * len(patients)))
        split_of = {p: "test" for p in patients[:n_test]} | {p: "val" for p in patients[n_test : n_test + n_val]}
        split = np.array([split_of.get(p, "train") for p in patient_ids])
        splits = {name: np.flatnonzero(split == name) for name in ("train", "val", "test")}
        return {"pretrain": splits["train"], **splits}
''')


def render_dataset_template(name: str, path: Path) -> str:
    """The template plugin for dataset ``name`` that will live at ``path``."""
    check_plugin_name(name, "dataset")
    return DATASET_TEMPLATE.substitute(
        name=name, class_name=class_name(name), title=name.replace("_", " ").upper(), path=path.as_posix()
    )
