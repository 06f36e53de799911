"""Published reference numbers (docs/method_specs.md §6), shown beside measured results and never
mixed with them: the leaderboard prints them in their own "reported" tables.

Each number is macro AUROC (or one code's AUROC) as printed in its source, on the source's own
data version, label set and model scale — context for our measurements, not a result of this
suite.
"""

from __future__ import annotations

from dataclasses import dataclass

LAMAE_PAPER = "LAMAE paper (arXiv 2603.26475), Tables 3/4"
REALITY_CHECK = 'Al-Masud, Strodthoff et al., ICLR 2026, "Benchmarking ECG FMs: a reality check"'
MIMIC = ("mimic-iv-ecg", "mimic_iv_ecg", "mimic-iv-ecg-ext-icd", "mimic")
PTBXL = ("ptb-xl", "ptbxl", "ptb_xl")


@dataclass(frozen=True)
class Reported:
    source: str
    datasets: tuple[str, ...]  # our dataset plugin names this refers to
    data: str  # dataset and labels as the source names them
    protocol: str  # our protocol name
    method: str  # as the source names it
    auroc: float
    label: str = "macro"  # or one ICD code


def _rows(source, datasets, data, protocol, values: dict[str, float], label: str = "macro") -> list[Reported]:
    return [Reported(source, datasets, data, protocol, method, value, label) for method, value in values.items()]


REPORTED: tuple[Reported, ...] = (
    *_rows(
        LAMAE_PAPER,
        MIMIC,
        "MIMIC-IV-ECG-Ext-ICD, ICD-10 chapter IX codes",
        "linear",
        {"LAMAE": 0.8345, "LAMAE_E": 0.8340, "Scratch": 0.7715, "MVMAE": 0.6771, "Ind_P": 0.8380, "Ind_S": 0.7776},
    ),
    *_rows(
        LAMAE_PAPER,
        MIMIC,
        "MIMIC-IV-ECG-Ext-ICD, ICD-10 chapter IX codes",
        "finetune",
        {"LAMAE": 0.8495, "LAMAE_E": 0.8486},
    ),
    *(
        r
        for code, value in {"I210": 0.9615, "I211": 0.9749, "I447": 0.9452, "I48": 0.9016, "I482": 0.9312}.items()
        for r in _rows(
            LAMAE_PAPER,
            MIMIC,
            "MIMIC-IV-ECG-Ext-ICD, ICD-10 chapter IX codes",
            "finetune",
            {"LAMAE": value},
            label=code,
        )
    ),
    *(
        r
        for protocol, values in {
            "finetune": {"ECG-JEPA": 0.940, "ST-MEM": 0.908, "S4 (supervised, from scratch)": 0.941},
            "attention_probe": {"ECG-JEPA": 0.934, "ST-MEM": 0.910},
            "linear": {"ECG-JEPA": 0.928, "ST-MEM": 0.908},
        }.items()
        for r in _rows(REALITY_CHECK, PTBXL, "PTB-XL, all statements", protocol, values)
    ),
    *(
        r
        for protocol, values in {
            "finetune": {"ST-MEM": 0.760, "S4 (supervised, from scratch)": 0.780},
            "attention_probe": {"ST-MEM": 0.734},
            "linear": {"ST-MEM": 0.761},
        }.items()
        for r in _rows(REALITY_CHECK, MIMIC, "MIMIC-IV-ECG, cardiac ICD codes", protocol, values)
    ),
)


def reported_for(dataset: str, protocol: str) -> list[Reported]:
    """Published numbers for one of our datasets under one of our protocols."""
    return [r for r in REPORTED if dataset in r.datasets and r.protocol == protocol]
