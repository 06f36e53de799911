"""The shared-label task: diagnoses that PTB-XL, LUDB and the CinC Challenge all label, each
mapped from the source's own code system, so a model trained on one source is tested on another.

One table, read in one place: a common label is positive when the record carries any of the
source's codes listed for it. PTB-XL codes are SCP-ECG statements (``scp_statements.csv``; any
likelihood counts, as in the PTB-XL benchmark), LUDB codes are the ``ludb`` plugin's named labels
(its documented map of LUDB's diagnosis texts, datasets/ludb.py), CinC codes are SNOMED CT codes
after the Challenge's equivalences (benchmark/data/challenge.py). Every entry is a [choice] made
from the sources' own definitions; where a source lumps two findings in one code the code
counts for both (CinC's 195080001 "atrial fibrillation and flutter").

Left out on purpose: sinus rhythm (PTB-XL's SR and CinC's NSR co-occur with sinus bradycardia
and tachycardia in one source and exclude them in another), ST-T and ischaemia findings (LUDB's
wall-wise ischaemia/scar texts have no counterpart with the same definition), axis (PTB-XL has
no axis statement).
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES: tuple[str, ...] = ("ptbxl", "ludb", "cinc")


@dataclass(frozen=True)
class CommonLabel:
    name: str
    description: str
    ptbxl: tuple[str, ...]  # SCP-ECG statements
    ludb: tuple[str, ...]  # ludb plugin label names
    cinc: tuple[str, ...]  # SNOMED CT codes (canonical after the Challenge's equivalences)


COMMON_LABELS: tuple[CommonLabel, ...] = (
    CommonLabel(
        "AF",
        "atrial fibrillation",
        ("AFIB",),
        ("AF",),
        ("164889003", "426749004", "282825002", "314208002", "195080001"),
    ),
    CommonLabel("AFL", "atrial flutter", ("AFLT",), ("AFL",), ("164890007", "195080001")),
    CommonLabel("SB", "sinus bradycardia", ("SBRAD",), ("SB",), ("426177001",)),
    CommonLabel("STach", "sinus tachycardia", ("STACH",), ("STach",), ("427084000",)),
    CommonLabel("SA", "sinus arrhythmia", ("SARRH",), ("SA",), ("427393009",)),
    CommonLabel("IAVB", "first-degree AV block", ("1AVB",), ("IAVB",), ("270492004",)),
    CommonLabel("IIIAVB", "third-degree (complete) AV block", ("3AVB",), ("IIIAVB",), ("27885002",)),
    CommonLabel("RBBB", "complete right bundle branch block", ("CRBBB",), ("CRBBB",), ("713427006",)),
    CommonLabel("IRBBB", "incomplete right bundle branch block", ("IRBBB",), ("IRBBB",), ("713426002",)),
    CommonLabel("LBBB", "complete left bundle branch block", ("CLBBB",), ("CLBBB",), ("733534002",)),
    CommonLabel("ILBBB", "incomplete left bundle branch block", ("ILBBB",), ("ILBBB",), ("251120003",)),
    CommonLabel("LAFB", "left anterior fascicular block", ("LAFB",), ("LAnFB",), ("445118002",)),
    CommonLabel("IVCD", "non-specific intraventricular conduction delay", ("IVCD",), ("NSIVCB",), ("698252002",)),
    CommonLabel("LVH", "left ventricular hypertrophy", ("LVH",), ("LVH",), ("164873001",)),
    CommonLabel("RVH", "right ventricular hypertrophy", ("RVH",), ("RVH",), ("89792004",)),
    CommonLabel("PAC", "premature atrial complex(es)", ("PAC",), ("PAC",), ("284470004",)),
    CommonLabel("PVC", "premature ventricular complex(es)", ("PVC",), ("PVC",), ("427172004", "164884008")),
    CommonLabel("PACE", "pacemaker rhythm", ("PACE",), ("PACE",), ("10370003", "251268003", "251266004")),
)
COMMON_DESCRIPTIONS: dict[str, str] = {label.name: label.description for label in COMMON_LABELS}
COMMON_ORDER: dict[str, int] = {label.name: k for k, label in enumerate(COMMON_LABELS)}


def common_tokens(source: str, codes: list[str]) -> list[str]:
    """The common labels that a record with these ``source`` codes carries (table order)."""
    if source not in SOURCES:
        raise ValueError(f"no common-label map for source {source!r}; sources: {', '.join(SOURCES)}")
    present = set(codes)
    return [label.name for label in COMMON_LABELS if present & set(getattr(label, source))]


def order_common(names: list[str]) -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    """``describe_labels`` of the common set: table order and descriptions."""
    ordered = sorted(names, key=COMMON_ORDER.__getitem__)
    return ordered, {name: COMMON_DESCRIPTIONS[name] for name in ordered}, {}
