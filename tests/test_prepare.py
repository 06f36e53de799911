"""The preprocessing pipeline on real PTB-XL records: cached signals equal wfdb.rdsamp after the
documented preprocessing, the cache is reused or rebuilt when it should be, a crashed build
resumes, and worker processes give the same bytes as one process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ecg_fixtures import mini_ptbxl, rdsamp_leads, shared_ptbxl
from scipy.signal import butter, resample_poly, sosfiltfilt

import benchmark.data.cache as cache
from benchmark.data.conditioning import Preprocessing, map_channels, resampling_filter
from benchmark.data.contract import LEADS, ECGArrays
from benchmark.registry import DATASETS

PTBXL = DATASETS.get("ptbxl")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return mini_ptbxl(shared_ptbxl(), tmp_path_factory.mktemp("ptbxl") / "ptbxl", n=12, rates=("lr", "hr"))


def ptbxl(root, workers=1, **config):
    dataset = PTBXL(PTBXL.Config(root=root, **config))
    dataset.workers = workers
    return dataset


def test_100_hz_signals_are_rdsamp_of_records100_in_float16(root, tmp_path):
    arrays = ptbxl(root).load(100, "all", tmp_path)
    database = pd.read_csv(root / "ptbxl_database.csv")
    assert arrays.signals.dtype == np.float16 and arrays.signals.shape == (12, 12, 1000)
    for row, name in enumerate(database.filename_lr):
        np.testing.assert_array_equal(arrays.signals[row], rdsamp_leads(root / name).astype(np.float16))
    assert arrays.lead_mask.all()


def test_250_hz_signals_are_resample_poly_of_records500(root, tmp_path):
    arrays = ptbxl(root).load(250, "all", tmp_path)
    database = pd.read_csv(root / "ptbxl_database.csv")
    assert arrays.signals.shape == (12, 12, 2500)
    for row, name in enumerate(database.filename_hr):
        expected = resample_poly(rdsamp_leads(root / name), 1, 2, axis=1)
        np.testing.assert_allclose(np.asarray(arrays.signals[row], dtype=np.float64), expected, rtol=2**-11, atol=1e-4)


def test_bandpass_and_record_standardisation_as_documented(root, tmp_path):
    prep = Preprocessing(bandpass_hz=(0.67, 40.0), standardize="record")
    arrays = ptbxl(root, preprocess=prep).load(100, "all", tmp_path)
    x = sosfiltfilt(
        butter(4, (0.67, 40.0), btype="bandpass", fs=100, output="sos"),
        rdsamp_leads(root / "records100/00000/00003_lr"),
        axis=1,
    )
    x -= x.mean(axis=1, keepdims=True)
    expected = x / x.std()
    np.testing.assert_allclose(np.asarray(arrays.signals[2], dtype=np.float64), expected, rtol=2**-10, atol=2e-3)
    manifest = json.loads(next((tmp_path / "ptbxl").glob("fs100-*/manifest.json")).read_text())
    assert manifest["preprocessing"]["standardize"] == "record" and manifest["signals"]["unit"] == "standardised"
    lead = ptbxl(root, preprocess=Preprocessing(standardize="lead")).load(100, "all", tmp_path)
    signal = np.asarray(lead.signals[0], dtype=np.float64)
    np.testing.assert_allclose(signal.mean(axis=1), 0, atol=2e-3)
    np.testing.assert_allclose(signal.std(axis=1), 1, atol=2e-3)


def test_cache_is_reused_and_rebuilt_when_parameters_change(root, tmp_path, monkeypatch):
    first = ptbxl(root).prepare(100, tmp_path)[1]
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["prepare_version"] == cache.PREPARE_VERSION and manifest["code"]["git"]["commit"]
    assert manifest["source_bytes_total"] > 12 * 24000 and manifest["fs"] == 100
    monkeypatch.setattr(cache, "_build", lambda *a, **k: pytest.fail("a complete cache must be reused"))
    assert ptbxl(root).prepare(100, tmp_path)[1] == first
    monkeypatch.undo()
    changed = ptbxl(root, preprocess=Preprocessing(max_gap_s=0.2)).prepare(100, tmp_path)[1]
    rate = ptbxl(root).prepare(250, tmp_path)[1]
    assert len({first, changed, rate}) == 3
    assert (changed / cache.COMPLETE).is_file() and (rate / cache.COMPLETE).is_file()


class Crash(Exception):
    """Stands for a kill: the process stops between two chunks."""


def test_a_crashed_build_resumes_and_never_looks_complete(root, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK", 4)
    real, calls, crashed = cache._prepare_chunk, [], []

    def crash_on_second_chunk(start, stop):
        calls.append(start)
        if len(calls) == 2 and not crashed:
            crashed.append(start)
            raise Crash
        return real(start, stop)

    monkeypatch.setattr(cache, "_prepare_chunk", crash_on_second_chunk)
    dataset = ptbxl(root)
    with pytest.raises(Crash):
        dataset.prepare(100, tmp_path / "crashed")
    folder = next((tmp_path / "crashed" / "ptbxl").glob("fs100-*/"))
    assert not (folder / cache.COMPLETE).exists() and not (folder / "manifest.json").exists()
    assert len(list((folder / "progress").glob("chunk-*.npz"))) == 1

    calls.clear()
    assert dataset.prepare(100, tmp_path / "crashed")[1] == folder
    assert calls == [4, 8]  # only the chunks not finished before the crash
    clean = ptbxl(root).prepare(100, tmp_path / "clean")[1]
    for name in ("signals.npy", "lead_mask.npy", "record_ids.npy", "report.csv"):
        assert (folder / name).read_bytes() == (clean / name).read_bytes(), name
    assert not (folder / "progress").exists()


@pytest.mark.slow
def test_worker_processes_write_the_same_cache(root, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK", 4)
    one = ptbxl(root, workers=1).prepare(250, tmp_path / "one")[1]
    two = ptbxl(root, workers=2).prepare(250, tmp_path / "two")[1]
    assert json.loads((two / "manifest.json").read_text())["last_session"]["workers"] == 2
    for name in ("signals.npy", "lead_mask.npy", "report.csv"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_views_load_as_ecg_arrays_and_share_the_signals(root, tmp_path):
    dataset = ptbxl(root)
    arrays = dataset.load(100, "superdiagnostic", tmp_path)
    cache = next((tmp_path / "ptbxl").glob("fs100-*/"))
    views = sorted((cache / "views").glob("*/"))
    assert [v.name.split("-")[0] for v in views] == ["superdiagnostic"]
    again = ECGArrays.load(views[0])
    assert again.label_names == arrays.label_names == ["MI", "NORM"]  # the superclasses of these 12 records
    np.testing.assert_array_equal(again.labels, arrays.labels)
    assert isinstance(again.signals, np.memmap) and Path(again.signals.filename) == cache / "signals.npy"
    assert not (views[0] / "signals.npy").exists()


def test_channel_names_map_case_insensitively_never_by_position():
    source, notes = map_channels(["v6", "AVR", "I", "ii", "III", "aVL", "AVF", "V1", "V2", "V3", "V4", "V5"])
    assert [LEADS[k] for k in np.argsort(source)] == [
        "V6",
        "aVR",
        "I",
        "II",
        "III",
        "aVL",
        "aVF",
        "V1",
        "V2",
        "V3",
        "V4",
        "V5",
    ]
    assert notes == []


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(bandpass_hz=(40.0, 0.67)), "0 < low < high"),
        (dict(standardize="zscore"), "none, record, lead"),
        (dict(duration_s=0), "duration_s must be > 0"),
    ],
)
def test_preprocessing_settings_are_validated(bad, message):
    with pytest.raises(ValueError, match=message):
        Preprocessing(**bad)


def test_bandpass_above_nyquist_is_refused(root, tmp_path):
    with pytest.raises(Exception, match="below the Nyquist frequency 50 Hz"):
        ptbxl(root, preprocess=Preprocessing(bandpass_hz=(0.5, 60.0))).load(100, "all", tmp_path)


@pytest.mark.parametrize("up, down", [(1, 5), (1, 2), (2, 5), (5, 1), (250, 257)])
def test_pinned_resampling_filter_is_resample_polys_default_design(up, down):
    x = np.random.default_rng(up).standard_normal((12, 5000))
    expected = resample_poly(x, up, down, axis=1)  # scipy's default Kaiser design, made per call
    assert np.array_equal(resample_poly(x, up, down, axis=1, window=resampling_filter(up, down)), expected)
    assert resampling_filter(up, down) is resampling_filter(up, down)  # built once per rate pair
