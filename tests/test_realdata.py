"""The LUDB and CinC Challenge plugins on their real files, the common label map shared with
PTB-XL, and the cross-source transfer dataset built from all three."""

from __future__ import annotations

import ast
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_cli
from ecg_fixtures import mini_cinc, mini_ludb, mini_ptbxl, rdsamp_leads, shared_ptbxl, shared_source, write_challenge
from scipy.signal import resample_poly

from benchmark.config import ConfigError
from benchmark.data.challenge import SOURCES, ChallengeTables, challenge_source, read_dx
from benchmark.data.common_labels import COMMON_LABELS, common_tokens
from benchmark.data.contract import LEADS, LeakageError
from benchmark.data.pool import pretraining_pool
from benchmark.run.build import build_dataset
from benchmark.run.presets import PRESETS

LUDB_IDS = [1, 2, 3, 4, 5, 6, 8, 9, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 100, 105, 110, 120]
CINC_RECORDS = ["A0001", "A0002", "A0011", "A0015", "A0017", "E07500", "HR06002", "JS20006", "JS11438", "S0001"]


def load(name: str, label_set: str | None, cache, **config):
    dataset = build_dataset(name, PRESETS["smoke"], {name: {k: str(v) for k, v in config.items()}})
    dataset.workers = 1
    if label_set is None:
        return dataset.load_pretraining(100, cache, progress=False)
    return dataset.load(100, label_set, cache, progress=False)


def report(cache, dataset: str, label_set: str | None = None) -> pd.DataFrame:
    """The signal-stage report of the prepared cache, or a label view's report."""
    folder = next((cache / dataset).glob("fs100-*/"))
    path = folder / "report.csv" if label_set is None else next((folder / "views").glob(f"{label_set}-*/report.csv"))
    return pd.read_csv(path, dtype=str)


# -- LUDB ------------------------------------------------------------------------------------
def test_every_ludb_diagnosis_text_has_a_named_label():
    from ecgbench_datasets.ludb import CATEGORIES, map_text

    table = pd.read_csv(shared_source("ludb") / "ludb.csv", dtype=str)
    texts = {line.strip() for column in CATEGORIES for cell in table[column].dropna() for line in cell.splitlines()}
    assert len(texts) > 80 and all(map_text(text) for text in texts if text)
    expected = {
        "I degree av block": "IAVB",
        "Complete left bundle branch block": "CLBBB",
        "Incomplete left bundle branch block": "ILBBB",
        "Ventricular extrasystole, type: couplet": "PVC",
        "Electric axis of the heart: left axis deviation": "LAD",
        "Undefined ischemia/scar/supp.nstemi: apical": "ISCAR",
        "Iii degree av-block": "IIIAVB",
    }
    assert {text: map_text(text) for text in expected} == expected
    assert map_text("Brugada pattern") is None


def test_ludb_records_lower_case_leads_labels_and_common_set(tmp_path):
    root = mini_ludb(tmp_path / "ludb", LUDB_IDS)
    arrays = load("ludb", "diagnoses", tmp_path / "cache", root=root, val_fraction=0, test_fraction=0)
    assert arrays.lead_mask.all() and arrays.signals.shape == (len(LUDB_IDS), 12, 1000)  # i, ii, ... v6 by name
    row = list(arrays.record_ids).index("1")
    expected = resample_poly(rdsamp_leads(root / "data" / "1"), 1, 5, axis=1)
    np.testing.assert_allclose(np.asarray(arrays.signals[row], dtype=np.float64), expected, rtol=2**-10, atol=2e-3)
    positives = {name for name, y in zip(arrays.label_names, arrays.labels[row]) if y}
    assert positives == {"SB", "LAD", "LVH", "LVO", "NSRA"}  # ludb.csv row 1
    assert len(set(arrays.patient_ids)) == len(LUDB_IDS)  # one record per subject
    common = load("ludb", "common", tmp_path / "cache", root=root)
    assert set(common.label_names) <= {label.name for label in COMMON_LABELS}
    assert len(common.splits["train"]) + len(common.splits["val"]) + len(common.splits["test"]) == len(LUDB_IDS)


