"""PTB-XL on the real 500-record subset: every cached signal is wfdb.rdsamp of its record, the
label sets and splits are Strodthoff et al.'s, and `prepare` and `run` work end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from ecg_fixtures import rdsamp_leads, shared_ptbxl

from benchmark.cli import main
from benchmark.registry import DATASETS

PTBXL = DATASETS.get("ptbxl")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def dataset():
    return PTBXL(PTBXL.Config(root=shared_ptbxl()))


def test_every_signal_equals_rdsamp_of_its_record(dataset, cache):
    arrays = dataset.load(100, "superdiagnostic", cache)
    database = pd.read_csv(shared_ptbxl() / "ptbxl_database.csv")
    assert arrays.record_ids.tolist() == database.ecg_id.astype(str).tolist()
    for row, name in enumerate(database.filename_lr):  # preprocessing at 100 Hz: none but float16
        np.testing.assert_array_equal(arrays.signals[row], rdsamp_leads(shared_ptbxl() / name).astype(np.float16))
    assert arrays.lead_mask.all()


def test_label_sets_and_splits_as_strodthoff_et_al(dataset, cache):
    statements = pd.read_csv(shared_ptbxl() / "scp_statements.csv", index_col=0)
    database = pd.read_csv(shared_ptbxl() / "ptbxl_database.csv")
    fold = database.strat_fold.to_numpy()
    names = {}
    for label_set in (s for s in PTBXL.label_sets if s != "common"):  # common: tests/test_realdata.py
        arrays = dataset.load(100, label_set, cache)
        names[label_set] = arrays.label_names
        assert arrays.label_names == sorted(arrays.label_names) and arrays.labels[arrays.splits["train"]].any(1).all()
        assert set(fold[arrays.splits["train"]]) <= set(range(1, 9)) and set(fold[arrays.splits["val"]]) == {9}
        assert set(fold[arrays.splits["test"]]) == {10} and len(arrays.splits["pretrain"]) == 353
    superclass = dataset.load(100, "superdiagnostic", cache)
    counts = dict(zip(superclass.label_names, superclass.labels.sum(axis=0).tolist()))
    assert counts == {"NORM": 297, "STTC": 96, "CD": 78, "MI": 73, "HYP": 40}  # ../shared/data/README.md
    assert len(names["all"]) == 57
    for label_set in ("diagnostic", "form", "rhythm"):
        assert set(names[label_set]) <= set(statements.index[statements[label_set] == 1.0])
    assert set(names["subdiagnostic"]) <= set(statements.diagnostic_subclass.dropna())


def test_prepare_command(cache, capsys):
    code = main(
        [
            "prepare",
            "--dataset",
            "ptbxl",
            "--root",
            str(shared_ptbxl()),
            "--labels",
            "rhythm",
            "--cache-dir",
            str(cache),
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "ptbxl at 100 Hz, label set 'rhythm': 500 records (500 usable)" in out
    assert f"data fingerprint {PTBXL(PTBXL.Config(root=shared_ptbxl())).load(100, 'all', cache).fingerprint}" in out
    assert main(["prepare", "--dataset", "ptbxl", "--cache-dir", str(cache)]) == 2
    assert "give its folder with --root PATH" in capsys.readouterr().err


@pytest.mark.slow
def test_run_end_to_end_on_the_real_subset(cache, tmp_path):
    result = run_cli(
        "run",
        "--methods",
        "lamae,ind_p",
        "--dataset",
        "ptbxl",
        "--root",
        str(shared_ptbxl()),
        "--labels",
        "superdiagnostic",
        "--preset",
        "smoke",
        "--protocols",
        "linear",
        "--cache-dir",
        str(cache),
        "--results",
        str(tmp_path / "out"),
        "--leaderboard",
        str(tmp_path / "LB.md"),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    cells = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*_seed0.json"))
    assert cells == [
        f"ptbxl/superdiagnostic/smoke/{m}/linear_seed0.json" for m in ("ecg_features", "ind_p", "lamae", "random_init")
    ]
    record = json.loads((tmp_path / "out" / "ptbxl/superdiagnostic/smoke/lamae/linear_seed0.json").read_text())
    assert record["metrics"]["n_test"] == 64 and record["metrics"]["n_labels_scored"] == 5
