"""``python -m benchmark new-dataset`` and ``validate-dataset``: the template passes, a copy broken
in one way fails the named check, the built-in datasets pass (LUDB fails only its limb-lead laws,
for the reason benchmark/data/gain.py documents)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.registry import DATASETS


@pytest.fixture
def isolated_datasets(monkeypatch):
    """Plugin files registered by a test leave the dataset registry as it was."""
    DATASETS.discover()  # the built-ins are in the copy that is restored
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    monkeypatch.setattr(DATASETS, "_origin", dict(DATASETS._origin))


def results(out: str) -> dict[str, str]:
    """check name -> PASS/FAIL/skip from a printed report."""
    return dict(re.findall(r"^(\w+)\s+(PASS|FAIL|skip)\s", out, re.MULTILINE))


@pytest.fixture
def template(tmp_path, capsys, isolated_datasets) -> str:
    path = tmp_path / "template_ecgs.py"
    assert main(["new-dataset", "template_ecgs", "--to", str(path)]) == 0
    assert main(["new-dataset", "template_ecgs", "--to", str(path)]) == 2  # never overwrites
    capsys.readouterr()
    return path.read_text()


def test_the_template_passes_every_check(template, tmp_path, capsys):
    assert "[choice]" in template and "TODO" not in template and '@DATASETS.register("template_ecgs")' in template
    assert not re.search(r"^\s*(from|import) benchmark", template, re.MULTILINE)  # plugins import only ecgbench
    code = main(["validate-dataset", str(tmp_path / "template_ecgs.py"), "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert set(results(out)) == {"load", "shapes", "units", "leads", "limb_laws", "labels", "splits", "fingerprints"}
    assert set(results(out).values()) == {"PASS"} and "1/1 passed" in out


@pytest.mark.parametrize(
    "change, check, message",
    [
        (("astype(np.uint8)", "astype(np.uint8) * 2"), "labels", "labels hold [2]"),
        (("leads = projection @ dipole", "leads = 1000 * projection @ dipole"), "units", "outside 0.05-20 mV"),
        (('"pretrain": splits["train"]', '"pretrain": np.arange(len(patient_ids))'), "splits", "patient(s) appear in"),
        (("signals[i, 3] = -(first + second) / 2", "signals[i, 3] = (first + second) / 2"), "limb_laws", "aVR"),
        (
            ('"records": record_ids.tolist(),', '"records": record_ids.tolist(), "drawn": np.random.random(),'),
            "fingerprints",
            "changes between",
        ),
        (("fs=fs,", "fs=2 * fs,"), "shapes", "was asked for"),
    ],
    ids=["labels_0_2", "microvolts", "test_patients_in_pretrain", "avr_sign", "unstable_fingerprint", "wrong_rate"],
)
def test_a_broken_copy_fails_the_named_check(template, tmp_path, capsys, change, check, message):
    old, new = change
    assert old in template
    path = tmp_path / f"broken_{check}.py"
    path.write_text(template.replace('"template_ecgs"', f'"broken_{check}"').replace(old, new, 1))
    code = main(["validate-dataset", str(path), "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 1, out
    failed = {name for name, status in results(out).items() if status == "FAIL"}
    assert check in failed and message in out, out
    assert f"failed: broken_{check} (" in out


def test_misuse_is_exit_2_on_one_line(capsys, tmp_path):
    assert main(["validate-dataset", "ludbb"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown dataset 'ludbb'; did you mean 'ludb'")
    assert main(["validate-dataset", "synthetic", "--labels", "nope", "--preset", "smoke"]) == 2
    assert "has no label set 'nope'" in capsys.readouterr().err
    assert main(["new-dataset", "Bad-Name", "--to", str(tmp_path / "x.py")]) == 2
    assert main(["new-dataset", "ludb", "--to", str(tmp_path / "y.py")]) == 2  # taken
    assert not (tmp_path / "x.py").exists() and not (tmp_path / "y.py").exists()


def test_the_synthetic_dataset_passes(tmp_path, capsys):
    assert (
        main(["validate-dataset", "synthetic", "--preset", "smoke", "--cache-dir", str(tmp_path), "--no-progress"]) == 0
    )
    out = capsys.readouterr().out
    assert set(results(out).values()) == {"PASS"}, out


def test_ludb_fails_only_its_limb_lead_laws_in_198_of_200_records(shared_data, tmp_path, capsys):
    """LUDB's headers give each limb lead its own gain while its samples obey Einthoven's law, so
    the limb leads as read break the laws (benchmark/data/gain.py's 198 of 200); all else holds."""
    root: Path = shared_data / "ludb"
    code = main(["validate-dataset", "ludb", "--root", str(root), "--cache-dir", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert {name for name, status in results(out).items() if status != "PASS"} == {"limb_laws"}, out
    assert "198 of 200 records break the limb-lead laws" in out and "failed: ludb (limb_laws)" in out