def test_a_ludb_text_outside_the_map_is_reported_not_guessed(tmp_path):
    root = mini_ludb(tmp_path / "ludb", LUDB_IDS)
    table = pd.read_csv(root / "ludb.csv", dtype=str)
    table.loc[0, "Other states"] = "Brugada pattern"
    table.to_csv(root / "ludb.csv", index=False)
    load("ludb", "diagnoses", tmp_path / "cache", root=root)
    notes = report(tmp_path / "cache", "ludb", "diagnoses")
    assert notes.action.tolist() == ["label dropped"] and "'Brugada pattern' is not in" in notes.detail[0]


# -- CinC --------------------------------------------------------------------------------------
def test_challenge_tables_equivalences_and_cpsc_names():
    tables = ChallengeTables.read(shared_source("cinc2021"))
    assert len(tables.scored) == 26  # 30 scored codes, four equivalent pairs merged
    assert tables.canonical["59118001"] == "713427006" and tables.canonical["164909002"] == "733534002"
    assert tables.cpsc == {
        "Normal": "426783006",
        "AF": "164889003",
        "I-AVB": "270492004",
        "LBBB": "164909002",
        "RBBB": "59118001",
        "PAC": "284470004",
        "PVC": "164884008",
        "STD": "429622005",
        "STE": "164931005",
    }
    assert tables.map_tokens(["RBBB", "713427006", "251238007"]) == (["713427006"], ["251238007"])


@pytest.fixture(scope="module")
def cinc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cinc")
    root = mini_cinc(tmp / "cinc", CINC_RECORDS)
    overrides = {"root": root, "val_fraction": 0.0, "test_fraction": 0.0, "max_excluded_fraction": 0.2}
    return (
        tmp,
        root,
        {label_set: load("cinc", label_set, tmp / "cache", **overrides) for label_set in ("scored", "all", "common")},
    )


def labels_of(arrays, record: str) -> set[str]:
    row = list(arrays.record_ids).index(record)
    return {name for name, y in zip(arrays.label_names, arrays.labels[row]) if y}


def test_cinc_codes_abbreviations_and_equivalents_map_with_the_challenge_tables(cinc):
    _, _, views = cinc
    assert labels_of(views["scored"], "A0001") == {"713427006"}  # 59118001 RBBB scored as complete RBBB
    assert labels_of(views["scored"], "A0011") == {"733534002"}  # CPSC header "LBBB"
    assert labels_of(views["scored"], "A0017") == {"164889003"}  # CPSC header "AF"
    assert labels_of(views["common"], "A0001") == {"RBBB"} and labels_of(views["common"], "A0017") == {"AF"}
    assert views["scored"].label_descriptions["164889003"] == "AF: atrial fibrillation"


def test_cinc_any_rate_and_length_and_reports(cinc):
    tmp, root, views = cinc
    arrays = views["all"]
    s0001 = list(arrays.record_ids).index("S0001")  # PTB, 1000 Hz, 38.4 s: its first 10 s at 100 Hz
    assert arrays.lead_mask[s0001].all() and arrays.signals.shape[-1] == 1000
    georgia = list(arrays.record_ids).index("E07500")  # "E07500.mat 12 500 5000 05-May-2020 ..." record line
    assert arrays.lead_mask[georgia].all() and labels_of(views["all"], "E07500") == {"67741000119109", "426177001"}
    flat = list(arrays.record_ids).index("JS11438")  # Chapman record with six flat precordial leads
    assert arrays.lead_mask[flat].sum() == 6
    signal_report = report(tmp / "cache", "cinc")
    assert set(signal_report[signal_report.record_id == "JS11438"].action) == {"lead masked"}
    unknown = report(tmp / "cache", "cinc", "scored")
    assert unknown.record_id.tolist() == ["JS20006"] and "251238007" in unknown.detail[0]


