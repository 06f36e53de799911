"""Builders of small dataset folders from the real PTB-XL records in ../shared/data/ptbxl.

Everything is written into a test's tmp_path (copies, so tests may damage them); nothing from
../shared is ever modified or copied into the repository.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from conftest import SHARED_DATA

from benchmark.data.contract import LEADS

MIMIC_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")  # as MIMIC-IV-ECG orders them


def shared_ptbxl() -> Path:
    """The real PTB-XL subset, for module-scoped fixtures (``shared_data`` is per test); skips if absent."""
    if not (SHARED_DATA / "ptbxl").is_dir():
        pytest.skip(f"real data folder {SHARED_DATA / 'ptbxl'} is absent (it sits beside the repository in CI)")
    return SHARED_DATA / "ptbxl"


def mini_ptbxl(source: Path, target: Path, n: int = 40, rates: tuple[str, ...] = ("lr",)) -> Path:
    """A PTB-XL root with the first ``n`` records (copies) at the given rates ("lr", "hr")."""
    target.mkdir(parents=True, exist_ok=True)
    database = pd.read_csv(source / "ptbxl_database.csv")
    database.iloc[:n].to_csv(target / "ptbxl_database.csv", index=False)
    shutil.copy(source / "scp_statements.csv", target / "scp_statements.csv")
    for rate in rates:
        for name in database[f"filename_{rate}"].iloc[:n]:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            for suffix in (".hea", ".dat"):
                shutil.copy(source / f"{name}{suffix}", target / f"{name}{suffix}")
                (target / f"{name}{suffix}").chmod(0o644)
    return target


def rdsamp_leads(record: Path) -> np.ndarray:
    """(12, T) in mV in LEADS order, matched by name (PTB-XL headers say AVR, AVL, AVF)."""
    signal, fields = wfdb.rdsamp(str(record))
    names = [name.lower() for name in fields["sig_name"]]
    return np.stack([signal[:, names.index(lead.lower())] for lead in LEADS])


def rewrite_header(record: Path, edit) -> None:
    """Apply ``edit(text) -> text`` to a record's .hea file."""
    header = Path(f"{record}.hea")
    header.write_text(edit(header.read_text()))


def write_wfdb(record_dir: Path, name: str, signal: np.ndarray, fs: int, sig_name: list[str], fmt: str = "16") -> None:
    """Write (T, C) mV with 1 uV resolution (gain 1000/mV as PTB-XL and MIMIC); NaN stays NaN."""
    record_dir.mkdir(parents=True, exist_ok=True)
    digital = np.where(np.isnan(signal), -32768, np.round(signal * 1000)).astype(np.int64)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * len(sig_name),
        sig_name=list(sig_name),
        d_signal=digital,
        fmt=[fmt] * len(sig_name),
        adc_gain=[1000.0] * len(sig_name),
        baseline=[0] * len(sig_name),
        write_dir=str(record_dir),
    )


def write_challenge(
    directory: Path,
    name: str,
    signal: np.ndarray,
    fs: float,
    dx: str,
    leads: tuple[str, ...] = LEADS,
    gain: float = 1000.0,
    record_line: str | None = None,
) -> Path:
    """A record in the PhysioNet/CinC Challenge layout: ``NAME.mat`` (MATLAB v4, key ``val``,
    int16 (leads, T)) + ``NAME.hea`` (format 16 at byte offset 24, ``# Dx:`` line), from (leads, T) mV."""
    from scipy.io import savemat

    directory.mkdir(parents=True, exist_ok=True)
    digital = np.round(signal * gain).astype(np.int16)
    savemat(directory / f"{name}.mat", {"val": digital}, format="4")
    n = digital.shape[1]
    lines = [record_line or f"{name} {len(leads)} {fs:g} {n}"]
    lines += [
        f"{name}.mat 16+24 {gain:g}/mV 16 0 {int(row[0])} {(int(row.astype(np.int64).sum()) + 32768) % 65536 - 32768} 0 {lead}"
        for row, lead in zip(digital, leads)
    ]
    lines += ["#Age: 50", "#Sex: Male", f"#Dx: {dx}", "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    (directory / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return directory / name


def shared_source(name: str) -> Path:
    """A real source folder of ../shared/data (ludb, cinc2021, ...); skips if absent."""
    if not (SHARED_DATA / name).is_dir():
        pytest.skip(f"real data folder {SHARED_DATA / name} is absent (it sits beside the repository in CI)")
    return SHARED_DATA / name


def mini_ludb(target: Path, ids: list[int]) -> Path:
    """A LUDB root with these subjects: ``ludb.csv`` rows and ``data/<id>.hea|.dat`` (copies)."""
    source = shared_source("ludb")
    (target / "data").mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(source / "ludb.csv", dtype=str)
    table[table.ID.astype(int).isin(ids)].to_csv(target / "ludb.csv", index=False)
    for record in ids:
        for suffix in (".hea", ".dat"):
            shutil.copy(source / "data" / f"{record}{suffix}", target / "data" / f"{record}{suffix}")
    return target


def mini_cinc(target: Path, records: list[str]) -> Path:
    """A Challenge folder with these real records and the Challenge's mapping tables (copies)."""
    source = shared_source("cinc2021")
    target.mkdir(parents=True, exist_ok=True)
    for name in [*(f"{r}{s}" for r in records for s in (".hea", ".mat")), *(p.name for p in source.glob("eval*.csv"))]:
        shutil.copy(source / name, target / name)
        (target / name).chmod(0o644)
    return target
