"""The synthetic default dataset: physics-based 12-lead ECGs with real ICD-10-CM labels.

Why physics: the benchmark compares methods that model cross-lead structure, so the synthetic
leads must carry the redundancy real leads carry. Each beat is a 3-D cardiac dipole (the
vectorcardiogram) built from Gaussian waves P, Q, R, S, T, each with its own 3-D amplitude
vector, centre and width (Sayadi, Shamsollahi & Clifford 2010, Physiol. Meas. 31:1309; the
single-lead original is McSharry et al. 2003, IEEE TBME 50:289). Waves are placed in time (not
in phase) so that PR, QRS and QT are explicit, measurable parameters. The dipole (Frank axes:
X to the patient's left, Y to the feet, Z to the back) is projected onto I, II and V1-V6 with
the Dower transformation (Dower et al. 1980, Clin. Cardiol. 3:87; coefficients as tabulated by
Edenbrandt & Pahlm 1988, J. Electrocardiol. 21:361); III, aVR, aVL and aVF are then derived by
Einthoven's and Goldberger's identities, as an electrocardiograph derives them, so III = II - I
and aVR + aVL + aVF = 0 hold exactly, noise included.

Per patient: body habitus (gain), anatomical axis (3-D rotation), wave amplitudes and widths,
PR, QRS, QTc, resting rate and the chronic conditions; per record: rate and its variability
(respiratory sinus arrhythmia), rhythm, acute conditions, a small rotation (electrode
placement) and noise. Noise is added at the nine electrodes (RA, LA, LL, V1-V6), so that it
spreads over the leads as real noise does: baseline wander, EMG-like broadband noise, 50/60 Hz
pickup (only when below Nyquist, never aliased), and in a few records an electrode pop or
motion burst, or one precordial electrode off (flat lead, ``lead_mask`` False).

Labels are conditions a cardiologist reads from the ECG, written as real ICD-10-CM codes without
dots (MIMIC's spelling) so the ICD hierarchy reports run on them (:data:`CONDITIONS`). Several
need cross-lead reasoning: anterior and inferior STEMI differ only in which leads show the ST
elevation; LBBB and RBBB only in lead-specific QRS morphology. Normal = no label.

Record ``i`` is a pure function of (config, i, fs): patient ``i // records_per_patient`` draws
the base morphology and chronic conditions from ``default_rng([seed, patient, 0])``, the record
its rhythm, acute conditions, label noise and signal noise from ``default_rng([seed, i, 1])``.
Physiology is drawn before anything whose size depends on fs, so the same record at 100 and
500 Hz shows the same heart; only the noise realisation differs.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy.signal import butter, sosfiltfilt, sosfreqz
from scipy.special import ndtri
from tqdm.auto import tqdm

from ecgbench import DATASETS, LEADS, DataError, DatasetConfig, DatasetPlugin, ECGArrays
from ecgbench.data import icd_description, icd_hierarchy, icd_label_names

GENERATOR_VERSION = 2  # bump whenever a change alters generated records (it keys the cache)
MIN_FS = 50  # below this the QRS (Gaussians of 6-20 ms width) is no longer sampled

# Dower et al. 1980, rows I, II, V1..V6; columns X, Y, Z (Edenbrandt & Pahlm 1988, table 1).
DOWER = np.array(
    [
        [0.632, -0.235, 0.059],  # I
        [0.235, 1.066, -0.132],  # II
        [-0.515, 0.157, -0.917],  # V1
        [0.044, 0.164, -1.387],  # V2
        [0.882, 0.098, -1.277],  # V3
        [1.213, 0.127, -0.601],  # V4
        [1.125, 0.127, -0.086],  # V5
        [0.831, 0.076, 0.230],  # V6
    ]
)
# Gain of each lead of the Dower projection (I, II, V1..V6), fitted so that the normal records'
# median-beat amplitudes match PTB-XL NORM's: Dower's population-average lead vectors give a V2
# two thirds as large as PTB-XL's. A precordial lead's gain changes only its amplitude, none of the
# correlations of the heart's signal; I and II keep gain 1, as III, aVR, aVL and aVF mix them.
LEAD_GAIN = np.array([1.0, 1.0, 0.9, 1.45, 1.0, 1.0, 0.9, 0.95])
ELECTRODES: tuple[str, ...] = ("RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6")

# Gaussian waves of one beat. X is the extra QRS wave of conduction disorders (LBBB notch, RBBB
# terminal R'), ST the injury or strain current, T1/T2 the ascending/descending T limbs (two
# Gaussians make the T wave asymmetric, as in McSharry et al.).
WAVES: tuple[str, ...] = ("P1", "P2", "Q", "R", "S", "X", "ST", "T1", "T2")
P1, P2, Q, R, S, X, ST, T1, T2 = range(len(WAVES))

# Heart-frame dipole amplitudes (mV) of a normal beat, chosen so that the Dower projection gives
# textbook amplitudes: rS in V1, transition V3-V4, qR in V5-V6, upright T except V1, biphasic P
# in V1 (right then left atrium).
NORMAL_DIPOLE = np.array(
    [
        [0.03, 0.10, -0.06],  # P1 right atrium: inferior, anterior
        [0.09, 0.05, 0.07],  # P2 left atrium: leftward, posterior
        [-0.09, 0.03, -0.09],  # Q septum: rightward, anterior
        [1.12, 0.63, 0.64],  # R free walls: leftward, inferior, posterior
        [-0.44, -0.10, 0.55],  # S base: rightward, superior, posterior
        [0.0, 0.0, 0.0],  # X
        [0.0, 0.0, 0.0],  # ST
        [0.23, 0.08, -0.10],  # T1
        [0.23, 0.08, -0.10],  # T2
    ]
)
ROTATION_SD_DEG = (14.0, 14.0, 7.5)
SINUS_RATE_BPM, SINUS_RATE_LOG_SD = 67.0, 0.14  # a patient's resting rate: log-normal
PR_S = (0.115, 0.175)  # normal PR interval range, s
QRS_S = (0.068, 0.112)  # normal QRS duration range, s  # anatomical axis: frontal, horizontal, sagittal plane
ANTERIOR_INJURY = np.array([0.2, -0.15, -1.0])  # LAD territory: ST up in V1-V4
INFERIOR_INJURY = np.array([-0.2, 1.0, 0.25])  # RCA: ST up in II, III, aVF; down in aVL, V1-V3
LBBB_R1, LBBB_R2 = np.array([0.75, 0.30, 0.65]), np.array([0.85, 0.25, 0.50])  # leftward, posterior
RBBB_TERMINAL = np.array([-0.45, 0.05, -0.55])  # late rightward, anterior forces
AF_FIBRILLATION = np.array([-0.3, 0.45, -0.55])  # f waves are best seen in V1 and inferior leads


@dataclass(frozen=True)
class Condition:
    code: str  # ICD-10-CM, no dot
    finding: str  # what the generator puts on the ECG


CONDITIONS: tuple[Condition, ...] = (
    Condition("I48", "atrial fibrillation: irregular RR (CV 15-28 %), no P waves, 4-9 Hz f waves"),
    Condition("I440", "first-degree AV block: PR 215-320 ms (normal 120-190 ms); sinus rhythm only"),
    Condition("I447", "LBBB: QRS 130-170 ms, no septal q, broad notched R in I/aVL/V5-V6, QS in V1, discordant ST-T"),
    Condition(
        "I451",
        "RBBB: QRS 125-155 ms, late rightward-anterior wave: rsR' in V1, wide S in I/V6, lowered or inverted T in V1",
    ),
    Condition("I210", "anterior STEMI: 0.15-0.4 mV injury current toward V1-V4 (ST up most in V2-V3), hyperacute T"),
    Condition(
        "I211",
        "inferior STEMI: 0.15-0.4 mV injury current toward II/III/aVF (ST up most in III), "
        "reciprocal ST down in aVL and V1-V3",
    ),
    Condition(
        "I517",
        "LVH: QRS voltage x1.5-2.1, leftward-posterior shift, +5-15 ms; strain ST-T "
        "(ST down, T inverted in lateral leads) in 75 %",
    ),
    Condition("I471", "SVT: regular narrow-complex tachycardia 155-210 bpm, P hidden in the QRS"),
    Condition(
        "I493",
        "ventricular premature beats: wide (130-180 ms) early beats without P, "
        "discordant T, compensatory pause; bigeminy to quadrigeminy",
    ),
)
CONDITION_CODES: tuple[str, ...] = tuple(c.code for c in CONDITIONS)
AF, AVB1, LBBB, RBBB, STEMI_ANTERIOR, STEMI_INFERIOR, LVH, SVT, PVC = range(len(CONDITIONS))

# Draw probabilities. Observed prevalences are lower where an exclusion applies: 1st-degree AVB
# is only visible in sinus rhythm; SVT is narrow-complex by definition, so not drawn in bundle-
# branch block; STEMI and LVH are not diagnosable in LBBB; PVCs are not drawn during SVT. AF and
# SVT are alternative rhythms, LBBB and RBBB alternative conduction disorders.
DRAW_PROBABILITY: dict[int, float] = {
    AF: 0.12,
    AVB1: 0.12,
    LBBB: 0.085,
    RBBB: 0.08,
    STEMI_ANTERIOR: 0.09,
    STEMI_INFERIOR: 0.09,
    LVH: 0.12,
    SVT: 0.09,
    PVC: 0.10,
}

N_PATIENT_DRAWS = 96  # uniforms per patient; a fixed block, so column j always means one thing
N_RECORD_DRAWS = 160
N_BEAT_STREAMS = 3  # per-beat uniforms: RR noise, PVC coupling, amplitude jitter
MIN_RR_S = 0.28
FIRST_BEAT_S = -1.2  # beats start before t = 0 so the record opens mid-rhythm
LAST_BEAT_S = 0.6  # ... and end after its end

# Noise sizes vary between records log-normally around the config's scales (log-sd below).
WANDER_LOG_SD = 1.0
# relative wander at RA, LA, LL, V1-V6: the leg and chest electrodes move with breathing (diaphragm, chest wall)
ELECTRODE_WANDER = np.array([1.0, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
EMG_LOG_SD = 0.6
POWERLINE_LOG_SD = 1.0
EMG_BAND_HZ = (20.0, 150.0)  # muscle noise as a diagnostic recorder passes it (AHA upper corner 150 Hz)


@dataclass
class SyntheticConfig(DatasetConfig):
    """Size, noise and split settings of the synthetic dataset (all of it keys the cache)."""

    seed: int = 0
    n_patients: int = 2000
    records_per_patient: int = 2
    duration_s: float = 10.0
    baseline_wander_mv: float = 0.035  # median size of respiration and electrode drift (limb electrodes)
    emg_mv: float = 0.01  # median RMS of muscle noise over EMG_BAND_HZ
    powerline_mv: float = 0.002  # median size of 50/60 Hz interference, added only below Nyquist
    powerline_hz: int = 50
    artefact_probability: float = 0.05  # a record has an electrode pop or motion burst
    lead_off_probability: float = 0.005  # a record has one precordial electrode off (masked, flat)
    label_noise: float = 0.0  # probability that each condition label is flipped, in every split
    pretrain_only_fraction: float = 0.4  # of patients; pretraining also uses the train patients
    train_fraction: float = 0.3
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self):
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"synthetic: seed must be an integer >= 0, got {self.seed!r}")
        if self.n_patients < 1:
            raise ValueError(f"synthetic: n_patients must be >= 1, got {self.n_patients}")
        if self.records_per_patient < 1:
            raise ValueError(f"synthetic: records_per_patient must be >= 1, got {self.records_per_patient}")
        if not 2.0 <= self.duration_s <= 600.0:
            raise ValueError(f"synthetic: duration_s must be in [2, 600] s, got {self.duration_s}")
        for name in ("baseline_wander_mv", "emg_mv", "powerline_mv"):
            if getattr(self, name) < 0:
                raise ValueError(f"synthetic: {name} must be >= 0, got {getattr(self, name)}")
        if self.powerline_hz not in (50, 60):
            raise ValueError(f"synthetic: powerline_hz must be 50 or 60, got {self.powerline_hz}")
        for name in ("artefact_probability", "lead_off_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"synthetic: {name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.label_noise < 0.5:
            raise ValueError(f"synthetic: label_noise must be in [0, 0.5), got {self.label_noise}")
        fractions = self.split_fractions
        if min(fractions.values()) < 0 or abs(sum(fractions.values()) - 1.0) > 1e-9:
            raise ValueError(f"synthetic: split fractions must be >= 0 and sum to 1, got {fractions}")
        counts = patient_split_counts(self)
        empty = [split for split in ("train", "val", "test") if counts[split] == 0]
        if empty:
            raise ValueError(
                f"synthetic: n_patients={self.n_patients} leaves the {', '.join(empty)} split(s) "
                f"without patients; raise n_patients or the split fractions"
            )

    @property
    def split_fractions(self) -> dict[str, float]:
        return {
            "pretrain_only": self.pretrain_only_fraction,
            "train": self.train_fraction,
            "val": self.val_fraction,
            "test": self.test_fraction,
        }

    @property
    def n_records(self) -> int:
        return self.n_patients * self.records_per_patient


def config_hash(config: SyntheticConfig) -> str:
    """Short hash of the config and the generator version: the cache folder's name."""
    payload = json.dumps({"generator_version": GENERATOR_VERSION, **asdict(config)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


# -- splits ------------------------------------------------------------------------------------
def patient_split_counts(config: SyntheticConfig) -> dict[str, int]:
    counts = {k: int(round(f * config.n_patients)) for k, f in config.split_fractions.items() if k != "pretrain_only"}
    counts["pretrain_only"] = config.n_patients - sum(counts.values())
    return counts


def record_splits(config: SyntheticConfig) -> dict[str, np.ndarray]:
    """Patient-disjoint record indices per split; 'pretrain' = pretrain-only + train patients.

    Patients are dealt to splits by one seeded permutation, so the counts are exact and the
    assignment is a function of (seed, n_patients) alone.
    """
    counts = patient_split_counts(config)
    order = np.random.default_rng([config.seed, 2]).permutation(config.n_patients)
    bounds = np.cumsum([counts[k] for k in ("pretrain_only", "train", "val", "test")])
    pretrain_only, train, val, test = np.split(order, bounds[:-1])
    rpp = config.records_per_patient

    def records(patients: np.ndarray) -> np.ndarray:
        return (np.sort(patients)[:, None] * rpp + np.arange(rpp)).ravel()

    return {
        "pretrain": records(np.concatenate([pretrain_only, train])),
        "train": records(train),
        "val": records(val),
        "test": records(test),
    }


# -- the generator -----------------------------------------------------------------------------
@dataclass
class GroundTruth:
    """Per-record parameters the generator used, for checks (times in s from record start)."""

    heart_rate_bpm: np.ndarray  # (B,) mean rate
    rhythm: np.ndarray  # (B,) 'sinus' | 'af' | 'svt'
    pr_interval_s: np.ndarray  # (B,) P onset to QRS onset; NaN without P waves
    qrs_duration_s: np.ndarray  # (B,) of conducted (non-premature) beats
    qt_interval_s: np.ndarray  # (B,)
    qrs_onsets_s: np.ndarray  # (B, K) every beat in time order, NaN-padded; RR = np.diff
    premature: np.ndarray  # (B, K) bool, ventricular premature beat
    st_offset_mv: np.ndarray  # (B, 12) ST-segment current (injury/strain) at J+60 ms per lead


@dataclass
class SyntheticBatch:
    signals: np.ndarray  # (B, 12, T) float32 mV, with noise (if asked) and lead-off
    clean: np.ndarray  # (B, 12, T) float32 mV, the heart alone
    lead_mask: np.ndarray  # (B, 12) bool
    labels: np.ndarray  # (B, len(CONDITIONS)) uint8, after label noise
    true_labels: np.ndarray  # (B, len(CONDITIONS)) uint8, what the ECG shows
    patient_ids: np.ndarray  # (B,) int64
    record_ids: np.ndarray  # (B,) int64
    truth: GroundTruth


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class _Draws:
    """Named parameters decoded, column by column, from a fixed block of uniforms per record."""

    def __init__(self, uniforms: np.ndarray):
        self._u, self._next = uniforms, 0

    def _take(self, n: int | None) -> np.ndarray:
        width = 1 if n is None else n
        if self._next + width > self._u.shape[1]:
            raise RuntimeError("synthetic generator: draw block exhausted; enlarge N_*_DRAWS")
        block = self._u[:, self._next : self._next + width]
        self._next += width
        return block[:, 0] if n is None else block

    def uniform(self, low: float, high: float, n: int | None = None) -> np.ndarray:
        return low + (high - low) * self._take(n)

    def normal(self, mean: float, sd: float, n: int | None = None) -> np.ndarray:
        return mean + sd * ndtri(np.clip(self._take(n), 1e-12, 1 - 1e-12))

    def bernoulli(self, p: float) -> np.ndarray:
        return self._take(None) < p

    def unit_vectors(self, base: np.ndarray, spread: float) -> np.ndarray:
        """(B, 3) unit vectors scattered around ``base`` (direction varies between hearts)."""
        return _unit(_unit(base) + self.normal(0.0, spread, 3))


def beats_per_record(duration_s: float) -> int:
    return int(np.ceil((duration_s + LAST_BEAT_S - FIRST_BEAT_S) / MIN_RR_S)) + 1


def _random_streams(
    config: SyntheticConfig,
    indices: np.ndarray,
    n_samples: int,
    noise: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The per-record random numbers, drawn record by record from their own seeds."""
    n, k = len(indices), beats_per_record(config.duration_s)
    patient_u = np.empty((n, N_PATIENT_DRAWS))
    record_u = np.empty((n, N_RECORD_DRAWS))
    beat_u = np.empty((n, N_BEAT_STREAMS, k))
    label_u = np.empty((n, len(CONDITIONS)))
    white = np.empty((n, len(ELECTRODES), n_samples), dtype=np.float32) if noise else None
    previous_patient = -1
    for row, i in enumerate(indices.tolist()):
        patient = i // config.records_per_patient
        if patient != previous_patient:  # a patient's records are usually neighbours
            patient_draws = np.random.default_rng([config.seed, patient, 0]).random(N_PATIENT_DRAWS)
            previous_patient = patient
        patient_u[row] = patient_draws
        rng = np.random.default_rng([config.seed, i, 1])
        record_u[row] = rng.random(N_RECORD_DRAWS)
        beat_u[row] = rng.random((N_BEAT_STREAMS, k))
        label_u[row] = rng.random(len(CONDITIONS))
        if noise:  # last, because its size depends on fs
            white[row] = rng.random((len(ELECTRODES), n_samples), dtype=np.float32)
    return patient_u, record_u, beat_u, label_u, white


def _rotate(v: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotate (B, ..., 3) vectors by (B, 3) angles in the frontal (XY), horizontal (XZ) and
    sagittal (YZ) planes, in that order: the heart's anatomical axis varies between people."""
    out = v.copy()
    for (a, b), angle in zip(((0, 1), (0, 2), (1, 2)), np.moveaxis(angles, 1, 0)):
        c = np.cos(angle).reshape((-1,) + (1,) * (v.ndim - 2))
        s = np.sin(angle).reshape(c.shape)
        out[..., a], out[..., b] = c * out[..., a] - s * out[..., b], s * out[..., a] + c * out[..., b]
    return out


@dataclass
class _Record:
    """Everything drawn for a batch of records, before rendering (heart-frame vectors)."""

    conditions: np.ndarray  # (B, C) bool
    rr_mean: np.ndarray  # (B,)
    rhythm: np.ndarray  # (B,) 0 sinus, 1 AF, 2 SVT
    pr: np.ndarray
    qrs: np.ndarray
    qt: np.ndarray
    offsets: np.ndarray  # (B, W) wave centres relative to QRS onset, conducted beat
    widths: np.ndarray  # (B, W)
    dipole: np.ndarray  # (B, W, 3)
    pvc_offsets: np.ndarray
    pvc_widths: np.ndarray
    pvc_dipole: np.ndarray
    rotation: np.ndarray  # (B, 3) angles
    gain: np.ndarray  # (B,)
    fib_dipole: np.ndarray  # (B, 3) f-wave amplitude vector (0 unless AF)
    draws: _Draws = field(repr=False)  # the record's draws, consumed further (in a fixed order) by rhythm and noise


def _draw_record(patient_u: np.ndarray, record_u: np.ndarray) -> _Record:
    """Decode the draws into conditions, intervals and heart-frame wave dipoles.

    Every parameter is drawn for every record, whatever its conditions, so that a column of the
    draw blocks always means the same parameter.
    """
    patient, record = _Draws(patient_u), _Draws(record_u)
    n = len(patient_u)

    # patient: body habitus, anatomy, intervals, chronic conditions
    gain = np.exp(patient.normal(0.0, 0.2))
    dipole = NORMAL_DIPOLE * np.exp(patient.normal(0.0, 0.15, len(WAVES)))[:, :, None] + 0.2 * np.abs(
        NORMAL_DIPOLE
    ) * patient.normal(0.0, 1.0, 3 * len(WAVES)).reshape(n, len(WAVES), 3)
    rotation = np.deg2rad(np.stack([patient.normal(0, sd) for sd in ROTATION_SD_DEG], axis=1))
    hr_base = SINUS_RATE_BPM * np.exp(patient.normal(0.0, SINUS_RATE_LOG_SD))
    pr_normal, pr_long = patient.uniform(*PR_S), patient.uniform(0.215, 0.32)
    p_duration = patient.uniform(0.08, 0.11)
    qrs_normal = patient.uniform(*QRS_S)
    qtc = patient.uniform(0.38, 0.44)
    conduction_u = patient.uniform(0, 1)
    has_lbbb = conduction_u < DRAW_PROBABILITY[LBBB]
    has_rbbb = ~has_lbbb & (conduction_u < DRAW_PROBABILITY[LBBB] + DRAW_PROBABILITY[RBBB])
    has_avb1 = patient.bernoulli(DRAW_PROBABILITY[AVB1])
    has_lvh = patient.bernoulli(DRAW_PROBABILITY[LVH]) & ~has_lbbb
    lvh_r, lvh_s, lvh_qrs = patient.uniform(1.5, 2.1), patient.uniform(1.4, 2.0), patient.uniform(0.005, 0.015)
    strain = patient.bernoulli(0.75)
    strain_st, strain_t = patient.uniform(0.05, 0.12), patient.uniform(0.7, 1.0)
    lbbb_qrs, lbbb_scale = patient.uniform(0.13, 0.17), patient.uniform(1.3, 1.9)
    lbbb_t, lbbb_st = patient.uniform(0.3, 0.5), patient.uniform(0.05, 0.12)
    lbbb_r1, lbbb_r2 = patient.unit_vectors(LBBB_R1, 0.15), patient.unit_vectors(LBBB_R2, 0.15)
    rbbb_qrs, rbbb_width = patient.uniform(0.125, 0.155), patient.uniform(0.016, 0.022)
    rbbb_scale, rbbb_t = patient.uniform(0.6, 1.0), patient.uniform(0.1, 0.2)
    rbbb_dir = patient.unit_vectors(RBBB_TERMINAL, 0.15)
    pvc_dir = _unit(patient.normal(0.0, 1.0, 3))  # ectopic focus anywhere in the ventricles
    pvc_size, pvc_qrs = patient.uniform(1.2, 2.2), patient.uniform(0.13, 0.18)
    pvc_second = patient.normal(0.0, 0.3, 3)

    # record: rhythm, acute conditions, rate
    rhythm_u = record.uniform(0, 1)
    af = rhythm_u < DRAW_PROBABILITY[AF]
    svt = (rhythm_u >= DRAW_PROBABILITY[AF]) & (rhythm_u < DRAW_PROBABILITY[AF] + DRAW_PROBABILITY[SVT])
    svt &= ~(has_lbbb | has_rbbb)
    sinus = ~af & ~svt
    rate = np.where(
        af,
        record.uniform(75, 140),
        np.where(svt, record.uniform(155, 210), np.clip(hr_base + record.normal(0, 4), 45, 115)),
    )
    rr_mean = 60.0 / rate
    stemi_u = record.uniform(0, 1)
    anterior = (stemi_u < DRAW_PROBABILITY[STEMI_ANTERIOR]) & ~has_lbbb
    inferior = (
        (stemi_u >= DRAW_PROBABILITY[STEMI_ANTERIOR])
        & (stemi_u < DRAW_PROBABILITY[STEMI_ANTERIOR] + DRAW_PROBABILITY[STEMI_INFERIOR])
        & ~has_lbbb
    )
    injury_size, hyperacute = record.uniform(0.15, 0.4), record.uniform(0.3, 0.8)
    injury_dir = np.where(
        anterior[:, None], record.unit_vectors(ANTERIOR_INJURY, 0.2), record.unit_vectors(INFERIOR_INJURY, 0.2)
    )
    pvc = record.bernoulli(DRAW_PROBABILITY[PVC]) & ~svt
    rotation = rotation + np.deg2rad(record.normal(0, 3, 3))  # electrode placement, posture
    gain = gain * np.exp(record.normal(0.0, 0.05))
    fib_size, fib_dir = record.uniform(0.04, 0.12), record.unit_vectors(AF_FIBRILLATION, 0.2)
    fib_dipole = np.where(af[:, None], fib_size[:, None] * fib_dir, 0.0)

    # timing of a conducted beat, relative to QRS onset
    s = np.cbrt(rr_mean)  # Fridericia: repolarisation scales with RR^(1/3) (Bazett overshortens fast rates)
    pr = np.where(has_avb1, pr_long, pr_normal)
    p_duration = np.minimum(p_duration, pr - 0.04)
    qrs = np.select([has_lbbb, has_rbbb], [lbbb_qrs, rbbb_qrs], qrs_normal + has_lvh * lvh_qrs)
    qt = qtc * s + (qrs - qrs_normal)  # a wide QRS lengthens QT, not JT
    width = np.empty((n, len(WAVES)))
    offset = np.empty((n, len(WAVES)))
    width[:, [P1, P2]] = (p_duration / 6)[:, None]
    offset[:, P1], offset[:, P2] = -pr + p_duration / 3, -pr + 2 * p_duration / 3
    base_qrs = np.where(has_rbbb, qrs_normal, qrs)  # RBBB: normal start, then the late wave
    width[:, [Q, R, S]] = base_qrs[:, None] * [0.10, 0.12, 0.10]
    offset[:, [Q, R, S]] = base_qrs[:, None] * [0.20, 0.48, 0.80]
    width[:, X], offset[:, X] = rbbb_width, qrs - 2 * rbbb_width
    width[:, ST], offset[:, ST] = 0.05 * s, qrs + 0.06 * s
    width[:, T2] = 0.04 * s
    offset[:, T2] = qt - 2 * width[:, T2]
    width[:, T1], offset[:, T1] = 0.055 * s, offset[:, T2] - 0.035 * s

    # morphology changes of the conditions, in the heart's frame
    dipole[~sinus, P1 : P2 + 1] = 0.0
    r_dir = _unit(dipole[:, R])
    lvh = has_lvh[:, None]
    r_size = np.linalg.norm(dipole[:, R], axis=1, keepdims=True)
    lvh_shift = np.array([0.15, -0.1, 0.15]) * r_size  # the thick left wall dominates: leftward, posterior
    dipole[:, R] = np.where(lvh, dipole[:, R] * lvh_r[:, None] + lvh_shift, dipole[:, R])
    dipole[:, S] = np.where(lvh, dipole[:, S] * lvh_s[:, None], dipole[:, S])
    strained = (has_lvh & strain)[:, None]
    t_size = np.linalg.norm(dipole[:, T1], axis=1, keepdims=True)
    dipole[:, ST] = np.where(strained, -strain_st[:, None] * r_dir, 0.0)
    for t in (T1, T2):
        beta = strain_t[:, None]
        dipole[:, t] = np.where(strained, (1 - beta) * dipole[:, t] - beta * 1.2 * t_size * r_dir, dipole[:, t])

    lb = has_lbbb[:, None]
    lbbb_mean = _unit(lbbb_r1 + lbbb_r2)
    septum_from_left = 0.3 * np.abs(dipole[:, Q]) * [1.0, 0.0, 1.0]  # no septal q in I and V6
    dipole[:, Q] = np.where(lb, septum_from_left, dipole[:, Q])
    dipole[:, R] = np.where(lb, lbbb_scale[:, None] * lbbb_r1, dipole[:, R])
    dipole[:, X] = np.where(lb, lbbb_scale[:, None] * lbbb_r2, dipole[:, X])
    dipole[:, S] = np.where(lb, 0.0, dipole[:, S])
    dipole[:, ST] = np.where(lb, -lbbb_st[:, None] * lbbb_mean, dipole[:, ST])
    dipole[:, T1] = np.where(lb, -0.5 * lbbb_t[:, None] * lbbb_mean, dipole[:, T1])
    dipole[:, T2] = np.where(lb, -0.5 * lbbb_t[:, None] * lbbb_mean, dipole[:, T2])
    width[:, [R, X]] = np.where(lb, lbbb_qrs[:, None] / 7, width[:, [R, X]])
    offset[:, [R, X]] = np.where(lb, lbbb_qrs[:, None] * [0.35, 0.68], offset[:, [R, X]])

    rb = has_rbbb[:, None]
    dipole[:, X] = np.where(rb, rbbb_scale[:, None] * rbbb_dir, dipole[:, X])
    for t in (T1, T2):
        dipole[:, t] = np.where(rb, dipole[:, t] - 0.5 * rbbb_t[:, None] * rbbb_dir, dipole[:, t])

    injured = (anterior | inferior)[:, None]
    dipole[:, ST] = np.where(injured, dipole[:, ST] + injury_size[:, None] * injury_dir, dipole[:, ST])
    for t in (T1, T2):
        dipole[:, t] = np.where(
            injured, dipole[:, t] + 0.5 * (hyperacute * injury_size)[:, None] * injury_dir, dipole[:, t]
        )

    # a ventricular premature beat: no P, wide bizarre QRS from the focus, discordant T
    pvc_dipole = np.zeros_like(dipole)
    pvc_width, pvc_offset = np.ones_like(width), np.zeros_like(offset)
    pvc_dipole[:, R] = pvc_size[:, None] * pvc_dir
    pvc_dipole[:, X] = pvc_size[:, None] * (-0.35 * pvc_dir + pvc_second)
    pvc_dipole[:, T1] = -0.3 * pvc_size[:, None] * pvc_dir
    pvc_width[:, R], pvc_offset[:, R] = pvc_qrs / 5.5, 0.4 * pvc_qrs
    pvc_width[:, X], pvc_offset[:, X] = pvc_qrs / 8, 0.75 * pvc_qrs
    pvc_width[:, T1], pvc_offset[:, T1] = 0.07 * s, pvc_qrs + 0.17 * s

    conditions = np.zeros((n, len(CONDITIONS)), dtype=bool)
    conditions[:, AF], conditions[:, SVT], conditions[:, PVC] = af, svt, pvc
    conditions[:, AVB1] = has_avb1 & sinus
    conditions[:, LBBB], conditions[:, RBBB], conditions[:, LVH] = has_lbbb, has_rbbb, has_lvh
    conditions[:, STEMI_ANTERIOR], conditions[:, STEMI_INFERIOR] = anterior, inferior
    return _Record(
        conditions,
        rr_mean,
        np.select([af, svt], [1, 2], 0),
        np.where(sinus, pr, np.nan),
        qrs,
        qt,
        offset,
        width,
        dipole,
        pvc_offset,
        pvc_width,
        pvc_dipole,
        rotation,
        gain,
        fib_dipole,
        record,
    )


def _beat_schedule(
    rec: _Record,
    beat_u: np.ndarray,
    duration_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """QRS onsets (B, K) NaN-padded, premature flags, per-beat amplitude factors, and the
    respiration (Hz, phase) that modulates RR, amplitude and baseline alike."""
    draw = rec.draws
    k = beat_u.shape[2]
    eps = ndtri(np.clip(beat_u[:, 0], 1e-12, 1 - 1e-12))
    resp_hz, resp_phase = draw.uniform(0.15, 0.35), draw.uniform(0, 2 * np.pi)
    rsa, resp_amplitude = draw.uniform(0.01, 0.06), draw.uniform(0.02, 0.08)
    af_sd = draw.uniform(0.15, 0.28)
    start = FIRST_BEAT_S + draw.uniform(0, 1) * rec.rr_mean
    nominal = start[:, None] + np.arange(k) * rec.rr_mean[:, None]
    sinus_rr = 1 + rsa[:, None] * np.sin(2 * np.pi * resp_hz[:, None] * nominal + resp_phase[:, None]) + 0.015 * eps
    af_rr = np.exp(af_sd[:, None] * eps - af_sd[:, None] ** 2 / 2)  # mean 1, irregularly irregular
    svt_rr = 1 + 0.008 * eps
    rr = rec.rr_mean[:, None] * np.choose(rec.rhythm[:, None], [sinus_rr, af_rr, svt_rr])
    rr = np.clip(rr, MIN_RR_S, 2.2)
    onsets = start[:, None] + np.cumsum(rr, axis=1) - rr[:, :1]

    # ventricular premature beats every 2nd-4th beat, early by a coupling of 55-75 % of the RR,
    # leaving the sinus schedule (hence the compensatory pause) untouched
    period = 2 + np.floor(draw.uniform(0, 3)).astype(np.int64)
    phase = np.floor(draw.uniform(0, 1) * period).astype(np.int64)
    beat = np.arange(k)
    premature = rec.conditions[:, [PVC]] & ((beat + phase[:, None]) % period[:, None] == 0) & (beat >= 1)
    coupling = 0.55 + 0.2 * beat_u[:, 1, 1:]
    coupled = np.concatenate([onsets[:, :1], onsets[:, :-1] + coupling * np.diff(onsets, axis=1)], axis=1)
    onsets = np.where(premature, coupled, onsets)
    onsets = np.where(onsets <= duration_s + LAST_BEAT_S, onsets, np.nan)

    amplitude = (1 + 0.03 * ndtri(np.clip(beat_u[:, 2], 1e-12, 1 - 1e-12))) * (
        1 + resp_amplitude[:, None] * np.sin(2 * np.pi * resp_hz[:, None] * onsets + resp_phase[:, None])
    )
    return onsets, premature & np.isfinite(onsets), amplitude, resp_hz, resp_phase


def _render_dipole(
    centres: np.ndarray, widths: np.ndarray, amplitudes: np.ndarray, n_samples: int, fs: int
) -> np.ndarray:
    """Sum of 3-D Gaussians (centres, widths (B, ...); amplitudes (B, ..., 3)) into a (B, 3, T)
    dipole, evaluating each Gaussian only within +-5 widths (relative error < 4e-6). Elements are
    flattened record by record and ``bincount`` sums them in that order, so a record's samples
    do not depend on the batch."""
    n = centres.shape[0]
    centres, widths, amplitudes = centres.reshape(n, -1), widths.reshape(n, -1), amplitudes.reshape(n, -1, 3)
    first = np.maximum(np.ceil((centres - 5 * widths) * fs), 0)
    last = np.minimum(np.floor((centres + 5 * widths) * fs), n_samples - 1)
    rows, cols = np.nonzero((last >= first) & np.any(amplitudes != 0, axis=-1))  # NaN centres drop out
    first = first[rows, cols].astype(np.int64)
    length = last[rows, cols].astype(np.int64) - first + 1
    element = np.repeat(np.arange(len(rows)), length)
    sample = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length - first, length)
    g = np.exp(-0.5 * ((sample / fs - centres[rows, cols][element]) / widths[rows, cols][element]) ** 2)
    target = rows[element] * n_samples + sample
    amps = amplitudes[rows, cols]
    return np.stack(
        [
            np.bincount(target, weights=g * amps[element, axis], minlength=n * n_samples).reshape(n, n_samples)
            for axis in range(3)
        ],
        axis=1,
    )


def _fibrillation(rec: _Record, t: np.ndarray) -> np.ndarray:
    """AF f waves (B, 3, T): a 4-9 Hz oscillation with slowly wandering frequency and amplitude."""
    draw = rec.draws
    f0, df, fm = draw.uniform(4.5, 8.5), draw.uniform(0.3, 0.8), draw.uniform(0.1, 0.3)
    phase_m, phase_0 = draw.uniform(0, 2 * np.pi), draw.uniform(0, 2 * np.pi)
    am, fa, phase_a = draw.uniform(0, 0.3), draw.uniform(0.2, 1.0), draw.uniform(0, 2 * np.pi)
    out = np.zeros((len(rec.rhythm), 3, len(t)), dtype=np.float32)
    rows = np.nonzero(rec.rhythm == 1)[0]
    if len(rows):
        f0, df, fm, phase_m, phase_0, am, fa, phase_a = (
            v[rows, None] for v in (f0, df, fm, phase_m, phase_0, am, fa, phase_a)
        )
        phase = 2 * np.pi * f0 * t + (df / fm) * np.sin(2 * np.pi * fm * t + phase_m) + phase_0
        wave = (1 + am * np.sin(2 * np.pi * fa * t + phase_a)) * np.sin(phase)
        out[rows] = rec.fib_dipole[rows, :, None] * wave[:, None, :]
    return out


def _project(dipole: np.ndarray) -> np.ndarray:
    """Dower projection (B, 3, T) -> I, II, V1..V6 (B, 8, T), each lead scaled by :data:`LEAD_GAIN`,
    written out so that no BLAS call (whose blocking may depend on the batch size) touches the numbers."""
    dower = (DOWER * LEAD_GAIN[:, None]).astype(dipole.dtype)
    eight = dower[None, :, 0, None] * dipole[:, None, 0, :]
    for axis in (1, 2):
        eight += dower[None, :, axis, None] * dipole[:, None, axis, :]
    return eight


def _twelve_leads(eight: np.ndarray) -> np.ndarray:
    """I, II, V1..V6 -> the 12 leads of :data:`LEADS` by Einthoven's and Goldberger's identities."""
    lead_i, lead_ii = eight[:, 0], eight[:, 1]
    out = np.empty((eight.shape[0], len(LEADS), eight.shape[2]), dtype=eight.dtype)
    out[:, 0], out[:, 1], out[:, 6:] = lead_i, lead_ii, eight[:, 2:]
    np.subtract(lead_ii, lead_i, out=out[:, 2])  # III
    np.multiply(lead_i + lead_ii, -0.5, out=out[:, 3])  # aVR
    np.subtract(lead_i, 0.5 * lead_ii, out=out[:, 4])  # aVL
    np.subtract(lead_ii, 0.5 * lead_i, out=out[:, 5])  # aVF
    return out


def _electrode_noise(
    config: SyntheticConfig,
    rec: _Record,
    white: np.ndarray,
    t: np.ndarray,
    fs: int,
    resp_hz: np.ndarray,
    resp_phase: np.ndarray,
) -> np.ndarray:
    """Noise at each electrode (B, 9, T): baseline wander (respiration + drift), EMG-like
    broadband noise with a burst, 50/60 Hz pickup (only below Nyquist, so never aliased) and,
    occasionally, an electrode pop (decaying step) or a motion burst on one electrode."""
    draw = rec.draws
    n, n_el = len(resp_hz), len(ELECTRODES)

    def col(v: np.ndarray) -> np.ndarray:
        return v[:, None]

    def f32(v: np.ndarray) -> np.ndarray:  # noise needs no more precision
        return v.astype(np.float32)

    # baseline wander: a few slow sources (respiration, drifts) mixed differently into each
    # electrode; log-normal in size across records, as most real records are nearly flat and a few drift a lot
    wander = config.baseline_wander_mv * np.exp(draw.normal(0.0, WANDER_LOG_SD))
    drifts = [np.sin(2 * np.pi * col(resp_hz) * t + col(resp_phase))]
    for low, high in ((0.05, 0.15), (0.15, 0.5)):
        drifts.append(np.sin(2 * np.pi * col(draw.uniform(low, high)) * t + col(draw.uniform(0, 2 * np.pi))))
    mixing = draw.uniform(-1, 1, n_el * len(drifts)).reshape(n, n_el, len(drifts)) * wander[:, None, None]
    mixing *= ELECTRODE_WANDER[:, None]

    # EMG: white noise band-limited to EMG_BAND_HZ (what a diagnostic recorder passes of muscle
    # activity), scaled in physical units so that a record keeps its noise spectrum below
    # Nyquist at any rate, under a burst of muscle activity
    emg = config.emg_mv * np.exp(draw.normal(0.0, EMG_LOG_SD))[:, None] * draw.uniform(0.5, 1.5, n_el)
    tension, tense_at, tense_s = draw.uniform(0, 2), draw.uniform(0, config.duration_s), draw.uniform(0.2, 1.0)
    burst = 1 + col(tension) * np.exp(-0.5 * ((t - col(tense_at)) / col(tense_s)) ** 2)
    noise = _band_limited(white, fs)
    noise *= f32(emg)[:, :, None]
    noise *= f32(burst)[:, None, :]
    for j, drift in enumerate(drifts):
        noise += f32(mixing[:, :, j, None]) * f32(drift)[:, None, :]

    line_hz = config.powerline_hz + draw.uniform(-0.1, 0.1)
    line_amplitude = (
        config.powerline_mv * np.exp(draw.normal(0.0, POWERLINE_LOG_SD))[:, None] * draw.uniform(0, 1, n_el)
    )
    line_phase = draw.uniform(0, 2 * np.pi, n_el)
    if config.powerline_hz + 0.1 < fs / 2:
        carrier = 2 * np.pi * col(line_hz) * t  # sin(w t + p) = sin(w t) cos p + cos(w t) sin p
        noise += f32(line_amplitude * np.cos(line_phase))[:, :, None] * f32(np.sin(carrier))[:, None, :]
        noise += f32(line_amplitude * np.sin(line_phase))[:, :, None] * f32(np.cos(carrier))[:, None, :]

    has_artefact = draw.bernoulli(config.artefact_probability)
    electrode = np.minimum(np.floor(draw.uniform(0, n_el)), n_el - 1).astype(np.int64)
    is_pop = draw.bernoulli(0.5)
    onset = draw.uniform(0.1, 0.8) * config.duration_s
    size = draw.uniform(0.3, 1.5) * np.where(draw.bernoulli(0.5), 1.0, -1.0)
    decay, burst_hz, burst_s = draw.uniform(0.2, 1.0), draw.uniform(1.0, 6.0), draw.uniform(0.3, 1.2)
    rows = np.nonzero(has_artefact)[0]
    if len(rows):
        since = t - onset[rows, None]
        pop = np.where(since >= 0, np.exp(-np.maximum(since, 0) / decay[rows, None]), 0.0)
        inside = (since >= 0) & (since <= burst_s[rows, None])
        motion = np.where(
            inside,
            np.sin(np.pi * since / burst_s[rows, None]) ** 2 * np.sin(2 * np.pi * burst_hz[rows, None] * since),
            0.0,
        )
        noise[rows, electrode[rows]] += size[rows, None] * np.where(is_pop[rows, None], pop, motion)
    return noise


@lru_cache(maxsize=8)
def _emg_filter(fs: int) -> tuple[np.ndarray, float]:
    """Band-pass for EMG at ``fs`` and the gain that gives white noise through it the variance
    share of :data:`EMG_BAND_HZ` that lies below 0.45 fs (1 when the whole band does)."""
    low, high = EMG_BAND_HZ
    top = min(high, 0.45 * fs)
    sos = butter(2, (low, top), btype="bandpass", fs=fs, output="sos")
    freqs, response = sosfreqz(sos, worN=8192, fs=fs)
    passed = np.trapezoid(np.abs(response) ** 4, freqs) * 2 / fs  # variance of unit white noise after sosfiltfilt
    return sos, float(np.sqrt((top - low) / (high - low) / passed))


def _band_limited(white: np.ndarray, fs: int) -> np.ndarray:
    """Uniform white noise (B, E, T) in [0, 1) -> float32 noise band-limited to :data:`EMG_BAND_HZ`
    (zero-phase, so no start-up transient), of unit variance when the whole band is below Nyquist."""
    sos, gain = _emg_filter(fs)
    return (sosfiltfilt(sos, white - np.float32(0.5), axis=-1) * (gain * np.sqrt(12.0))).astype(np.float32)


def n_samples_for(config: SyntheticConfig, fs: int) -> int:
    return int(round(config.duration_s * fs))


def generate(config: SyntheticConfig, indices: np.ndarray | list[int], fs: int, noise: bool = True) -> SyntheticBatch:
    """Records ``indices`` at ``fs`` Hz; each one depends only on (config, its index, fs).

    ``noise=False`` skips the noise (the heart is unchanged); ``clean`` is always returned.
    """
    if not isinstance(fs, (int, np.integer)) or fs < MIN_FS:
        raise ValueError(f"synthetic: fs must be an integer >= {MIN_FS} Hz, got {fs!r}")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) and (indices.min() < 0 or indices.max() >= config.n_records):
        raise ValueError(
            f"synthetic: record indices must be in [0, {config.n_records}), got {indices.min()}..{indices.max()}"
        )
    n_samples = n_samples_for(config, fs)
    t = np.arange(n_samples) / fs
    patient_u, record_u, beat_u, label_u, white = _random_streams(config, indices, n_samples, noise)
    rec = _draw_record(patient_u, record_u)
    onsets, premature, beat_amplitude, resp_hz, resp_phase = _beat_schedule(rec, beat_u, config.duration_s)

    # every wave of every beat, rotated into the body and scaled by habitus
    ectopic = premature[:, :, None]
    centres = onsets[:, :, None] + np.where(ectopic, rec.pvc_offsets[:, None], rec.offsets[:, None])
    widths = np.where(ectopic, rec.pvc_widths[:, None], rec.widths[:, None])
    heart = np.where(ectopic[..., None], rec.pvc_dipole[:, None], rec.dipole[:, None])
    body = _rotate(heart, rec.rotation) * (rec.gain[:, None, None, None] * beat_amplitude[:, :, None, None])
    dipole = _render_dipole(centres, widths, body, n_samples, fs).astype(np.float32)
    dipole += _fibrillation(rec, t) * rec.gain.astype(np.float32)[:, None, None]
    eight = _project(dipole)
    clean = _twelve_leads(eight)

    lead_mask = np.ones((len(indices), len(LEADS)), dtype=bool)
    if noise:
        electrode = _electrode_noise(config, rec, white, t, fs, resp_hz, resp_phase)
        ra, la, ll = electrode[:, 0], electrode[:, 1], electrode[:, 2]
        eight[:, 0] += la - ra
        eight[:, 1] += ll - ra
        eight[:, 2:] += electrode[:, 3:] - ((ra + la + ll) / 3)[:, None]  # against Wilson's central terminal
        lead_off = rec.draws.bernoulli(config.lead_off_probability)
        precordial = np.minimum(np.floor(rec.draws.uniform(0, 6)), 5).astype(np.int64)
        rows = np.nonzero(lead_off)[0]
        eight[rows, 2 + precordial[rows]] = 0.0
        lead_mask[rows, LEADS.index("V1") + precordial[rows]] = False
    signals = _twelve_leads(eight)

    true_labels = rec.conditions.astype(np.uint8)
    labels = np.where(label_u < config.label_noise, 1 - true_labels, true_labels).astype(np.uint8)
    st_body = _rotate(rec.dipole[:, ST], rec.rotation) * rec.gain[:, None]
    st_at_j60 = np.exp(-0.5 * ((rec.qrs + 0.06 - rec.offsets[:, ST]) / rec.widths[:, ST]) ** 2)
    truth = GroundTruth(
        heart_rate_bpm=60.0 / rec.rr_mean,
        rhythm=np.array(["sinus", "af", "svt"])[rec.rhythm],
        pr_interval_s=rec.pr,
        qrs_duration_s=rec.qrs,
        qt_interval_s=rec.qt,
        qrs_onsets_s=onsets,
        premature=premature,
        st_offset_mv=_twelve_leads(_project(st_body[:, :, None]))[:, :, 0] * st_at_j60[:, None],
    )
    return SyntheticBatch(
        signals, clean, lead_mask, labels, true_labels, indices // config.records_per_patient, indices, truth
    )


# -- the plugin --------------------------------------------------------------------------------
def with_icd_labels(arrays: ECGArrays) -> ECGArrays:
    """Add the ICD ancestors (categories, blocks, chapter IX) of the condition labels; an
    ancestor is positive when any of its descendants is, so the hierarchy stays consistent."""
    names, parents = icd_hierarchy(arrays.label_names)
    conditions = np.asarray(arrays.labels)
    descendants = {
        name: [j for j, code in enumerate(arrays.label_names) if name in icd_label_names(code)] for name in names
    }
    labels = np.stack([conditions[:, descendants[name]].max(axis=1) for name in names], axis=1).astype(np.uint8)
    return ECGArrays(
        **{
            **arrays.__dict__,
            "labels": labels,
            "label_names": names,
            "label_parents": parents,
            "label_descriptions": {name: icd_description(name) for name in names},
        }
    )


@DATASETS.register("synthetic")
class SyntheticECG(DatasetPlugin):
    """Physics-based synthetic 12-lead ECGs (the dataset used when nothing is downloaded)."""

    summary = "synthetic 12-lead ECGs from a 3-D cardiac dipole, 9 ICD-10-CM conditions, no download"
    Config: ClassVar[type[DatasetConfig]] = SyntheticConfig
    label_sets = ("conditions", "icd")

    def cache_dir(self, fs: int, cache_root: Path) -> Path:
        return Path(cache_root) / "synthetic" / f"{config_hash(self.config)}-fs{fs}"

    def load(self, fs: int, label_set: str, cache_root: Path, progress: bool = True) -> ECGArrays:
        """Generate once into the cache, then return the memory-mapped arrays.

        Signals are cached as float16 mV: steps of at most 2 uV below 4 mV, as fine as clinical
        recorders' 1-5 uV resolution, at half the disk and page cache of float32.
        """
        self.check_label_set(label_set)
        if not isinstance(fs, (int, np.integer)) or fs < MIN_FS:
            raise DataError(f"synthetic: fs must be an integer >= {MIN_FS} Hz, got {fs!r}")
        directory = self.cache_dir(fs, cache_root)
        if not (directory / "meta.json").is_file():
            self._build(directory, fs, progress)
        arrays = ECGArrays.load(directory)
        return with_icd_labels(arrays) if label_set == "icd" else arrays

    def _build(self, directory: Path, fs: int, progress: bool) -> None:
        config = self.config
        n, n_samples = config.n_records, n_samples_for(config, fs)
        chunk = max(16, 1_500_000 // (len(LEADS) * n_samples))  # work arrays stay cache-sized: faster
        directory.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".scratch-", dir=directory.parent) as scratch:
            signals = np.lib.format.open_memmap(
                Path(scratch) / "signals.npy", mode="w+", dtype=np.float16, shape=(n, len(LEADS), n_samples)
            )
            lead_mask = np.empty((n, len(LEADS)), dtype=bool)
            labels = np.empty((n, len(CONDITIONS)), dtype=np.uint8)
            with tqdm(total=n, unit="rec", desc=f"synthetic ECG {fs} Hz", disable=not progress) as bar:
                for start in range(0, n, chunk):
                    batch = generate(config, np.arange(start, min(start + chunk, n)), fs)
                    rows = slice(start, start + len(batch.record_ids))
                    signals[rows], lead_mask[rows], labels[rows] = batch.signals, batch.lead_mask, batch.labels
                    bar.update(len(batch.record_ids))
            signals.flush()
            record_ids = np.arange(n, dtype=np.int64)
            ECGArrays(
                name="synthetic",
                fs=fs,
                signals=signals,
                lead_mask=lead_mask,
                labels=labels,
                label_names=list(CONDITION_CODES),
                patient_ids=record_ids // config.records_per_patient,
                record_ids=record_ids,
                splits=record_splits(config),
                label_descriptions={code: icd_description(code) for code in CONDITION_CODES},
            ).save(directory)