def test_cinc_records_shorter_than_the_window_are_excluded_with_the_fix(cinc, tmp_path):
    _, root, _ = cinc
    load("cinc", None, tmp_path / "cache", root=root, max_excluded_fraction=1.0, **{"preprocess.duration_s": 12})
    excluded = report(tmp_path / "cache", "cinc").query("action == 'excluded'")
    short = excluded[excluded.detail.str.startswith("record has")]
    assert {"A0002", "HR06002", "JS20006"} <= set(short.record_id)  # 10 s records
    assert short.detail.str.contains("12 s are needed (lower preprocess.duration_s to keep it)", regex=False).all()


# -- labels a source never annotates are unknown ------------------------------------------------
CPSC_COMMON = ["AF", "IAVB", "RBBB", "LBBB", "PAC", "PVC"]  # CPSC 2018's 9 classes, on the common labels


def test_every_cpsc_record_of_the_real_sample_gives_only_its_nine_classes():
    """All 155 CPSC 2018 (``A*``) records of ../shared/data/cinc2021: their source is CPSC, the
    Challenge tables count records of CPSC's 9 classes only (6 of the common labels), and no CPSC
    header carries a positive outside them — what their masks are built from."""
    root = shared_source("cinc2021")
    tables = ChallengeTables.read(root)
    manifest = pd.read_csv(root / "MANIFEST.csv", dtype=str)
    cpsc = manifest.record[manifest.dataset == "CPSC2018"].tolist()
    assert len(cpsc) == 155 and {challenge_source(r) for r in cpsc} == {"CPSC"}
    assert {challenge_source(r) for r in manifest.record[manifest.dataset != "CPSC2018"]} <= set(SOURCES) - {"CPSC"}
    assert challenge_source("JS10646") == "Chapman_Shaoxing" and challenge_source("JS10647") == "Ningbo"
    assert challenge_source("training/cpsc_2018/g1/A0001") == "CPSC" and challenge_source("x17") is None
    assert len(tables.annotated["CPSC"]) == 9
    assert common_tokens("cinc", sorted(tables.annotated["CPSC"])) == CPSC_COMMON
    for record in cpsc:
        codes, _ = tables.map_tokens(read_dx(root / f"{record}.hea"))
        assert set(codes) <= tables.annotated["CPSC"], record


def test_cinc_labels_a_cpsc_record_never_annotates_are_unknown_not_negative(cinc):
    tmp, root, views = cinc
    arrays = views["common"]
    targets = arrays.targets()
    rows = {record: k for k, record in enumerate(arrays.record_ids)}
    for record in ("A0001", "A0002", "A0011", "A0015", "A0017"):  # CPSC 2018
        known = {name for name, value in zip(arrays.label_names, targets[rows[record]]) if not np.isnan(value)}
        assert known == set(CPSC_COMMON) & set(arrays.label_names), record
    assert np.isfinite(targets[rows["HR06002"]]).all()  # PTB-XL annotates every common label
    assert set(arrays.label_names) - set(CPSC_COMMON)  # so some labels are unknown for CPSC records
    georgia = ChallengeTables.read(root).annotated["Georgia"]
    assert set(arrays.source_labels["Georgia"]) == set(common_tokens("cinc", sorted(georgia)))
    view = json.loads(next((tmp / "cache" / "cinc").glob("fs100-*/views/common-*/view.json")).read_text())
    cpsc = view["label_sources"]["CPSC"]
    assert cpsc["records"] == 5 and set(cpsc["labels"]) == set(CPSC_COMMON) & set(arrays.label_names)
    assert "SB" not in cpsc["labels"] or "SB" not in arrays.label_names
    scored = views["scored"]  # every label set: the scored codes CPSC never annotates are unknown too
    row = list(scored.record_ids).index("A0017")
    assert np.isnan(scored.targets()[row]).sum() == len(scored.label_names) - len(
        set(scored.label_names) & ChallengeTables.read(root).annotated["CPSC"]
    )
    result = run_cli(
        "prepare",
        "--dataset",
        "cinc",
        "--root",
        str(root),
        "--labels",
        "common",
        "--cache-dir",
        str(tmp / "cache"),
        "--no-progress",
        "--set",
        "cinc.val_fraction=0",
        "--set",
        "cinc.test_fraction=0",
        "--set",
        "cinc.max_excluded_fraction=0.2",
    )
    assert result.returncode == 0, result.stderr
    assert "labels each source can give" in result.stdout
    assert re.search(r"CPSC \(5 records\) gives [A-Za-z, ]+; unknown for its records: ", result.stdout)


