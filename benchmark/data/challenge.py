"""The PhysioNet/CinC Challenge 2020-21 label system: ``# Dx:`` header lines and SNOMED CT codes.

Shared by the ``wfdb-folder`` plugin (which reads a Challenge folder's codes as they are) and the
``cinc`` plugin (which maps them with the Challenge's own tables). Sources: Perez Alday et al.,
Physiol. Meas. 41:124003 (2020); Reyna et al., Computing in Cardiology 48 (2021); the tables of
``physionetchallenges/evaluation-2021`` (``dx_mapping_scored.csv``, ``dx_mapping_unscored.csv``,
BSD-2) and ``evaluation-2020`` (``Dx_map.csv``).

- **Equivalent codes**: the scored table's ``Notes`` say "We score A and B as the same
  diagnosis"; as the Challenge's ``evaluate_model.py`` does, B is replaced by A (the first code of
  the note) -- e.g. complete RBBB 713427006 and RBBB 59118001 become one label.
- **Early CPSC headers** (``A0001-A0150`` of the 2020 v1 release) carry the CPSC 2018 class
  names (Liu et al., J. Med. Imaging Health Inform. 8:1368, 2018) instead of codes: ``Normal``,
  ``AF``, ``I-AVB``, ``LBBB``, ``RBBB``, ``PAC``, ``PVC``, ``STD``, ``STE``. They are mapped with
  the same tables: the name (``Normal`` read as the tables' ``NSR``, ``I-AVB`` as ``IAVB``, the
  two spellings the tables do not use) is looked up among the tables' abbreviations, and of the
  codes that carry it the one the 2021 tables count in the ``CPSC`` source is taken (``PVC``
  names two codes in ``Dx_map.csv``; CPSC's is 164884008, 700 records in the CPSC column).
- A code or name that no table knows is not guessed: it is dropped from the record's labels and
  reported.
- **Sources annotate different codes.** The Challenge pools databases labelled with different
  vocabularies: CPSC 2018 names 9 classes, so its records are not negatives for sinus bradycardia
  or LVH, they were never read for them. The 2021 tables count each code's records per source
  (columns ``CPSC`` ... ``Ningbo``); a source annotates a code when the tables count a record of
  it (or of an equivalent code) there [choice: the sources' own label lists are not all published].
  A record's source follows from its name (:data:`SOURCE_PREFIXES`; ``JS`` records up to
  ``JS10646`` are Chapman-Shaoxing, later ones Ningbo, as the 2021 release numbers them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from benchmark.data.contract import DataError
from benchmark.data.files import parse_list_cell, read_csv

DX_LINE = re.compile(r"^#\s*Dx:\s*(.*)$", re.IGNORECASE | re.MULTILINE)
EQUIVALENCE_NOTE = re.compile(r"score (\d+) and (\d+) as the same diagnosis", re.IGNORECASE)
TABLE_FILES = SCORED, UNSCORED, DX_MAP_2020 = (
    "eval2021_dx_mapping_scored.csv",
    "eval2021_dx_mapping_unscored.csv",
    "eval2020_Dx_map.csv",
)
TABLES_FIX = (
    "put the Challenge's mapping tables there (eval2021_dx_mapping_scored.csv and eval2021_dx_mapping_unscored.csv "
    "from physionetchallenges/evaluation-2021, eval2020_Dx_map.csv from evaluation-2020) or set cinc.tables_dir"
)
CPSC_ALIASES = {"Normal": "NSR", "I-AVB": "IAVB"}  # CPSC 2018 class names the tables spell otherwise
#: record-name prefix -> the 2021 tables' source column (longest prefix first; JS: see challenge_source)
SOURCE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("HR", "PTB_XL"),
    ("JS", "Chapman_Shaoxing"),
    ("A", "CPSC"),
    ("Q", "CPSC_Extra"),
    ("I", "StPetersburg"),
    ("S", "PTB"),
    ("E", "Georgia"),
)
SOURCES: tuple[str, ...] = (
    "CPSC",
    "CPSC_Extra",
    "StPetersburg",
    "PTB",
    "PTB_XL",
    "Georgia",
    "Chapman_Shaoxing",
    "Ningbo",
)
LAST_CHAPMAN = 10646  # JS00001-JS10646 Chapman-Shaoxing, JS10647-JS45551 Ningbo (2021 release)
_RECORD_NAME = re.compile(r"^([A-Z]+)(\d+)$")


def challenge_source(record: str) -> str | None:
    """The source database of a Challenge record from its name (``A0001`` -> ``CPSC``; a path's
    last part is the name); None for a name no source uses."""
    found = _RECORD_NAME.match(record.rsplit("/", 1)[-1].upper())
    if found is None:
        return None
    prefix, number = found.groups()
    if prefix == "JS":
        return "Chapman_Shaoxing" if int(number) <= LAST_CHAPMAN else "Ningbo"
    return next((source for start, source in SOURCE_PREFIXES if prefix == start), None)


def header_records(dataset: str, root: Path, fix: str) -> list[str]:
    """Every record below ``root`` that has a ``.hea`` file: its path without extension, sorted.
    A folder without one is refused in one line naming ``dataset``, the folder and ``fix``."""
    paths = sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.hea"))
    if not paths:
        raise DataError(f"{dataset}: no .hea file under {root}; {fix}")
    return paths


def read_dx(header: Path) -> list[str]:
    """The tokens of a header's ``# Dx:`` line; ValueError (the reason) when there is none."""
    found = DX_LINE.search(header.read_text(errors="replace")) if header.is_file() else None
    if found is None:
        raise ValueError(f"no '# Dx:' line in {header}")
    return parse_list_cell(found.group(1).strip() or "[]", separator=",")


