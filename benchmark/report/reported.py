"""Published reference numbers (docs/method_specs.md §6), shown beside measured results and never
mixed with them: the leaderboard prints them in their own "reported" tables.

Each number is a macro AUROC or the AUROC of one label, as printed in its source, on the
source's own data version, label set and model scale — context for our measurements, not a
result of this suite. The LAMAE paper's "IX" row is the AUROC of ONE label, the chapter-level
code IX (any Chapter IX diagnosis; its Appendix B calls it "the chapter-level aggregate", and
its I08 row, 0.8272, lies below all three of I08's children, so its rows are single labels, not
averages): it is compared with the measured AUROC of the label IX, never with a macro average.

A number is shown beside a measured table only when it is the same task: the same dataset **and
label set** (``label_sets``: the LAMAE paper's Chapter IX codes are ``mimic-iv-ecg`` ·
``chapter-ix``, never PTB-XL; Strodthoff et al.'s superdiagnostic anchor is ``ptbxl`` ·
``superdiagnostic``, never another PTB-XL task) and the same protocol; a source whose task has no
label set here (the reality check's "cardiac ICD codes") appears only in the closing section of
all reported numbers. ``caveats`` say what still differs from a run of this suite.

Every reported method names the methods of this suite that measure the same thing under that
protocol (``ours``). The LAMAE paper's Tables 1/3 are linear probes of frozen backbones, so its
"Scratch" column is a frozen untrained encoder (``random_init``) there and the supervised
``scratch`` only under fine-tuning; the alternative reading of its "Ind_S" (the independent-lead
model not pretrained) is ``random_init[arch=ind_p]`` under frozen protocols.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.registry import PROTOCOLS

LAMAE_PAPER = "LAMAE paper (arXiv 2603.26475), Tables 3/4"
REALITY_CHECK = 'Al-Masud, Strodthoff et al., ICLR 2026, "Benchmarking ECG FMs: a reality check"'
PTBXL_BENCHMARK = (
    'Strodthoff et al. 2021, "Deep learning for ECG analysis: benchmarks and insights from PTB-XL", '
    "IEEE JBHI 25:1519 (leaderboard of github.com/helme/ecg_ptbxl_benchmarking)"
)
PTBXL_BENCHMARK_CAVEATS = (
    "the full PTB-XL v1.0.1 (folds 1-8, about 17 thousand training records, against this suite's subsets); "
    "one training run, the last digits of 0.928(05) the spread of a bootstrap of the test fold; input "
    "standardised with the training records' mean and deviation, 100 Hz, 50 epochs on random 2.5-s crops, "
    "tested on sliding 2.5-s windows (stride 1.25 s) whose scores are aggregated by their maximum (this "
    "suite: one centred window of the preset's length)"
)
MIMIC = ("mimic-iv-ecg", "mimic_iv_ecg", "mimic-iv-ecg-ext-icd", "mimic")
PTBXL = ("ptb-xl", "ptbxl", "ptb_xl")
LAMAE_DATA = "MIMIC-IV-ECG-Ext-ICD, ICD-10 chapter IX codes"

#: the LAMAE paper's columns -> the methods of this suite measuring the same, per protocol kind
#: (``Protocol.kind``: "frozen" probes, "finetune");
#: Ind_S: our default reading (a shared encoder, ``ind_s``), then the alternative (not pretrained)
PAPER_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "LAMAE": {"frozen": ("lamae",), "finetune": ("lamae",)},
    "LAMAE_E": {"frozen": ("lamae_e",), "finetune": ("lamae_e",)},
    "Scratch": {"frozen": ("random_init",), "finetune": ("scratch",)},
    "MVMAE": {"frozen": ("mvmae",), "finetune": ("mvmae",)},
    "Ind_P": {"frozen": ("ind_p",), "finetune": ("ind_p",)},
    "Ind_S": {"frozen": ("ind_s", "random_init[arch=ind_p]"), "finetune": ("ind_s", "scratch[arch=ind_p]")},
}
#: the reality check's methods that this suite has (S4 and ECG-JEPA it has not)
REALITY_CHECK_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "ST-MEM": {"frozen": ("st_mem",), "finetune": ("st_mem",)}
}


@dataclass(frozen=True)
class Reported:
    source: str
    datasets: tuple[str, ...]  # our dataset plugin names this refers to
    label_sets: tuple[str, ...]  # our label sets of the same task (empty: none, so beside no table)
    data: str  # dataset and labels as the source names them
    protocol: str  # our protocol name
    method: str  # as the source names it
    auroc: float
    label: str = "macro"  # or one label (an ICD code, or the chapter IX)
    ours: tuple[str, ...] = ()  # the methods of this suite that measure the same thing
    caveats: str = ""  # what differs from this suite's measurement besides the data version


def _rows(
    source: str,
    task: tuple[tuple[str, ...], tuple[str, ...]],
    data: str,
    protocol: str,
    values: dict[str, float],
    label: str,
    columns: dict,
    caveats: str = "",
) -> list[Reported]:
    datasets, label_sets = task
    return [
        Reported(
            source,
            datasets,
            label_sets,
            data,
            protocol,
            m,
            value,
            label,
            columns.get(m, {}).get(PROTOCOLS.get(protocol).kind, ()),
            caveats,
        )
        for m, value in values.items()
    ]


#: the tasks (our datasets, our label sets) the sources report
LAMAE_TASK = (MIMIC, ("chapter-ix",))
PTBXL_ALL = (PTBXL, ("all",))
PTBXL_SUPERDIAGNOSTIC = (PTBXL, ("superdiagnostic",))
MIMIC_CARDIAC = (MIMIC, ())  # the reality check's cardiac ICD codes: no label set of this suite
#: Strodthoff et al.'s xresnet1d101 is this suite's supervised ``xresnet1d`` reference (fine-tuning protocol)
PTBXL_BENCHMARK_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {"xresnet1d101": {"finetune": ("xresnet1d",)}}

REPORTED: tuple[Reported, ...] = (
    *_rows(
        LAMAE_PAPER,
        LAMAE_TASK,
        LAMAE_DATA,
        "linear",
        {"LAMAE": 0.8345, "LAMAE_E": 0.8340, "Scratch": 0.7715, "MVMAE": 0.6771, "Ind_P": 0.8380, "Ind_S": 0.7776},
        "IX",
        PAPER_COLUMNS,
    ),
    *_rows(LAMAE_PAPER, LAMAE_TASK, LAMAE_DATA, "finetune", {"LAMAE": 0.8495, "LAMAE_E": 0.8486}, "IX", PAPER_COLUMNS),
    *(
        r
        for code, value in {"I210": 0.9615, "I211": 0.9749, "I447": 0.9452, "I48": 0.9016, "I482": 0.9312}.items()
        for r in _rows(LAMAE_PAPER, LAMAE_TASK, LAMAE_DATA, "finetune", {"LAMAE": value}, code, PAPER_COLUMNS)
    ),
    *_rows(
        PTBXL_BENCHMARK,
        PTBXL_SUPERDIAGNOSTIC,
        "PTB-XL, diagnostic superclasses",
        "finetune",
        {"xresnet1d101": 0.928},
        "macro",
        PTBXL_BENCHMARK_COLUMNS,
        PTBXL_BENCHMARK_CAVEATS,
    ),
    *(
        r
        for protocol, values in {
            "finetune": {"ECG-JEPA": 0.940, "ST-MEM": 0.908, "S4 (supervised, from scratch)": 0.941},
            "attention_probe": {"ECG-JEPA": 0.934, "ST-MEM": 0.910},
            "linear": {"ECG-JEPA": 0.928, "ST-MEM": 0.908},
        }.items()
        for r in _rows(
            REALITY_CHECK, PTBXL_ALL, "PTB-XL, all statements", protocol, values, "macro", REALITY_CHECK_COLUMNS
        )
    ),
    *(
        r
        for protocol, values in {
            "finetune": {"ST-MEM": 0.760, "S4 (supervised, from scratch)": 0.780},
            "attention_probe": {"ST-MEM": 0.734},
            "linear": {"ST-MEM": 0.761},
        }.items()
        for r in _rows(
            REALITY_CHECK,
            MIMIC_CARDIAC,
            "MIMIC-IV-ECG, cardiac ICD codes",
            protocol,
            values,
            "macro",
            REALITY_CHECK_COLUMNS,
        )
    ),
)


def reported_for(dataset: str, label_set: str, protocol: str) -> list[Reported]:
    """Published numbers of the same task as one of our tables: dataset, label set and protocol."""
    return [r for r in REPORTED if dataset in r.datasets and label_set in r.label_sets and r.protocol == protocol]