def test_unknown_labels_are_in_no_loss_and_no_metric():
    from benchmark.nn.losses import known_bce
    from benchmark.nn.metrics import classification_report

    y = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0], [0, np.nan]], dtype=np.float32)
    logits = torch.tensor([[2.0, -1.0], [-1.0, 5.0], [1.0, 1.0], [-2.0, -3.0], [0.5, -7.0]])
    known = ~np.isnan(y)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.from_numpy(np.nan_to_num(y)), reduction="none"
    )
    assert known_bce(logits, torch.from_numpy(y)).item() == pytest.approx(plain[torch.from_numpy(known)].mean().item())
    per_label = known_bce(logits, torch.from_numpy(y), per_label=True)
    assert per_label[1].item() == pytest.approx(plain[[0, 2, 3], 1].mean().item())
    grad = torch.zeros_like(logits, requires_grad=True)
    known_bce(grad, torch.from_numpy(y)).backward()
    assert (grad.grad[~torch.from_numpy(known)] == 0).all()  # an unknown label pulls on nothing
    scores = np.array([[0.9, 0.2], [0.1, 0.99], [0.8, 0.7], [0.2, 0.1], [0.3, 0.95]])
    report = classification_report(y, scores, ["a", "b"])
    assert report["per_label_auroc"]["b"] == 1.0  # as a negative, records 2 and 5 would rank above the positive
    assert report["n_known"] == {"a": 5, "b": 3}


def test_transfer_cpsc_training_records_carry_their_sources_label_mask(transfer):
    _, _, _, _, arrays = transfer
    targets = arrays.targets(arrays.splits["train"])
    records = np.asarray(arrays.record_ids)[arrays.splits["train"]]
    assert any(str(r).startswith("cinc:A") for r in records)  # CPSC 2018 records are trained on
    for record, row in zip(records, targets):
        known = {n for n, v in zip(arrays.label_names, row) if not np.isnan(v)}
        if str(record).startswith("cinc:A"):
            assert known == set(CPSC_COMMON) & set(arrays.label_names), record
        elif str(record).startswith("ludb:"):
            assert known == set(arrays.label_names), record  # LUDB's texts cover every common label
    assert np.isfinite(arrays.targets(arrays.splits["test"])).all()  # PTB-XL: every label known
    assert arrays.label_coverage()["cinc:CPSC"]["unknown"]


# -- the common labels and the transfer dataset ---------------------------------------------------
def test_every_common_label_code_exists_in_its_source_code_system():
    from ecgbench_datasets.ludb import DESCRIPTIONS

    scp = pd.read_csv(shared_ptbxl() / "scp_statements.csv", index_col=0).index
    tables = ChallengeTables.read(shared_source("cinc2021"))
    for label in COMMON_LABELS:
        assert set(label.ptbxl) <= set(scp), label.name
        assert set(label.ludb) <= set(DESCRIPTIONS), label.name
        assert all(tables.canonical.get(code) == code for code in label.cinc), label.name
    assert common_tokens("ptbxl", ["AFIB", "CRBBB", "NORM"]) == ["AF", "RBBB"]


def test_ptbxl_common_labels_count_every_record_with_the_code(shared_data, tmp_path):
    arrays = load("ptbxl", "common", tmp_path, root=shared_data / "ptbxl")
    database = pd.read_csv(shared_data / "ptbxl" / "ptbxl_database.csv")
    afib = database.scp_codes.map(lambda cell: "AFIB" in ast.literal_eval(cell)).sum()
    assert int(arrays.labels[:, arrays.label_names.index("AF")].sum()) == afib > 0
    assert arrays.label_names == [label.name for label in COMMON_LABELS if label.name in arrays.label_names]
    labelled = sum(len(arrays.splits[s]) for s in ("train", "val", "test"))
    assert labelled == 500  # records without a common label are negatives, not left out