def read_dx_lines(root: Path, paths: list[str]) -> list[list[str] | str]:
    """The Challenge layout's labels: each record's ``# Dx:`` tokens (``root/path.hea``), or the
    reason it has none (a string), with a progress bar. What an empty line means is the caller's
    to say (unknown for the Challenge; excluded or negative for a user's folder)."""
    lines: list[list[str] | str] = []
    for path in tqdm(paths, desc="read # Dx: lines", unit="hea", leave=False):
        try:
            lines.append(read_dx(root / f"{path}.hea"))
        except ValueError as exc:
            lines.append(str(exc))
    return lines


@dataclass
class ChallengeTables:
    """The Challenge's SNOMED CT tables: names, scored codes, equivalences, CPSC names."""

    names: dict[str, str]  # code -> "ABBR: name"
    scored: list[str]  # canonical scored codes, in the scored table's order
    canonical: dict[str, str]  # code -> the code it is scored as (itself unless an equivalent)
    cpsc: dict[str, str]  # CPSC 2018 class name -> code
    files: list[Path] = field(default_factory=list)
    #: source column -> the canonical codes the tables count records of there
    annotated: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, directory: Path) -> ChallengeTables:
        paths = [directory / name for name in TABLE_FILES]
        for path in paths:
            if not path.is_file():
                raise DataError(f"Challenge mapping table {path} not found; {TABLES_FIX}")
        columns = ("Dx", "SNOMEDCTCode", "Abbreviation", "CPSC")
        scored = read_csv(paths[0], columns, TABLES_FIX, dtype=str)
        unscored = read_csv(paths[1], columns, TABLES_FIX, dtype=str)
        old = read_csv(paths[2], ("dx", "SNOMED code", "Abbreviation"), TABLES_FIX, dtype=str).rename(
            columns={"dx": "Dx", "SNOMED code": "SNOMEDCTCode"}
        )
        missing = [s for s in SOURCES if s not in scored.columns or s not in unscored.columns]
        if missing:
            raise DataError(
                f"the Challenge tables in {directory} lack the source column(s) {', '.join(missing)}; {TABLES_FIX}"
            )
        rows = pd.concat([scored, unscored, old.assign(CPSC="0")], ignore_index=True)
        rows = rows.assign(SNOMEDCTCode=rows.SNOMEDCTCode.str.strip(), Abbreviation=rows.Abbreviation.str.strip())
        names: dict[str, str] = {}
        for code, abbreviation, name in zip(rows.SNOMEDCTCode, rows.Abbreviation, rows.Dx):
            names.setdefault(code, f"{abbreviation}: {str(name).strip()}")
        canonical = {code: code for code in names}
        for note in scored.get("Notes", pd.Series(dtype=str)).dropna():
            for first, second in EQUIVALENCE_NOTE.findall(note):
                canonical[second] = first
        in_cpsc = set(rows.SNOMEDCTCode[pd.to_numeric(rows.CPSC, errors="coerce").fillna(0) > 0])
        cpsc = {}
        for cpsc_name in ("Normal", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE"):
            abbreviation = CPSC_ALIASES.get(cpsc_name, cpsc_name)
            codes = sorted(set(rows.SNOMEDCTCode[rows.Abbreviation == abbreviation]) & in_cpsc)
            if len(codes) != 1:
                raise DataError(
                    f"the Challenge tables in {directory} give {len(codes)} CPSC codes for {cpsc_name!r} "
                    f"({', '.join(codes) or 'none'}); expected one. {TABLES_FIX}"
                )
            cpsc[cpsc_name] = codes[0]
        ordered_scored = list(dict.fromkeys(canonical[c] for c in scored.SNOMEDCTCode.str.strip()))
        counted = pd.concat([scored, unscored], ignore_index=True)
        annotated = {
            source: {
                canonical[code.strip()]
                for code, n in zip(counted.SNOMEDCTCode, pd.to_numeric(counted[source], errors="coerce").fillna(0))
                if n > 0
            }
            for source in SOURCES
        }
        return cls(names, ordered_scored, canonical, cpsc, paths, annotated)

    def map_tokens(self, tokens: list[str]) -> tuple[list[str], list[str]]:
        """(canonical codes, tokens no table knows) of one record's ``# Dx:`` tokens."""
        codes, unknown = [], []
        for token in tokens:
            code = self.cpsc.get(token, token)
            if code in self.canonical:
                codes.append(self.canonical[code])
            else:
                unknown.append(token)
        return sorted(set(codes)), unknown
