"""MIMIC-IV-ECG + Ext-ICD on a miniature database in the exact layout: real PTB-XL 500 Hz signals
written with wfdb.wrsamp under files/pNNNN/pSUBJECT/sSTUDY/STUDY with MIMIC's lead order (aVF
before aVL), record_list.csv as in ../shared/data/mimic_iv_ecg_layout, records_w_diag_icd10.csv
with the documented columns, list-literal cells and extra unknown columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ecg_fixtures import MIMIC_LEADS, rdsamp_leads, shared_ptbxl, write_wfdb

from benchmark.data.contract import LEADS, DataError, LeakageError
from benchmark.data.icd import icd_level
from benchmark.registry import DATASETS

LABEL_COLUMNS = [
    "file_name",
    "study_id",
    "subject_id",
    "ecg_time",
    "ed_stay_id",
    "ed_hadm_id",
    "hosp_hadm_id",
    "ed_diag_ed",
    "ed_diag_hosp",
    "hosp_diag_hosp",
    "all_diag_hosp",
    "all_diag_all",
    "gender",
    "age",
    "anchor_year",
    "anchor_age",
    "dod",
    "ecg_no_within_stay",
    "ecg_taken_in_ed",
    "ecg_taken_in_hosp",
    "ecg_taken_in_ed_or_hosp",
    "fold",
    "strat_fold",
]

# (subject, study, PTB-XL ecg_id of the signal, all_diag_all cell, fold, strat_fold, ecg_no_within_stay)
ROWS = [
    (10000032, 40689238, 1, "['I10', 'E785', 'I2510']", 0, 3, 0),
    (10000032, 40000001, 2, "['I071', 'I480']", 0, 3, 1),
    (10000117, 40000002, 3, "['I4891']", 5, 7, 0),
    (10000200, 40000003, 4, "['J189']", 9, 12, 0),
    (10000301, 40000004, 5, "['I21.4', 'ZZZ99']", 12, 15, 0),
    (10000402, 40000005, 6, "[]", 3, 1, 0),
    (10000503, 40000006, 7, "['I10', 'E78", 14, 16, 0),
    (10000604, 40000007, 8, "['I480', 'I10']", 17, 18, 0),
    (10000705, 40000008, 9, "['I2510', 'I071']", 18, 19, 0),
    (10000705, 40000009, 10, "['I10']", 18, 19, 0),
]
UNLABELLED = (10000806, 40000010, 11)  # in record_list.csv, not in the labels file
NAN_STUDY = 40000004  # V6 gets a long NaN gap, V2 is flat

EXPECTED_CHAPTER_IX = {
    40689238: {"IX", "IX.I10-I1A", "I10", "IX.I20-I25", "I25", "I251"},
    40000001: {"IX", "IX.I05-I09", "I07", "I071", "IX.I30-I5A", "I48", "I480"},
    40000002: {"IX", "IX.I30-I5A", "I48", "I489"},
    40000003: set(),  # pneumonia only: a negative for every Chapter IX label
    40000004: {"IX", "IX.I20-I25", "I21", "I214"},
    40000007: {"IX", "IX.I30-I5A", "I48", "I480", "IX.I10-I1A", "I10"},
    40000008: {"IX", "IX.I20-I25", "I25", "I251", "IX.I05-I09", "I07", "I071"},
    40000009: {"IX", "IX.I10-I1A", "I10"},
}


def record_path(subject: int, study: int) -> str:
    return f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"


@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
    ptbxl = shared_ptbxl()
    root = tmp_path_factory.mktemp("mimic") / "mimic-iv-ecg"
    database = pd.read_csv(ptbxl / "ptbxl_database.csv", index_col="ecg_id")
    layout = pd.read_csv(ptbxl.parent / "mimic_iv_ecg_layout" / "record_list.csv")
    record_list, sources = [], {}
    for subject, study, ecg_id, *_ in [*ROWS, (*UNLABELLED, None, None, None, None)]:
        source = ptbxl / database.loc[ecg_id, "filename_hr"]
        signal = rdsamp_leads(source)  # (12, T) in LEADS order
        mimic_order = signal[[LEADS.index(name) for name in MIMIC_LEADS]].T.copy()
        if study == NAN_STUDY:
            mimic_order[1000:3000, MIMIC_LEADS.index("V6")] = np.nan
            mimic_order[:, MIMIC_LEADS.index("V2")] = 0.0
        path = record_path(subject, study)
        write_wfdb((root / path).parent, str(study), mimic_order, 500, list(MIMIC_LEADS))
        sources[study] = signal
        record_list.append(
            {
                "subject_id": subject,
                "study_id": study,
                "file_name": study,
                "ecg_time": "2180-07-23 08:44:00",
                "path": path,
            }
        )
    record_list = pd.DataFrame(record_list)[list(layout.columns)]
    record_list.to_csv(root / "record_list.csv", index=False)
    labels = pd.DataFrame(
        [
            {
                **{c: "" for c in LABEL_COLUMNS},
                "Unnamed: 0": k,
                "label_strat_all2all": "x",
                "age_bin": 3,
                "file_name": record_path(subject, study),
                "study_id": study,
                "subject_id": subject,
                "all_diag_all": cell,
                "hosp_diag_hosp": cell,
                "ed_diag_ed": "[]",
                "fold": fold,
                "strat_fold": strat,
                "ecg_no_within_stay": stay,
            }
            for k, (subject, study, _, cell, fold, strat, stay) in enumerate(ROWS)
        ]
    )
    orphan = labels.iloc[[0]].assign(file_name=record_path(19999999, 49999999), study_id=49999999)
    pd.concat([labels, orphan]).to_csv(root / "records_w_diag_icd10.csv", index=False)
    return root, sources


def load(root, tmp_path, label_set="chapter-ix", fs=500, **config):
    cls = DATASETS.get("mimic-iv-ecg")
    dataset = cls(cls.Config(root=root, min_count=1, **config))
    dataset.workers = 1
    return dataset.load(fs, label_set, tmp_path / "cache")


def row_labels(arrays, study: int) -> set[str]:
    row = list(arrays.record_ids).index(str(study))
    return {name for name, value in zip(arrays.label_names, arrays.labels[row]) if value}


def test_every_row_lands_with_its_icd_labels_and_ancestors(mimic, tmp_path):
    arrays = load(mimic[0], tmp_path)
    for study, expected in EXPECTED_CHAPTER_IX.items():
        assert row_labels(arrays, study) == expected, study
    assert arrays.label_names[0] == "IX" and {"IX.I05-I09", "I07", "I071"} <= set(arrays.label_names)
    assert [icd_level(n) for n in ("IX", "IX.I05-I09", "I07", "I071")] == [
        "chapter",
        "block",
        "category",
        "subcategory",
    ]
    assert arrays.label_parents["I071"] == ["I07"] and arrays.label_parents["I07"] == ["IX.I05-I09"]
    assert arrays.label_descriptions["IX"].startswith("Diseases of the circulatory system")
    assert all(name == "IX" or name.startswith("IX.") or name.startswith("I") for name in arrays.label_names)


def test_splits_follow_the_fold_column_by_patient(mimic, tmp_path):
    arrays = load(mimic[0], tmp_path)
    ids = {split: {int(arrays.record_ids[i]) for i in rows} for split, rows in arrays.splits.items()}
    # fold: max 18 -> test, 17 -> val, below -> train; [] and the unparsable cell leave the labelled splits
    assert ids["test"] == {40000008, 40000009} and ids["val"] == {40000007}
    assert ids["train"] == {40689238, 40000001, 40000002, 40000003, 40000004}
    # pretraining: train patients (also their unlabelled ECGs) and the patient with no labelled ECG
    assert ids["pretrain"] == {40689238, 40000001, 40000002, 40000003, 40000004, 40000005, 40000006, 40000010}
    strat = load(mimic[0], tmp_path, split_column="strat_fold")
    assert {int(strat.record_ids[i]) for i in strat.splits["test"]} == {40000008, 40000009}
    assert {int(strat.record_ids[i]) for i in strat.splits["val"]} == {40000007}


def test_bad_cells_and_codes_are_reported(mimic, tmp_path):
    load(mimic[0], tmp_path)
    view = next((tmp_path / "cache" / "mimic-iv-ecg").glob("fs500-*/views/chapter-ix-*/"))
    report = pd.read_csv(view / "report.csv", dtype={"record_id": str}).set_index("record_id")
    assert "empty list" in report.loc["40000005", "detail"]
    assert "unparsable label cell" in report.loc["40000006", "detail"]
    assert report.loc["40000004", "action"] == "code ignored" and "'ZZZ99'" in report.loc["40000004", "detail"]
    assert "no row in records_w_diag_icd10.csv" in report.loc["40000010", "detail"]


def test_leads_are_mapped_by_name_and_nan_and_flat_leads_handled(mimic, tmp_path):
    root, sources = mimic
    arrays = load(root, tmp_path)
    for study, signal in sources.items():
        row = list(arrays.record_ids).index(str(study))
        mask = arrays.lead_mask[row]
        if study == NAN_STUDY:
            assert [LEADS[k] for k in np.flatnonzero(~mask)] == ["V2", "V6"]
        else:
            assert mask.all()
        np.testing.assert_allclose(np.asarray(arrays.signals[row], dtype=np.float64)[mask], signal[mask], atol=4e-3)
    aVL, aVF = LEADS.index("aVL"), LEADS.index("aVF")  # written in MIMIC's order, read back in ours
    assert not np.allclose(sources[40000001][aVL], sources[40000001][aVF])


def test_label_set_all_keeps_other_chapters_and_first_ecg_filter(mimic, tmp_path):
    arrays = load(mimic[0], tmp_path, label_set="all")
    assert {"E78", "E785", "IV", "IV.E70-E88"} <= row_labels(arrays, 40689238)
    assert row_labels(arrays, 40000003) == {"X", "X.J09-J18", "J18", "J189"}
    first = load(mimic[0], tmp_path, first_ecg_per_stay=True)
    assert 40000001 not in {int(first.record_ids[i]) for i in first.splits["train"]}  # ecg_no_within_stay 1
    assert 40000001 in {int(first.record_ids[i]) for i in first.splits["pretrain"]}


def test_folds_that_split_a_patient_are_refused(mimic, tmp_path):
    root = mimic[0]
    labels = pd.read_csv(root / "records_w_diag_icd10.csv", dtype=str)
    labels.loc[labels.study_id == "40000001", "fold"] = "18"  # patient 10000032 now in train and test
    broken = tmp_path / "labels.csv"
    labels.to_csv(broken, index=False)
    with pytest.raises(LeakageError, match="patient 10000032: test, train"):
        load(root, tmp_path, labels_csv=broken)
    labels.drop(columns=["all_diag_all"]).to_csv(broken, index=False)
    with pytest.raises(
        DataError, match=r"labels.csv lacks the required column\(s\) all_diag_all .*records_w_diag_icd10"
    ):
        load(root, tmp_path, labels_csv=broken)


def test_waveforms_without_the_labels_file_serve_as_pretraining_data(mimic, tmp_path):
    cls = DATASETS.get("mimic-iv-ecg")
    dataset = cls(cls.Config(root=mimic[0], labels_csv=tmp_path / "absent.csv"))
    dataset.workers = 1
    assert len(dataset.load_pretraining(500, tmp_path / "cache").splits["pretrain"]) == len(ROWS) + 1
    with pytest.raises(DataError, match="absent.csv not found; set --set mimic-iv-ecg.labels_csv="):
        dataset.load(500, "chapter-ix", tmp_path / "cache")