@pytest.fixture(scope="module")
def transfer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transfer")
    roots = {
        "ptbxl": mini_ptbxl(shared_ptbxl(), tmp / "ptbxl", n=60),
        "ludb": mini_ludb(tmp / "ludb", LUDB_IDS),
        "cinc": mini_cinc(tmp / "cinc", CINC_RECORDS),
    }
    overrides = {
        "transfer": {
            "train": f"cinc:{roots['cinc']},ludb:{roots['ludb']}",
            "test": f"ptbxl:{roots['ptbxl']}",
            "min_count": "1",
        },
        "cinc": {"max_excluded_fraction": "0.2"},
    }
    dataset = build_dataset("transfer", PRESETS["smoke"], overrides)
    return tmp, roots, overrides, dataset, dataset.load(100, "common", tmp / "cache", progress=False)


def test_transfer_trains_on_some_sources_and_tests_on_another(transfer):
    tmp, roots, _, dataset, arrays = transfer
    assert dataset.result_name == "cinc+ludb-to-ptbxl" and dataset.member_names() == ["cinc", "ludb", "ptbxl"]
    source = np.array([str(r).split(":")[0] for r in arrays.record_ids])
    for split in ("pretrain", "train", "val"):
        assert set(source[arrays.splits[split]]) <= {"cinc", "ludb"}
    ptbxl = load("ptbxl", "common", tmp / "cache", root=roots["ptbxl"])
    labelled = np.concatenate([ptbxl.splits[s] for s in ("train", "val", "test")])
    assert set(source[arrays.splits["test"]]) == {"ptbxl"} and len(arrays.splits["test"]) == len(labelled)
    assert all(str(p).split(":")[0] in ("cinc", "ludb", "ptbxl") for p in arrays.patient_ids)
    database = pd.read_csv(roots["ptbxl"] / "ptbxl_database.csv")
    for ecg_id, codes in zip(database.ecg_id, database.scp_codes):  # labels follow each source's code system
        row = list(arrays.record_ids).index(f"ptbxl:{ecg_id}")
        positives = {n for n, y in zip(arrays.label_names, arrays.labels[row]) if y}
        assert positives == set(common_tokens("ptbxl", list(ast.literal_eval(codes)))) & set(arrays.label_names)


def test_transfer_pool_with_the_test_source_is_refused(transfer):
    tmp, roots, overrides, dataset, arrays = transfer
    build = lambda name, scoped: build_dataset(name, PRESETS["smoke"], scoped)  # noqa: E731 (as the runner)
    scoped = {**overrides, "ptbxl": {"root": str(roots["ptbxl"])}}
    with pytest.raises(LeakageError, match="validation/test patient\\(s\\) of transfer are in the pretraining pool"):
        pretraining_pool(["ptbxl"], dataset, arrays, build, scoped, 100, tmp / "cache", False)
    pool, _ = pretraining_pool(
        ["ludb"], dataset, arrays, build, {**overrides, "ludb": {"root": str(roots["ludb"])}}, 100, tmp / "cache", False
    )
    assert len(pool.splits["pretrain"]) > 0


def test_transfer_settings_are_checked():
    with pytest.raises(ConfigError, match="ptbxl is both a training and a test source"):
        build_dataset("transfer", PRESETS["smoke"], {"transfer": {"train": "ptbxl,ludb", "test": "ptbxl"}})
    with pytest.raises(ConfigError, match="test_records must be one of all, test"):
        build_dataset("transfer", PRESETS["smoke"], {"transfer": {"test_records": "some"}})


