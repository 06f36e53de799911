"""Bad input, each case on real PTB-XL files copied into tmp_path and damaged: every record is
either used correctly, repaired and reported, or excluded and reported (id + reason), or the run
stops with an error naming the file and the fix. Never a silently wrong label or signal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from ecg_fixtures import mini_ptbxl, rdsamp_leads, rewrite_header, shared_ptbxl, write_wfdb

from benchmark.data.contract import LEADS, DataError
from benchmark.registry import DATASETS

LEAD = {name: k for k, name in enumerate(LEADS)}
ABSENT_ID = "9999"


def record(root: Path, ecg_id: int) -> Path:
    return root / "records100" / "00000" / f"{ecg_id:05d}_lr"


def rewrite_signal(root: Path, ecg_id: int, change) -> None:
    """Rewrite a record after ``change(signal (T, 12), names)`` — same header layout otherwise."""
    path = record(root, ecg_id)
    signal, fields = wfdb.rdsamp(str(path))
    names = list(fields["sig_name"])
    change(signal, names)
    write_wfdb(path.parent, path.name, signal, fields["fs"], names)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A 40-record PTB-XL root with one kind of damage per record (see the test names), loaded once."""
    tmp = tmp_path_factory.mktemp("bad")
    root = mini_ptbxl(shared_ptbxl(), tmp / "ptbxl")
    original = {i: rdsamp_leads(record(root, i)) for i in (5, 6, 7, 11, 12)}
    Path(f"{record(root, 1)}.hea").unlink()
    Path(f"{record(root, 2)}.dat").unlink()
    data = Path(f"{record(root, 3)}.dat")
    data.write_bytes(data.read_bytes()[:5000])
    rewrite_header(record(root, 4), lambda text: text.replace("00004_lr 12 100 1000", "00004_lr 12 100 900", 1))

    def nan_gap(lead, start, length):
        def change(signal, names):
            signal[start : start + length, [n.lower() for n in names].index(lead.lower())] = np.nan

        return change

    rewrite_signal(root, 5, nan_gap("V2", 400, 5))  # 50 ms: interpolated
    rewrite_signal(root, 6, nan_gap("V3", 100, 30))  # 300 ms: lead masked
    rewrite_signal(root, 7, lambda signal, names: signal.__setitem__((slice(None), names.index("AVL")), 0.0))
    rewrite_signal(root, 11, lambda signal, names: names.__setitem__(names.index("V4"), "V4R"))
    rewrite_header(record(root, 12), lambda text: text.replace(" V5\n", " V6\n"))  # wfdb cannot write it
    rewrite_header(record(root, 13), lambda text: text.replace("00013_lr 12 100 1000", "00013_lr 12 500 1000", 1))

    database = pd.read_csv(root / "ptbxl_database.csv", dtype=str)
    database.loc[database.ecg_id == "14", "scp_codes"] = "{'NORM': 100.0"
    database.loc[database.ecg_id == "15", "scp_codes"] = "{}"
    absent = database.iloc[[0]].assign(
        ecg_id=ABSENT_ID,
        patient_id="99999.0",
        strat_fold="1",
        filename_lr="records100/09000/09999_lr",
        filename_hr="records500/09000/09999_hr",
    )
    pd.concat([database, absent]).to_csv(root / "ptbxl_database.csv", index=False)

    cls = DATASETS.get("ptbxl")
    dataset = cls(cls.Config(root=root, max_excluded_fraction=0.5))
    dataset.workers = 1
    arrays = dataset.load(100, "superdiagnostic", tmp / "cache")
    cache = next((tmp / "cache" / "ptbxl").glob("fs100-*/"))
    view = next((cache / "views").glob("superdiagnostic-*/"))
    return {
        "root": root,
        "arrays": arrays,
        "original": original,
        "cache": cache,
        "tmp": tmp,
        "report": pd.read_csv(cache / "report.csv", dtype={"record_id": str}),
        "labels_report": pd.read_csv(view / "report.csv", dtype={"record_id": str}),
        "row": {rid: i for i, rid in enumerate(arrays.record_ids)},
    }


def reason(report: pd.DataFrame, record_id: str, action: str) -> str:
    rows = report[(report.record_id == record_id) & (report.action == action)]
    assert len(rows), f"no {action!r} row for record {record_id} in the report:\n{report}"
    return " | ".join(rows.detail)


def in_any_split(arrays, row: int) -> bool:
    return any(row in set(v.tolist()) for v in arrays.splits.values())


@pytest.mark.parametrize(
    "ecg_id, expected",
    [
        ("1", "00001_lr.hea is missing"),
        ("2", "00002_lr.dat is missing"),
        ("3", "(truncated)"),
        ("4", "longer than its header says"),
        ("13", "declares 500 Hz but this dataset's records here are 100 Hz"),
        (ABSENT_ID, "09999_lr.hea is missing"),
    ],
)
def test_unreadable_records_are_excluded_and_listed(damaged, ecg_id, expected):
    assert expected in reason(damaged["report"], ecg_id, "excluded")
    row = damaged["row"][ecg_id]
    arrays = damaged["arrays"]
    assert not arrays.lead_mask[row].any() and not np.asarray(arrays.signals[row]).any()
    assert not in_any_split(arrays, row)


