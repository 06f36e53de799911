"""Bring-your-own data on real PTB-XL signals: a WFDB folder with a labels CSV, the
PhysioNet/CinC 2020-21 layout (.hea + .mat, SNOMED codes in # Dx:), and NumPy arrays."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.io
from ecg_fixtures import MIMIC_LEADS, rdsamp_leads, shared_ptbxl

from benchmark.data.contract import LEADS, DataError
from benchmark.registry import DATASETS

N = 12


@pytest.fixture(scope="module")
def signals():
    """(N, 12, 1000) mV of the first N PTB-XL records at 100 Hz, with their patient ids and folds."""
    ptbxl = shared_ptbxl()
    database = pd.read_csv(ptbxl / "ptbxl_database.csv").iloc[:N]
    return (
        np.stack([rdsamp_leads(ptbxl / name) for name in database.filename_lr]),
        database.patient_id.astype(int).astype(str).to_numpy(),
        database.filename_lr.tolist(),
    )


def load(name, root, cache, rate=100, **config):
    """The dataset prepared at ``rate`` Hz (``config`` is the plugin's, e.g. the arrays' own ``fs``)."""
    cls = DATASETS.get(name)
    dataset = cls(cls.Config(root=root, **config))
    dataset.workers = 1
    return dataset.load(rate, "default", cache)


def test_wfdb_folder_with_labels_csv(signals, tmp_path):
    x, patients, names = signals
    root = tmp_path / "mine"
    for i, name in enumerate(names):  # nested folders, records named freely
        target = root / f"site{i % 2}" / f"ecg{i:03d}"
        target.parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".hea", ".dat"):
            shutil.copy(shared_ptbxl() / f"{name}{suffix}", f"{target}{suffix}")
        header = target.with_suffix(".hea")
        header.write_text(header.read_text().replace(name.split("/")[-1], target.name))
    split = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    table = pd.DataFrame(
        {
            "record": [f"site{i % 2}/ecg{i:03d}" for i in range(N)],
            "patient_id": patients,
            "split": split,
            "AF": [str(i % 2) for i in range(N)],
            "LBBB": [int(i % 3 == 0) for i in range(N)],
        }
    )
    table.loc[5, "AF"] = "yes"  # unparsable cell
    table.to_csv(root / "labels.csv", index=False)
    arrays = load("wfdb-folder", root, tmp_path / "cache")
    assert arrays.label_names == ["AF", "LBBB"]
    for i in range(N):
        np.testing.assert_array_equal(arrays.signals[i], x[i].astype(np.float16))
    np.testing.assert_array_equal(arrays.labels[[0, 1, 3]], [[0, 1], [1, 0], [1, 1]])
    assert 5 not in arrays.splits["train"] and 5 in arrays.splits["pretrain"]
    assert list(arrays.splits["val"]) == [8, 9] and list(arrays.splits["test"]) == [10, 11]

    listed = table.drop(columns=["AF", "LBBB"]).assign(labels=["['AF']", "AF;LBBB", "[]", "LBBB"] * 3)
    listed.to_csv(root / "list.csv", index=False)
    arrays = load("wfdb-folder", root, tmp_path / "cache", labels_csv=root / "list.csv")
    np.testing.assert_array_equal(arrays.labels[:4], [[1, 0], [1, 1], [0, 0], [0, 1]])
    assert 2 not in arrays.splits["train"]  # empty list: excluded by default ...
    arrays = load("wfdb-folder", root, tmp_path / "cache", labels_csv=root / "list.csv", empty_labels="negative")
    assert 2 in arrays.splits["train"]  # ... or a negative when asked


def write_cinc(root, i, signal, lead_names, dx):
    """A PhysioNet/CinC 2020 record: MATLAB v4 'val' (int16, leads x samples) + WFDB header."""
    digital = np.round(signal * 1000).astype(np.int16)
    name = f"A{i:04d}"
    scipy.io.savemat(root / f"{name}.mat", {"val": digital}, format="4")
    lines = [f"{name} 12 100 {signal.shape[1]} 05-Feb-2020 11:39:16"]
    lines += [f"{name}.mat 16+24 1000/mV 16 0 {digital[k, 0]} 0 0 {lead}" for k, lead in enumerate(lead_names)]
    lines += ["#Age: 74", "#Sex: Male"] + ([f"#Dx: {dx}"] if dx is not None else []) + ["#Rx: Unknown"]
    (root / f"{name}.hea").write_text("\n".join(lines) + "\n")


def test_cinc_2020_layout_with_snomed_codes_in_headers(signals, tmp_path):
    x = signals[0]
    root = tmp_path / "cinc"
    root.mkdir()
    dx = ["164889003,59118001", "426783006", "164889003", None, "426783006,164889003"] + ["426783006"] * (N - 5)
    for i in range(N):
        order = MIMIC_LEADS if i % 2 else LEADS  # leads by name whatever their order
        write_cinc(root, i, x[i][[LEADS.index(lead) for lead in order]], order, dx[i])
    arrays = load("wfdb-folder", root, tmp_path / "cache")
    assert arrays.label_names == ["164889003", "426783006", "59118001"]
    np.testing.assert_array_equal(arrays.labels[[0, 1, 4]], [[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    for i in range(N):
        np.testing.assert_allclose(np.asarray(arrays.signals[i], dtype=np.float64), x[i], atol=2e-3)
    assert all(3 not in arrays.splits[s] for s in ("train", "val", "test"))  # no # Dx: line
    assert len(set(arrays.patient_ids)) == N  # the challenge has no patient ids


@pytest.mark.parametrize(
    ("name", "fix"), [("wfdb-folder", "no labels.csv either"), ("cinc", "point --root at a Challenge training folder")]
)
def test_a_folder_without_headers_is_refused_naming_it(tmp_path, name, fix):
    """Both readers of the Challenge's layout list records by one helper (header_records)."""
    root = tmp_path / "empty"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.dat").write_bytes(b"")
    cls = DATASETS.get(name)
    with pytest.raises(DataError, match=re.escape(f"{name}: no .hea file under {root}; {fix}")):
        cls(cls.Config(root=root)).load(100, cls.label_sets[0], tmp_path / "cache")


