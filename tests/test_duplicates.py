"""The content-level duplicate guard: one recording gets one fingerprint whatever its rate, gain
or file format, different recordings never match, and a pretraining or training record that is
a validation/test recording of the evaluated dataset is refused, or dropped and reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from conftest import run_cli
from ecg_fixtures import mini_ptbxl, rdsamp_leads, shared_ptbxl, write_challenge

from benchmark.data.conditioning import Preprocessing, condition
from benchmark.data.contract import LEADS, LeakageError
from benchmark.data.duplicates import MATCH_COSINE, fingerprint, guard_duplicates
from benchmark.data.pool import pretraining_pool
from benchmark.data.readers import WfdbReader
from benchmark.run.build import build_dataset
from benchmark.run.presets import PRESETS

ALL_LEADS = np.ones(len(LEADS), dtype=bool)


def prepared_fingerprint(root: Path, path: str) -> np.ndarray:
    """A record's fingerprint as preparation computes it (reader + conditioning at 100 Hz)."""
    return condition(WfdbReader(str(root), [path]).read(0), 100, 10.0, Preprocessing())[2]


def test_same_record_at_100_and_500_hz_scaled_or_as_challenge_mat_has_the_same_fingerprint(tmp_path):
    ptbxl = shared_ptbxl()
    database = pd.read_csv(ptbxl / "ptbxl_database.csv").iloc[:6]
    for ecg_id, lr, hr in zip(database.ecg_id, database.filename_lr, database.filename_hr):
        reference = prepared_fingerprint(ptbxl, lr)
        high = rdsamp_leads(ptbxl / hr)
        write_challenge(tmp_path, f"HR{ecg_id:05d}", high, 500, "426783006")  # 1 uV integers in a .mat
        write_challenge(tmp_path, f"G{ecg_id:05d}", 4.2 * high, 500, "426783006", gain=200.0)  # another gain
        versions = {
            "500 Hz": prepared_fingerprint(ptbxl, hr),
            "Challenge .mat": prepared_fingerprint(tmp_path, f"HR{ecg_id:05d}"),
            "scaled x4.2, gain 200": prepared_fingerprint(tmp_path, f"G{ecg_id:05d}"),
        }
        for version, value in versions.items():
            assert float(reference @ value) >= MATCH_COSINE, f"ecg {ecg_id}: {version} does not match records100"


def test_different_recordings_never_match(shared_data):
    """All 500 PTB-XL records (59 pairs of one patient among them): the only matches are the five
    pairs of identical 500 Hz signals PTB-XL itself holds under two ecg_ids."""
    root = shared_data / "ptbxl"
    database = pd.read_csv(root / "ptbxl_database.csv")
    # the ADC counts straight from the .dat files (format 16, leads in LEADS order): the fingerprint
    # ignores gain and baseline, and this reads the 500 records in a second
    counts = [np.fromfile(root / f"{name}.dat", dtype="<i2").reshape(-1, 12).T for name in database.filename_lr]
    prints = np.stack([fingerprint(x.astype(np.float64), ALL_LEADS, 100) for x in counts])
    similarity = prints @ prints.T
    np.fill_diagonal(similarity, 0)
    matches = {tuple(sorted(database.ecg_id.iloc[[i, j]])) for i, j in zip(*np.nonzero(similarity >= MATCH_COSINE))}
    assert matches == {(137, 138), (143, 144), (145, 463), (456, 457), (459, 460)}
    for a, b in matches:
        names = database.set_index("ecg_id").filename_hr
        assert np.array_equal(wfdb.rdsamp(str(root / names[a]))[0], wfdb.rdsamp(str(root / names[b]))[0])
    similarity[similarity >= MATCH_COSINE] = 0
    assert similarity.max() < 0.75  # a wide margin below the threshold


@pytest.fixture(scope="module")
def hr_copies(tmp_path_factory):
    """A 40-record PTB-XL root and a Challenge folder holding its validation/test records (and
    three training records) at 500 Hz under HR* names, as the real Challenge did."""
    tmp = tmp_path_factory.mktemp("hr")
    root = mini_ptbxl(shared_ptbxl(), tmp / "ptbxl", n=40)
    database = pd.read_csv(root / "ptbxl_database.csv")
    held_out = database[database.strat_fold >= 9]
    copied = pd.concat([held_out, database[database.strat_fold <= 8].iloc[:3]])
    for ecg_id, hr in zip(copied.ecg_id, copied.filename_hr):
        write_challenge(tmp / "challenge", f"HR{ecg_id:05d}", rdsamp_leads(shared_ptbxl() / hr), 500, "426783006")
    return tmp, root, held_out.ecg_id.tolist()


def guarded_pool(tmp: Path, root: Path, challenge: Path, policy: str):
    # every Challenge record pretrains (no validation/test split of its own)
    overrides = {
        "ptbxl": {"root": str(root)},
        "cinc": {"root": str(challenge), "val_fraction": "0", "test_fraction": "0"},
    }
    build = lambda name, scoped: build_dataset(name, PRESETS["smoke"], scoped)  # noqa: E731 (as the runner)
    dataset = build("ptbxl", overrides)
    evaluation = dataset.load(100, "superdiagnostic", tmp / "cache", progress=False)
    pool, _ = pretraining_pool(["ptbxl", "cinc"], dataset, evaluation, build, overrides, 100, tmp / "cache", False)
    return guard_duplicates(evaluation, pool, policy, tmp / "out" / "duplicates.csv")