def test_short_nan_gap_is_interpolated_and_counted(damaged):
    arrays, row = damaged["arrays"], damaged["row"]["5"]
    assert "5 NaN samples in 1 gap(s)" in reason(damaged["report"], "5", "interpolated")
    v2 = damaged["original"][5][LEAD["V2"]]
    expected = np.interp(np.arange(400, 405), [399, 405], [v2[399], v2[405]])
    cached = np.asarray(arrays.signals[row, LEAD["V2"]], dtype=np.float64)
    np.testing.assert_allclose(cached[400:405], expected, atol=2e-3)
    np.testing.assert_allclose(cached[:400], v2[:400], atol=2e-3)
    assert arrays.lead_mask[row].all()
    manifest = json.loads((damaged["cache"] / "manifest.json").read_text())
    assert manifest["nan_samples_interpolated"] == 5


def test_long_nan_gap_masks_the_lead_never_zero_filled_as_data(damaged):
    arrays, row = damaged["arrays"], damaged["row"]["6"]
    assert "30 NaN samples, longest gap 0.300 s" in reason(damaged["report"], "6", "lead masked")
    assert not arrays.lead_mask[row, LEAD["V3"]] and arrays.lead_mask[row].sum() == 11
    np.testing.assert_allclose(
        np.asarray(arrays.signals[row, LEAD["V2"]], dtype=np.float64), damaged["original"][6][LEAD["V2"]], atol=2e-3
    )


def test_flat_lead_is_masked(damaged):
    arrays, row = damaged["arrays"], damaged["row"]["7"]
    assert "aVL: flat" in reason(damaged["report"], "7", "lead masked")
    assert not arrays.lead_mask[row, LEAD["aVL"]] and arrays.lead_mask[row].sum() == 11


def test_unknown_lead_name_is_ignored_and_its_lead_masked(damaged):
    arrays, row = damaged["arrays"], damaged["row"]["11"]
    assert "unknown lead name 'V4R'" in reason(damaged["report"], "11", "channel ignored")
    assert "V4: no channel has this name" in reason(damaged["report"], "11", "lead masked")
    assert not arrays.lead_mask[row, LEAD["V4"]] and arrays.lead_mask[row].sum() == 11
    for lead in ("V3", "V5", "V6"):  # the other leads still come from the channel with their name
        np.testing.assert_allclose(
            np.asarray(arrays.signals[row, LEAD[lead]], dtype=np.float64),
            damaged["original"][11][LEAD[lead]],
            atol=2e-3,
        )


def test_duplicate_lead_name_masks_both_candidates(damaged):
    arrays, row = damaged["arrays"], damaged["row"]["12"]
    assert "V6: 2 channels carry this name" in reason(damaged["report"], "12", "lead masked")
    assert not arrays.lead_mask[row, LEAD["V5"]] and not arrays.lead_mask[row, LEAD["V6"]]
    assert arrays.lead_mask[row].sum() == 10


@pytest.mark.parametrize(
    "ecg_id, expected",
    [
        ("14", "unparsable scp_codes cell \"{'NORM': 100.0\""),
        ("15", "empty scp_codes"),
    ],
)
def test_bad_label_cells_leave_the_labelled_splits(damaged, ecg_id, expected):
    assert expected in reason(damaged["labels_report"], ecg_id, "excluded from labelled splits")
    arrays, row = damaged["arrays"], damaged["row"][ecg_id]
    assert arrays.lead_mask[row].all()  # the signal is fine ...
    assert all(row not in arrays.splits[s] for s in ("train", "val", "test"))  # ... its labels are not
    assert row in arrays.splits["pretrain"]  # training-fold record: still pretrains (labels unused)


def test_intact_records_keep_signals_and_labels(damaged, shared_data):
    arrays = damaged["arrays"]
    database = pd.read_csv(shared_data / "ptbxl" / "ptbxl_database.csv", index_col="ecg_id")
    for ecg_id in ("8", "9", "10", "16", "20", "38"):
        row = damaged["row"][ecg_id]
        np.testing.assert_allclose(
            np.asarray(arrays.signals[row], dtype=np.float64),
            rdsamp_leads(record(damaged["root"], int(ecg_id))),
            atol=4e-3,
        )
        assert arrays.lead_mask[row].all()
    assert damaged["report"].record_id.isin(["8", "9", "10", "16", "20", "38"]).sum() == 0
    norm = arrays.label_names.index("NORM")
    assert arrays.labels[damaged["row"]["8"], norm] == ("NORM" in database.loc[8, "scp_codes"])


def test_too_many_exclusions_stop_with_the_report_named(damaged):
    cls = DATASETS.get("ptbxl")
    with pytest.raises(DataError, match=r"more than max_excluded_fraction=0.05 .*report\.csv.*max_excluded_fraction="):
        cls(cls.Config(root=damaged["root"])).load(100, "superdiagnostic", damaged["tmp"] / "cache")


@pytest.mark.parametrize(
    "file, column", [("ptbxl_database.csv", "strat_fold"), ("scp_statements.csv", "diagnostic_class")]
)
def test_csv_missing_a_required_column_stops_with_file_and_fix(shared_data, tmp_path, file, column):
    root = mini_ptbxl(shared_data / "ptbxl", tmp_path / "ptbxl", n=3)
    table = pd.read_csv(root / file)
    table.drop(columns=[column]).to_csv(root / file, index=False)
    cls = DATASETS.get("ptbxl")
    with pytest.raises(DataError, match=rf"{file} lacks the required column\(s\) {column} .*unmodified PTB-XL"):
        cls(cls.Config(root=root)).load(100, "superdiagnostic", tmp_path / "cache")
