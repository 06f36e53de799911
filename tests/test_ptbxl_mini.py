"""The PTB-XL loader on the 12 real records shipped in tests/fixtures/ptbxl_mini — runs in every
clone, with or without ../shared: standard splits, superdiagnostic labels as the csv says,
signals equal to wfdb.rdsamp of the files, a fingerprint that ignores where the folder sits. And
the fixture itself equals what tests/fixtures/make_ptbxl_mini.py derives from ../shared."""

from __future__ import annotations

import ast
import importlib.util
import shutil

import numpy as np
import pandas as pd
import pytest
import wfdb
from conftest import PTBXL_MINI, REPO
from ecg_fixtures import rdsamp_leads, shared_ptbxl

from benchmark.data.contract import data_identity
from benchmark.registry import DATASETS

PTBXL = DATASETS.get("ptbxl")
SUPERCLASSES = ["CD", "HYP", "MI", "NORM", "STTC"]


def load(root, cache):
    dataset = PTBXL(PTBXL.Config(root=root))
    dataset.workers = 1
    return dataset, dataset.load(100, "superdiagnostic", cache, progress=False)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load(PTBXL_MINI, tmp_path_factory.mktemp("cache"))


def expected_superclasses(database: pd.DataFrame) -> list[list[str]]:
    """Each row's superclasses read straight from the two csv files (Wagner et al.'s aggregation)."""
    statements = pd.read_csv(PTBXL_MINI / "scp_statements.csv", index_col=0)
    diagnostic = statements.loc[statements.diagnostic == 1.0, "diagnostic_class"]
    return [
        sorted({diagnostic[c] for c in ast.literal_eval(cell) if c in diagnostic.index}) for cell in database.scp_codes
    ]


def test_splits_follow_the_folds_and_labels_the_csv(loaded):
    _, arrays = loaded
    database = pd.read_csv(PTBXL_MINI / "ptbxl_database.csv")
    assert arrays.record_ids.tolist() == database.ecg_id.astype(str).tolist() and len(database) == 12
    fold = database.strat_fold.to_numpy()
    assert set(fold[arrays.splits["train"]]) <= set(range(1, 9)) and set(fold[arrays.splits["val"]]) == {9}
    assert set(fold[arrays.splits["test"]]) == {10}
    assert arrays.splits["pretrain"].tolist() == np.flatnonzero(fold <= 8).tolist()
    assert arrays.label_names == SUPERCLASSES
    expected = expected_superclasses(database)
    for row, classes in enumerate(expected):
        assert [arrays.label_names[j] for j in np.flatnonzero(arrays.labels[row])] == classes, row
    labelled = {int(i) for split in ("train", "val", "test") for i in arrays.splits[split]}
    assert labelled == {row for row, classes in enumerate(expected) if classes}  # ecg 17 has no diagnosis
    assert arrays.labels[arrays.splits["train"]].any(axis=0).all()  # every superclass in train


def test_signals_are_rdsamp_of_the_fixture_records(loaded):
    _, arrays = loaded
    database = pd.read_csv(PTBXL_MINI / "ptbxl_database.csv")
    assert arrays.signals.shape == (12, 12, 1000) and arrays.lead_mask.all()
    for row, name in enumerate(database.filename_lr):
        np.testing.assert_array_equal(arrays.signals[row], rdsamp_leads(PTBXL_MINI / name).astype(np.float16))


def test_the_fingerprint_ignores_where_the_folder_sits(loaded, tmp_path):
    dataset, arrays = loaded
    moved = shutil.copytree(PTBXL_MINI, tmp_path / "elsewhere" / "renamed")
    moved_dataset, moved_arrays = load(moved, tmp_path / "cache")
    assert moved_arrays.fingerprint == arrays.fingerprint
    assert data_identity(moved_dataset, moved_arrays) == data_identity(dataset, arrays)


def generator():
    spec = importlib.util.spec_from_file_location("make_ptbxl_mini", REPO / "tests" / "fixtures" / "make_ptbxl_mini.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fixture_is_its_source_records(tmp_path):
    """Same samples and header fields as the originals in ../shared, and exactly what the script
    derives from them today (a stale or hand-edited fixture fails)."""
    source = shared_ptbxl()
    database = pd.read_csv(PTBXL_MINI / "ptbxl_database.csv")
    for name in database.filename_lr:
        ours, theirs = wfdb.rdrecord(str(PTBXL_MINI / name)), wfdb.rdrecord(str(source / name))
        np.testing.assert_array_equal(ours.p_signal, theirs.p_signal)
        for field in ("fs", "sig_name", "units", "fmt", "adc_gain", "baseline", "checksum", "sig_len"):
            assert getattr(ours, field) == getattr(theirs, field), (name, field)
    original = pd.read_csv(source / "ptbxl_database.csv", dtype=str, keep_default_na=False)
    derived = pd.read_csv(PTBXL_MINI / "ptbxl_database.csv", dtype=str, keep_default_na=False)
    assert list(derived.columns) == list(original.columns) and len(derived.columns) == 28
    pd.testing.assert_frame_equal(derived, original[original.ecg_id.isin(derived.ecg_id)].reset_index(drop=True))
    ids = generator().make(source, tmp_path / "again")
    assert [str(i) for i in ids] == derived.ecg_id.tolist()
    written = sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    shipped = sorted(p.relative_to(PTBXL_MINI) for p in PTBXL_MINI.rglob("*") if p.is_file() and p.name != "README.md")
    assert written == shipped
    for path in written:
        assert (tmp_path / "again" / path).read_bytes() == (PTBXL_MINI / path).read_bytes(), path