def test_numpy_arrays_with_labels_csv_and_patient_ids(signals, tmp_path):
    x, patients, _ = signals
    root = tmp_path / "arrays"
    root.mkdir()
    np.save(root / "signals.npy", (x * 1000).astype(np.float32))  # in uV
    pd.DataFrame({"patient_id": patients, "NORM": [1] * 6 + [0] * 6, "MI": [0] * 6 + [1] * 6}).to_csv(
        root / "labels.csv", index=False
    )
    with pytest.raises(DataError, match="--set numpy.fs=500"):
        load("numpy", root, tmp_path / "cache")
    arrays = load("numpy", root, tmp_path / "cache", fs=100, scale_to_mv=0.001, val_fraction=0.2, test_fraction=0.2)
    for i in range(N):
        np.testing.assert_allclose(np.asarray(arrays.signals[i], dtype=np.float64), x[i], rtol=2**-11, atol=1e-5)
    assert arrays.label_names == ["MI", "NORM"] and arrays.labels[:, 1].tolist() == [1] * 6 + [0] * 6
    by_split = {s: set(arrays.patient_ids[arrays.splits[s]]) for s in ("train", "val", "test")}
    assert all(by_split) and not (by_split["train"] & by_split["test"]) and not (by_split["val"] & by_split["test"])
    assert sum(len(arrays.splits[s]) for s in ("train", "val", "test")) == N


def test_numpy_labels_npy_names_and_lead_order(signals, tmp_path):
    x, patients, _ = signals
    root = tmp_path / "arrays"
    root.mkdir()
    np.save(root / "signals.npy", x[:, [LEADS.index(lead) for lead in MIMIC_LEADS]].astype(np.float16))
    np.save(root / "labels.npy", np.eye(N, 3, dtype=np.uint8) + np.eye(N, 3, -3, dtype=np.uint8))
    (root / "label_names.txt").write_text("A\nB\nC\n")
    np.save(root / "patient_ids.npy", patients.astype(str))
    arrays = load("numpy", root, tmp_path / "cache", fs=100, leads=MIMIC_LEADS)
    np.testing.assert_array_equal(arrays.signals[:], x.astype(np.float16))  # back in LEADS order
    assert arrays.label_names == ["A", "B", "C"] and arrays.labels[4].tolist() == [0, 1, 0]
    resampled = load("numpy", root, tmp_path / "cache", rate=250, fs=100, leads=MIMIC_LEADS)
    assert resampled.signals.shape == (N, 12, 2500)


def test_label_less_folder_serves_pretraining_only(signals, tmp_path):
    root = tmp_path / "unlabelled"
    root.mkdir()
    np.save(root / "signals.npy", signals[0].astype(np.float16))
    cls = DATASETS.get("numpy")
    dataset = cls(cls.Config(root=root, fs=100))
    with pytest.raises(DataError, match="Unlabelled arrays can still pretrain: --pretrain-data numpy:"):
        dataset.load(100, "default", tmp_path / "cache")
    pool = dataset.load_pretraining(100, tmp_path / "cache")
    assert pool.labels.shape == (N, 0) and 0 < len(pool.splits["pretrain"]) < N  # train patients only