@pytest.mark.slow
def test_prepare_works_on_each_real_source_and_names_every_flagged_record(shared_data, tmp_path):
    """The issue's done criterion: `prepare` on the real ptbxl, ludb and cinc2021 folders."""
    for dataset, folder in (("ptbxl", "ptbxl"), ("ludb", "ludb"), ("cinc", "cinc2021")):
        result = run_cli(
            "prepare",
            "--dataset",
            dataset,
            "--root",
            str(shared_data / folder),
            "--cache-dir",
            str(tmp_path),
            "--no-progress",
        )
        assert result.returncode == 0, result.stderr
        signal_report = report(tmp_path, dataset)
        assert signal_report.record_id.notna().all() and set(signal_report.action) <= {
            "lead masked",
            "flagged",
            "excluded",
            "interpolated",
            "channel ignored",
        }
    assert "JS11438" in set(report(tmp_path, "cinc").record_id)


def test_bad_challenge_records_are_reported_one_line_each(tmp_path):
    """15 channels (12 + Frank leads), mixed-case names, a .mat without 'val' or with the wrong
    shape, a header gain wrong by 1000x: used or excluded, every case named in report.csv."""
    from scipy.io import savemat

    root = mini_cinc(tmp_path / "cinc", ["A0001", "A0002"])
    database = pd.read_csv(shared_ptbxl() / "ptbxl_database.csv")
    x = [rdsamp_leads(shared_ptbxl() / name) for name in database.filename_hr.iloc[:5]]
    frank = np.stack([x[0][0] + x[0][6], x[0][1] - x[0][7], x[0][8]])
    write_challenge(root, "Q15CH", np.concatenate([x[0], frank]), 500, "164889003", leads=(*LEADS, "vx", "vy", "vz"))
    mixed = ("i", "Ii", "iii", "AvR", "avl", "aVf", "v1", "V2", "v3", "V4", "v5", "V6")
    write_challenge(root, "QMIXED", x[1], 500, "164889003", leads=mixed)
    write_challenge(root, "QNOVAL", x[2], 500, "164889003")
    savemat(root / "QNOVAL.mat", {"ecg": np.round(1000 * x[2]).astype(np.int16)}, format="4")
    write_challenge(root, "QSHAPE", x[3], 500, "164889003")
    savemat(root / "QSHAPE.mat", {"val": np.round(1000 * x[3][:, :4999]).astype(np.int16)}, format="4")
    write_challenge(root, "QGAIN", x[4], 500, "164889003")
    (root / "QGAIN.hea").write_text((root / "QGAIN.hea").read_text().replace("1000/mV", "1/mV"))

    arrays = load(
        "cinc", "scored", tmp_path / "cache", root=root, max_excluded_fraction=1.0, val_fraction=0, test_fraction=0
    )
    rows = {record: k for k, record in enumerate(arrays.record_ids)}
    assert arrays.lead_mask[rows["Q15CH"]].all() and arrays.lead_mask[rows["QMIXED"]].all()
    np.testing.assert_allclose(
        np.asarray(arrays.signals[rows["QMIXED"]], dtype=np.float64),
        resample_poly(np.round(1000 * x[1]) / 1000, 1, 5, axis=1),
        rtol=2**-10,
        atol=2e-3,
    )
    notes = report(tmp_path / "cache", "cinc").set_index("record_id")
    ignored = notes.loc[["Q15CH"]]
    assert (ignored.action == "channel ignored").sum() == 3 and ignored.detail.str.contains("'vx'").any()
    assert "QMIXED" not in notes.index
    assert (
        notes.loc["QNOVAL", "action"] == "excluded"
        and "holds the variable 'ecg', not 'val'" in notes.loc["QNOVAL", "detail"]
    )
    assert "QSHAPE.mat" in notes.loc["QSHAPE", "detail"] and "truncated" in notes.loc["QSHAPE", "detail"]
    assert (
        notes.loc["QGAIN", "action"] == "excluded" and "gain or unit is probably wrong" in notes.loc["QGAIN", "detail"]
    )
    assert not arrays.lead_mask[[rows[r] for r in ("QNOVAL", "QSHAPE", "QGAIN")]].any()