def held_out_ids(tmp: Path, root: Path) -> list[str]:
    """The evaluated records: PTB-XL's validation and test records that have a superdiagnostic label."""
    evaluation = build_dataset("ptbxl", PRESETS["smoke"], {"ptbxl": {"root": str(root)}}).load(
        100, "superdiagnostic", tmp / "cache", progress=False
    )
    rows = np.concatenate([evaluation.splits["val"], evaluation.splits["test"]])
    return sorted(np.asarray(evaluation.record_ids)[rows].astype(str))


def test_ptbxl_val_test_records_hidden_as_challenge_hr_records_are_refused(hr_copies):
    tmp, root, _ = hr_copies
    held_out = held_out_ids(tmp, root)
    with pytest.raises(LeakageError, match=rf"{len(held_out)} pretrain record\(s\) are the same recording") as error:
        guarded_pool(tmp, root, tmp / "challenge", "refuse")
    assert "--duplicates drop" in str(error.value) and str(tmp / "out" / "duplicates.csv") in str(error.value)


def test_with_drop_they_are_reported_and_kept_out_of_pretraining(hr_copies):
    tmp, root, _ = hr_copies
    held_out = held_out_ids(tmp, root)
    evaluation, pool, dropped = guarded_pool(tmp, root, tmp / "challenge", "drop")
    expected = {f"cinc:HR{int(ecg_id):05d}" for ecg_id in held_out}
    assert set(dropped) == expected
    report = pd.read_csv(tmp / "out" / "duplicates.csv", dtype=str)
    assert set(report.record_id) == expected and set(report.split) == {"pretrain"}
    assert set(report.same_as) == set(held_out)
    pooled = set(np.asarray(pool.record_ids)[pool.splits["pretrain"]])
    assert not pooled & expected
    assert {"cinc:HR00001", "cinc:HR00002", "cinc:HR00003"} <= pooled  # copies of training records may pretrain


@pytest.mark.slow
def test_the_real_challenge_hr_records_are_not_ptbxl_records_of_our_500(shared_data, tmp_path):
    """The real HR* records of the Challenge sample are PTB-XL records outside our 500: they pass."""
    challenge = tmp_path / "challenge"
    challenge.mkdir()
    for header in sorted((shared_data / "cinc2021").glob("HR*.hea")):
        for suffix in (".hea", ".mat"):
            (challenge / header.with_suffix(suffix).name).symlink_to(header.with_suffix(suffix))
    evaluation, pool, dropped = guarded_pool(tmp_path, shared_data / "ptbxl", challenge, "refuse")
    assert dropped == [] and not (tmp_path / "out" / "duplicates.csv").exists()
    assert sum(str(r).startswith("cinc:HR") for r in np.asarray(pool.record_ids)[pool.splits["pretrain"]]) > 10


def test_a_training_record_duplicating_a_test_record_of_the_same_dataset_is_caught(hr_copies, tmp_path):
    tmp, root, held_out = hr_copies
    copy = mini_ptbxl(shared_ptbxl(), tmp_path / "ptbxl", n=40)
    database = pd.read_csv(copy / "ptbxl_database.csv")
    train_row = database.index[database.strat_fold <= 8][0]
    test_row = database.index[database.strat_fold == 10][0]
    train_file, test_file = (copy / database.filename_lr[row] for row in (train_row, test_row))
    for suffix in (".hea", ".dat"):  # the training record's files now hold the test recording
        Path(f"{train_file}{suffix}").write_bytes(
            Path(f"{test_file}{suffix}").read_bytes().replace(test_file.name.encode(), train_file.name.encode())
        )
    dataset = build_dataset("ptbxl", PRESETS["smoke"], {"ptbxl": {"root": str(copy)}})
    evaluation = dataset.load(100, "superdiagnostic", tmp_path / "cache", progress=False)
    with pytest.raises(LeakageError, match="1 pretrain, 1 train record"):
        guard_duplicates(evaluation, evaluation, "refuse", tmp_path / "duplicates.csv")
    guarded, same, dropped = guard_duplicates(evaluation, evaluation, "drop", tmp_path / "duplicates.csv")
    assert guarded is same and dropped == [str(database.ecg_id[train_row])]
    for split in ("train", "pretrain"):
        assert (
            train_row not in guarded.splits[split] and len(guarded.splits[split]) == len(evaluation.splits[split]) - 1
        )


@pytest.mark.slow
def test_run_refuses_the_hidden_copies_and_drops_them_when_asked(hr_copies, tmp_path):
    tmp, root, _ = hr_copies
    held_out = held_out_ids(tmp, root)
    common = [
        "run", "--methods", "lamae", "--dataset", "ptbxl", "--root", str(root), "--labels", "superdiagnostic",
        "--preset", "smoke", "--protocols", "linear", "--no-references", "--cache-dir", str(tmp / "cache"),
        "--results", str(tmp_path / "out"), "--leaderboard", str(tmp_path / "LB.md"), "--no-progress",
        "--pretrain-data", f"ptbxl,cinc:{tmp / 'challenge'}", "--set", "cinc.val_fraction=0",
        "--set", "cinc.test_fraction=0",
    ]  # fmt: skip
    refused = run_cli(*common)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "are the same recording as a validation/test record of ptbxl" in refused.stderr
    dropped = run_cli(*common, "--duplicates", "drop")
    assert dropped.returncode == 0, dropped.stderr
    report = pd.read_csv(tmp_path / "out" / "duplicates-ptbxl-superdiagnostic.csv")
    assert len(report) == len(held_out)
    record = json.loads(next((tmp_path / "out").rglob("linear_seed0.json")).read_text())
    assert sorted(record["config"]["dropped_duplicates"]) == sorted(report.record_id)
