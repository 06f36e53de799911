"""Identity by content, both ways: the prepared cache and a result's signature follow what the
source files hold, never where they sit. A copy, a relative or an absolute root is the same data;
a second folder with the same record names but other signals, or a ``.dat`` truncated or rewritten
after preparation, is other data. Real PTB-XL records (copies in tmp_path) throughout."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from ecg_fixtures import mini_ptbxl, rdsamp_leads, shared_ptbxl, write_wfdb

from benchmark.data import content
from benchmark.data.content import Hasher
from benchmark.data.contract import LEADS, data_identity
from benchmark.registry import DATASETS
from benchmark.run.runner import RunRequest, run

PTBXL = DATASETS.get("ptbxl")
N = 12
DAY_NS = 86_400 * 10**9


def age(root: Path) -> None:
    """Modification times a day back, as for data downloaded long ago (not 'racy': remembered)."""
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - DAY_NS))


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    root = mini_ptbxl(shared_ptbxl(), tmp_path_factory.mktemp("a") / "ptbxl", n=N)
    age(root)
    return root


def copy_of(root: Path, target: Path) -> Path:
    shutil.copytree(root, target)
    age(target)
    return target


def load(root: Path | str, cache: Path, label_set: str = "superdiagnostic"):
    dataset = PTBXL(PTBXL.Config(root=root, max_excluded_fraction=0.2))
    dataset.workers = 1
    return dataset, dataset.load(100, label_set, cache, progress=False)


def cache_dir(arrays) -> Path:
    return Path(arrays.signals.filename).parent


def record_path(root: Path, ecg_id: int) -> Path:
    return root / "records100" / "00000" / f"{ecg_id:05d}_lr"


def test_a_second_folder_with_the_same_record_names_gets_its_own_signals(original, tmp_path):
    flipped = copy_of(original, tmp_path / "flipped")
    for ecg_id in range(1, N + 1):  # same names, same header layout, signals sign-flipped
        path = record_path(flipped, ecg_id)
        signal, fields = wfdb.rdsamp(str(path))
        write_wfdb(path.parent, path.name, -signal, fields["fs"], fields["sig_name"])
    cache = tmp_path / "cache"
    _, first = load(original, cache)
    _, second = load(flipped, cache)
    assert cache_dir(first) != cache_dir(second) and first.fingerprint != second.fingerprint
    a = np.asarray(first.signals, dtype=np.float64).ravel()
    b = np.asarray(second.signals, dtype=np.float64).ravel()
    assert np.corrcoef(a, b)[0, 1] < -0.999  # the flipped folder's own signals, not the first folder's
    np.testing.assert_allclose(second.signals[0], -rdsamp_leads(record_path(original, 1)), atol=2e-3)


def test_a_dat_truncated_after_prepare_is_noticed(original, tmp_path):
    root = copy_of(original, tmp_path / "ptbxl")
    cache = tmp_path / "cache"
    _, before = load(root, cache)
    assert before.lead_mask.all()
    data = Path(f"{record_path(root, 3)}.dat")
    st = data.stat()
    data.write_bytes(data.read_bytes()[:5000])
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its modification time restored
    _, after = load(root, cache)
    assert cache_dir(after) != cache_dir(before) and after.fingerprint != before.fingerprint
    report = pd.read_csv(cache_dir(after) / "report.csv", dtype={"record_id": str})
    excluded = report[report.action == "excluded"]
    assert excluded.record_id.tolist() == ["3"] and "(truncated)" in excluded.detail.iloc[0]
    assert (
        not after.lead_mask[2].any() and json.loads((cache_dir(after) / "manifest.json").read_text())["excluded"] == 1
    )


def test_a_dat_rewritten_in_place_with_the_same_size_and_mtime_is_noticed(original, tmp_path):
    root = copy_of(original, tmp_path / "ptbxl")
    cache = tmp_path / "cache"
    _, before = load(root, cache)
    data = Path(f"{record_path(root, 5)}.dat")
    st = data.stat()
    samples = np.fromfile(data, dtype="<i2")
    (-samples).tofile(data)  # the same bytes count, other signal
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    _, after = load(root, cache)
    assert after.fingerprint != before.fingerprint
    np.testing.assert_allclose(after.signals[4], -np.asarray(before.signals[4], dtype=np.float64), atol=2e-3)
    report = pd.read_csv(cache_dir(after) / "report.csv", dtype={"record_id": str})
    assert set(report.loc[report.record_id == "5", "action"]) == {"checksum mismatch"}


def test_relative_absolute_and_copied_roots_are_the_same_data(original, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.chdir(original.parent)
    relative, rel_arrays = load("./ptbxl", cache)
    absolute, abs_arrays = load(original, cache)
    copied, copy_arrays = load(copy_of(original, tmp_path / "elsewhere" / "ptbxl-copy"), cache)
    assert cache_dir(rel_arrays) == cache_dir(abs_arrays) == cache_dir(copy_arrays)
    assert len([p for p in (cache / "ptbxl").glob("fs100-*") if p.is_dir()]) == 1
    assert (
        data_identity(relative, rel_arrays) == data_identity(absolute, abs_arrays) == data_identity(copied, copy_arrays)
    )
    assert "root" not in data_identity(absolute, abs_arrays)["dataset_config"]
    assert load(original, cache, "all")[1].fingerprint == abs_arrays.fingerprint  # label sets share the data


def test_an_edited_label_file_is_other_data(original, tmp_path):
    root = copy_of(original, tmp_path / "ptbxl")
    cache = tmp_path / "cache"
    _, before = load(root, cache)
    database = pd.read_csv(root / "ptbxl_database.csv")
    database.loc[0, "strat_fold"] = 10  # record 1 moves to the test fold
    database.to_csv(root / "ptbxl_database.csv", index=False)
    _, after = load(root, cache)
    assert cache_dir(after) == cache_dir(before)  # same signals
    assert after.fingerprint != before.fingerprint and 0 in after.splits["test"] and 0 not in before.splits["test"]


@pytest.mark.slow
def test_a_run_from_another_root_reuses_the_finished_cells(original, tmp_path, monkeypatch):
    """``--root ./ptbxl`` and the absolute path of a copy: same signatures, nothing recomputed."""

    def request(root: str) -> RunRequest:
        return RunRequest(
            methods=["random_init"],
            dataset="ptbxl",
            label_set="superdiagnostic",
            preset="smoke",
            protocols=["linear"],
            results=tmp_path / "out",
            overrides={"ptbxl": {"root": root}},
            add_references=False,
            progress=False,
            cache_dir=tmp_path / "cache",
        )

    root = mini_ptbxl(shared_ptbxl(), tmp_path / "data" / "ptbxl", n=120)
    monkeypatch.chdir(root.parent)
    first = run(request("./ptbxl"))
    copied = copy_of(root, tmp_path / "moved" / "ptbxl")
    from benchmark.eval.protocols import linear

    monkeypatch.setattr(linear.LinearProbe, "run", lambda *a, **k: pytest.fail("a finished cell was recomputed"))
    second = run(request(str(copied)))
    assert [r["signature"] for r in second] == [r["signature"] for r in first]
    assert "root" not in first[0]["config"]["dataset_config"] and first[0]["config"]["data"]


def counting_hashes(monkeypatch) -> list[str]:
    """Names of the files hashed from now on (the racy window shortened so tests need not wait)."""
    hashed: list[str] = []
    real = content._hash
    monkeypatch.setattr(content, "_hash", lambda path, refs: hashed.append(Path(path).name) or real(path, refs))
    monkeypatch.setattr(content, "RACY_S", 0.3)
    return hashed


def test_hashes_are_remembered_and_only_changed_files_hashed_again(tmp_path, monkeypatch):
    root = tmp_path / "files"
    root.mkdir()
    names = [f"f{i}.bin" for i in range(5)]
    for i, name in enumerate(names):
        (root / name).write_bytes(bytes([i]) * 1000)
    hashed = counting_hashes(monkeypatch)
    time.sleep(0.4)  # older than the racy window
    hasher = Hasher.in_cache(tmp_path / "cache", progress=False)
    first = hasher.digests(root, [*names, "absent.bin"]).digest
    assert sorted(hashed) == names and not first[-1].any()
    assert bytes(first[2]).hex() == hashlib.sha256(bytes([2]) * 1000).hexdigest()
    hashed.clear()
    assert np.array_equal(Hasher.in_cache(tmp_path / "cache", progress=False).digests(root, names).digest, first[:5])
    assert hashed == []  # a new run: stat only
    (root / "f1.bin").write_bytes(b"changed")
    (root / "f4.bin").chmod(0o600)  # status change only: hashed again, same digest
    again = hasher.digests(root, names).digest
    assert sorted(hashed) == ["f1.bin", "f4.bin"]
    assert not np.array_equal(again[1], first[1]) and np.array_equal(again[4], first[4])
    assert hasher.file_digests([root / "f2.bin", root / "absent.bin"]) == [bytes(first[2]).hex(), ""]


def test_a_file_written_just_before_hashing_is_hashed_again_until_it_is_older(tmp_path, monkeypatch):
    """Within the racy window a change may keep the file's stat (same clock tick), so its digest
    is not remembered: the next run hashes it again; once it is older, it is remembered."""
    hashed = counting_hashes(monkeypatch)
    path = tmp_path / "files" / "new.bin"
    path.parent.mkdir()
    path.write_bytes(b"a" * 100)
    for _ in range(2):
        Hasher.in_cache(tmp_path / "cache", progress=False).file_digests([path])
    assert hashed == ["new.bin", "new.bin"]
    time.sleep(0.4)
    for _ in range(2):
        Hasher.in_cache(tmp_path / "cache", progress=False).file_digests([path])
    assert hashed == ["new.bin"] * 3


def test_numpy_arrays_are_keyed_by_content(tmp_path):
    numpy_cls = DATASETS.get("numpy")
    signals = np.random.default_rng(0).standard_normal((20, len(LEADS), 1000)).astype(np.float32)

    def write(folder: Path, array: np.ndarray) -> Path:
        folder.mkdir(parents=True)
        np.save(folder / "signals.npy", array)
        pd.DataFrame({"labels": ["['a']", "['b']"] * 10}).to_csv(folder / "labels.csv", index=False)
        age(folder)
        return folder

    def load_numpy(folder: Path):
        dataset = numpy_cls(numpy_cls.Config(root=folder, fs=100.0))
        dataset.workers = 1
        return dataset.load(100, "default", tmp_path / "cache", progress=False)

    first = load_numpy(write(tmp_path / "a", signals))
    copy = load_numpy(write(tmp_path / "b", signals))
    other = load_numpy(write(tmp_path / "c", -signals))
    assert cache_dir(first) == cache_dir(copy) and first.fingerprint == copy.fingerprint
    assert cache_dir(other) != cache_dir(first)
    np.testing.assert_allclose(other.signals[3], -signals[3], atol=2e-3)


def test_synthetic_data_is_its_config_and_generator_version(tmp_path, monkeypatch):
    synthetic_cls = DATASETS.get("synthetic")
    module = __import__(synthetic_cls.__module__, fromlist=["GENERATOR_VERSION"])
    small = synthetic_cls.Config(n_patients=40)
    first = synthetic_cls(small).load(100, "conditions", tmp_path)
    assert first.fingerprint == synthetic_cls(small).load(100, "icd", tmp_path).fingerprint
    assert (
        first.fingerprint
        != synthetic_cls(synthetic_cls.Config(n_patients=41)).load(100, "conditions", tmp_path).fingerprint
    )
    monkeypatch.setattr(module, "GENERATOR_VERSION", module.GENERATOR_VERSION + 1)
    assert synthetic_cls(small).load(100, "conditions", tmp_path).fingerprint != first.fingerprint
