"""Pretraining pools: several datasets as unlabelled pretraining data, and the leakage guard that
refuses a validation or test patient of the evaluated dataset in the pool."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from ecg_fixtures import mini_ptbxl, rdsamp_leads, shared_ptbxl

from benchmark.data.contract import DataError, LeakageError
from benchmark.data.pool import ConcatenatedRows, pretraining_pool
from benchmark.registry import DATASETS
from benchmark.run.build import build_dataset
from benchmark.run.presets import PRESETS


def test_concatenated_rows_index_like_one_array():
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((n, 3, 4)).astype(np.float16) for n in (5, 1, 7)]
    whole = np.concatenate(parts)
    rows = ConcatenatedRows(parts)
    assert rows.shape == whole.shape and len(rows) == 13 and rows.ndim == 3
    for index in (np.array([0, 5, 6, 12]), rng.permutation(13)[:6], np.array([3, 3, 11])):
        np.testing.assert_array_equal(rows[index], whole[index])
    np.testing.assert_array_equal(rows[6], whole[6])
    with pytest.raises(IndexError):
        rows[np.array([13])]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A PTB-XL root (evaluation) and a NumPy folder of other real records (pool)."""
    tmp = tmp_path_factory.mktemp("pool")
    ptbxl = mini_ptbxl(shared_ptbxl(), tmp / "ptbxl", n=40)
    database = pd.read_csv(shared_ptbxl() / "ptbxl_database.csv")
    arrays = tmp / "arrays"
    arrays.mkdir()
    np.save(
        arrays / "signals.npy",
        np.stack([rdsamp_leads(shared_ptbxl() / name) for name in database.filename_lr.iloc[40:60]]).astype(np.float16),
    )
    pd.DataFrame(
        {"patient_id": database.patient_id.iloc[40:60].astype(int).astype(str), "split": ["train"] * 20}
    ).to_csv(arrays / "patients.csv", index=False)
    return tmp, ptbxl, arrays, database


def pool_for(items, sources, **numpy_config):
    tmp, ptbxl, arrays, _ = sources
    overrides = {
        "ptbxl": {"root": str(ptbxl)},
        "numpy": {"root": str(arrays), "fs": "100", **{k: str(v) for k, v in numpy_config.items()}},
    }
    preset = PRESETS["smoke"]
    dataset = build_dataset("ptbxl", preset, overrides)
    evaluation = dataset.load(100, "superdiagnostic", tmp / "cache")
    build = lambda name, scoped: build_dataset(name, preset, scoped)  # noqa: E731 (as the runner passes it)
    return evaluation, pretraining_pool(items, dataset, evaluation, build, overrides, 100, tmp / "cache", False)


def test_pool_of_two_datasets_concatenates_their_pretraining_records(sources):
    evaluation, (pool, identity) = pool_for(["ptbxl", "numpy"], sources)
    own = len(evaluation.splits["pretrain"])
    assert [entry["dataset"] for entry in identity] == ["ptbxl", "numpy"]
    assert pool.labels.shape[1] == 0 and all(len(pool.splits[s]) == 0 for s in ("train", "val", "test"))
    pooled = pool.splits["pretrain"]
    np.testing.assert_array_equal(pool.signals[pooled[:own]], evaluation.signals[evaluation.splits["pretrain"]])
    numpy_rows = pooled[own:] - len(evaluation.signals)
    assert 0 < len(numpy_rows) < 20  # the NumPy folder's own random split: its train patients
    expected = np.stack([rdsamp_leads(shared_ptbxl() / name) for name in sources[3].filename_lr.iloc[40:60]])
    np.testing.assert_array_equal(pool.signals[pooled[own:]], expected[numpy_rows].astype(np.float16))
    assert pool.patient_ids[pooled[0]].startswith("ptbxl:") and pool.record_ids[pooled[-1]].startswith("numpy:")

    alone, (unchanged, none) = pool_for([], sources)
    assert unchanged is alone and none is None


def test_a_test_patient_in_the_pool_is_refused(sources):
    tmp, _, arrays, database = sources
    evaluation, _ = pool_for(["ptbxl"], sources)
    test_patient = str(evaluation.patient_ids[evaluation.splits["test"][0]])
    table = pd.read_csv(arrays / "patients.csv", dtype=str)
    table.loc[0, "patient_id"] = test_patient  # the same person as a PTB-XL test patient ...
    table.to_csv(tmp / "leaky.csv", index=False)
    with pytest.raises(
        LeakageError,
        match=rf"1 validation/test patient\(s\) of ptbxl are in the pretraining pool "
        rf"\(e.g. {test_patient}; namespace 'ptbxl'\)",
    ):
        pool_for(["numpy"], sources, labels_csv=tmp / "leaky.csv", patient_namespace="ptbxl")
    # ... a different namespace names different people: no clash
    pool_for(["numpy"], sources, labels_csv=tmp / "leaky.csv", patient_namespace="hospital-b")


def test_pool_records_must_have_one_length(sources):
    with pytest.raises(DataError, match="records have different lengths"):
        pool_for(["ptbxl", "numpy"], sources, **{"preprocess.duration_s": 5.0})


@pytest.mark.slow
def test_run_pretrains_on_the_pool_and_refuses_leaks_on_the_command_line(sources, tmp_path):
    tmp, ptbxl, arrays, _ = sources
    common = [
        "run",
        "--methods",
        "lamae",
        "--dataset",
        "ptbxl",
        "--root",
        str(ptbxl),
        "--labels",
        "superdiagnostic",
        "--preset",
        "smoke",
        "--protocols",
        "linear",
        "--no-references",
        "--cache-dir",
        str(tmp / "cache"),
        "--results",
        str(tmp_path / "out"),
        "--leaderboard",
        str(tmp_path / "LB.md"),
        "--no-progress",
        "--set",
        "numpy.fs=100",
        "--set",
        f"numpy.labels_csv={arrays / 'patients.csv'}",
    ]
    result = run_cli(*common, "--pretrain-data", f"ptbxl,numpy:{arrays}")
    assert result.returncode == 0, result.stderr
    record = json.loads(next((tmp_path / "out").rglob("linear_seed0.json")).read_text())
    assert [entry["dataset"] for entry in record["config"]["pretrain_data"]] == ["ptbxl", "numpy"]

    evaluation = DATASETS.get("ptbxl")(DATASETS.get("ptbxl").Config(root=ptbxl)).load(
        100, "superdiagnostic", tmp / "cache"
    )
    test_patient = evaluation.patient_ids[evaluation.splits["test"][0]]
    pd.read_csv(arrays / "patients.csv", dtype=str).assign(patient_id=test_patient).to_csv(
        tmp_path / "leaky.csv", index=False
    )
    result = run_cli(
        *common[:-2],
        "--set",
        f"numpy.labels_csv={tmp_path / 'leaky.csv'}",
        "--set",
        "numpy.patient_namespace=ptbxl",
        "--pretrain-data",
        f"numpy:{arrays}",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "validation/test patient(s) of ptbxl are in the pretraining pool" in result.stderr
