"""LEADERBOARD.md and `compare` from stored results (written directly, no models trained)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.eval.metrics import classification_report
from benchmark.eval.protocol import Prediction
from benchmark.report.leaderboard import plots_dir_for, write_leaderboard
from benchmark.report.results import Cell, ResultStore

N_TEST = 400
CONDITIONS = ["I48", "I440", "I210"]
ICD = ["IX", "IX.I20-I25", "I21", "I210", "I211", "IX.I30-I5A", "I48"]


def labels_for(names, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((N_TEST, len(names))) < 0.25).astype(np.uint8)


def write_cell(
    store,
    method,
    seed,
    skill,
    *,
    protocol="linear",
    names=CONDITIONS,
    dataset="synthetic",
    protocol_config=None,
    variant="",
    variant_identity=None,
    budget_flops=1e12,
    n_train=300,
    details=None,
    downstream=None,
):
    """A result whose scores separate the classes with strength ``skill`` (0 = chance)."""
    y = labels_for(names)
    rng = np.random.default_rng([seed, *map(ord, method)])
    scores = 1 / (1 + np.exp(-(skill * (2.0 * y - 1) + rng.standard_normal(y.shape))))
    pretrains = method not in ("random_init", "scratch", "xresnet1d", "ecg_features")
    cell = Cell(dataset, "labels", "cpu", method, protocol, seed, variant)
    record = {
        "signature": f"{method}{seed}{variant}",
        "label_names": names,
        "config": {
            "dataset": dataset,
            "dataset_config": {"n": 1},
            "input": {"fs": 100},
            "label_set": "labels",
            "preset": "cpu",
            "protocol": protocol,
            "protocol_config": protocol_config or {"max_iter": 300},
            "variant": variant_identity,
            "method": method,
            "seed": seed,
        },
        "metrics": classification_report(y, scores, names),
        "details": {"n_train": n_train, **(details or {})},
        "compute": {
            "encoder_params": 250_000 if method != "ind_p" else 1_800_000,
            "total_params": 300_000,
            "pretrain": {
                "steps": 600,
                "wall_s": 90.0,
                "flops_per_step": 8.5e9,
                "total_flops": 5.1e12,
                "budget": "lamae",
                "budget_flops": budget_flops,
                "peak_memory_mb": None,
            }
            if pretrains
            else None,
            "downstream": downstream,
            "protocol_wall_s": 1.0,
        },
        "provenance": {
            "device": "CPU: test",
            "finished_at": "2026-11-21T00:00:00+00:00",
            "git": {"commit": "abc", "dirty": False},
        },
    }
    store.write(cell, record, Prediction(y, scores, np.array([f"r{i}" for i in range(N_TEST)])))


@pytest.fixture
def results(tmp_path):
    store = ResultStore(tmp_path / "results")
    for seed in range(3):
        write_cell(store, "lamae", seed, 1.5)
        write_cell(store, "ind_p", seed, 1.5)  # as good as lamae: differs by noise only
        write_cell(store, "random_init", seed, 0.3)
    return store


def table_rows(board: str, heading: str) -> dict[str, str]:
    section = board.split(heading, 1)[1].split("\n## ", 1)[0]
    return {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}


def test_leaderboard_has_cis_significance_and_compute_columns(results, tmp_path):
    path = tmp_path / "LEADERBOARD.md"
    assert write_leaderboard(results.root, path) == 9
    board = path.read_text()
    rows = table_rows(board, "## synthetic · labels · preset `cpu` · linear")
    assert "▼" in rows["random_init"] and "▼" not in rows["lamae"] and "▼" not in rows["ind_p"]
    assert re.search(r"\| 0\.\d{4} ± 0\.\d{4} +\| \[0\.\d{4}, 0\.\d{4}\]", rows["lamae"])
    header = rows["method"]
    for column in (
        "95 % CI",
        "Δ best (p Holm)",
        "Δ random_init (p Holm)",
        "encoder params (Δ lamae)",
        "FLOPs/step",
        "steps",
        "pretrain FLOPs",
        "pretrain time",
        "peak memory",
    ):
        assert column in header
    assert "8.5G" in rows["lamae"] and "5.1T" in rows["lamae"] and "1.8M (+1.55M)" in rows["ind_p"]
    assert "Macro AUROC per ICD level" in board and "| category" in board  # conditions are ICD codes
    assert "Reported in the literature" not in board  # nothing published quotes the synthetic data
    code_rows = table_rows(board, "AUROC per code")
    assert "Atrial fibrillation" in code_rows["I48"]  # label names beside their codes
    indices = list((results.root / "_bootstrap").rglob("*.npz"))
    assert len(indices) == 1  # one test set: one shared set of resamples for every method
    stamp = indices[0].stat().st_mtime_ns
    write_leaderboard(results.root, path)
    assert path.read_text() == board and indices[0].stat().st_mtime_ns == stamp  # reused, deterministic


def test_incompatible_configurations_and_budgets_get_separate_tables(results, tmp_path):
    write_cell(results, "lamae", 0, 1.5, protocol="finetune", protocol_config={"epochs": 4})
    write_cell(results, "ind_p", 0, 1.5, protocol="finetune", protocol_config={"epochs": 10})
    write_cell(results, "lamae", 0, 1.5, protocol="attention_probe", budget_flops=1e12)
    write_cell(results, "ind_p", 0, 1.5, protocol="attention_probe", budget_flops=2e12)
    write_cell(results, "random_init", 0, 0.3, protocol="attention_probe")
    board = (tmp_path / "LB.md").read_text() if write_leaderboard(results.root, tmp_path / "LB.md") else ""
    assert board.count("## synthetic · labels · preset `cpu` · finetune") == 2
    attention = board.split("## synthetic · labels · preset `cpu` · attention_probe")[1:]
    assert len(attention) == 2
    budgets = sorted(re.search(r"pretraining budget: (\S+)", part).group(1) for part in attention)
    assert budgets == ["1e+12", "2e+12"]
    assert all("| random_init" in part.split("\n## ")[0] for part in attention)  # untrained: in both


def test_icd_reports_follow_the_paper_tables_hierarchy_order(tmp_path):
    store = ResultStore(tmp_path / "results")
    for method, skill in (("lamae", 1.5), ("random_init", 0.3)):
        write_cell(store, method, 0, skill, names=ICD[::-1])  # stored in another order
    write_leaderboard(store.root, tmp_path / "LB.md")
    board = (tmp_path / "LB.md").read_text()
    levels = board.split("Macro AUROC per ICD level")[1]
    assert [line.split("|")[1].strip() for line in levels.splitlines() if line.startswith("| ")][1:5] == [
        "chapter",
        "block",
        "category",
        "subcategory",
    ]
    codes = board.split("AUROC per code")[1].split("</details>")[0]
    rows = [line.split("|")[1].strip() for line in codes.splitlines() if line.startswith("| ")][1:]
    assert rows == ["IX", "IX.I20-I25", "I21", "I210", "I211", "IX.I30-I5A", "I48"]
    assert "**" in codes  # best per row in bold


def test_sweeps_become_tables_and_embedded_plots(results, tmp_path):
    for seed in range(2):
        for subset in range(2):
            for method, skill in (("lamae", 1.0), ("random_init", 0.2)):
                write_cell(
                    results,
                    method,
                    seed,
                    skill,
                    variant=f"n10pct-s{subset}",
                    n_train=30,
                    variant_identity={
                        "name": f"n10pct-s{subset}",
                        "sweep": "label_efficiency",
                        "params": {"train_size": "10%", "subset_seed": subset},
                    },
                )
                write_cell(
                    results,
                    method,
                    seed,
                    skill * 0.5,
                    variant="leads-I",
                    variant_identity={
                        "name": "leads-I",
                        "sweep": "reduced_leads",
                        "params": {"leads": ["I"], "n_leads": 1},
                    },
                )
    path = tmp_path / "LEADERBOARD.md"
    write_leaderboard(results.root, path)
    board = path.read_text()
    efficiency = board.split("### Label efficiency: synthetic · labels · preset `cpu` · linear")[1]
    assert (
        "| 10% (n=30)" in efficiency and "| 100% (n=300)" in efficiency and "(4)" in efficiency
    )  # 2 seeds x 2 subsets
    leads = board.split("### Reduced leads: synthetic · labels · preset `cpu` · linear")[1]
    assert "| all" in leads and "| I " in leads
    images = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", board)
    assert len(images) == 2 and all((path.parent / image).stat().st_size > 5000 for image in images)
    assert {(path.parent / image).parent for image in images} == {plots_dir_for(path)}
    foreign = plots_dir_for(path) / "mine.png"  # a file the leaderboard did not write
    foreign.write_bytes(b"not ours")
    for reduced in results.root.rglob("*leads-I*"):  # the reduced-lead results are gone ...
        reduced.unlink()
    write_leaderboard(results.root, path)
    remaining = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", path.read_text())
    assert len(remaining) == 1 and set(images) - set(remaining)
    assert not (path.parent / (set(images) - set(remaining)).pop()).exists()  # ... and so is their plot
    assert foreign.read_bytes() == b"not ours"


def test_reported_numbers_sit_beside_but_apart_from_measured_ones(tmp_path):
    store = ResultStore(tmp_path / "results")
    for method in ("lamae", "random_init"):
        write_cell(store, method, 0, 1.0, dataset="mimic-iv-ecg")
    write_leaderboard(store.root, tmp_path / "LB.md")
    board = (tmp_path / "LB.md").read_text()
    table = board.split("## mimic-iv-ecg · labels · preset `cpu` · linear")[1].split("\n## ")[0]
    measured, reported = table.split("Reported in the literature (not measured here")
    assert "0.8345" not in measured and "| LAMAE" in reported and "0.8345" in reported
    assert "| lamae" in measured and "| lamae" not in reported
    assert "## Reported in the literature (not measured here)" in board  # it quotes MIMIC-IV-ECG


def test_compare_prints_paired_tests_with_p_values(results, capsys):
    assert main(["compare", "lamae", "random_init", "--results", str(results.root), "--resamples", "300"]) == 0
    out = capsys.readouterr().out
    assert "paired bootstrap (300 resamples" in out
    assert re.search(r"across seeds \(paired t-test over seeds 0,1,2\).*p = [0-9.e-]+", out)
    assert "DeLong per label" in out and "p (Holm)" in out
    assert len(re.findall(r"^I(48|440|210) ", out, flags=re.M)) == 3
    assert main(["compare", "lamae", "scratch", "--results", str(results.root)]) == 2
    assert "no comparable results of both lamae and scratch" in capsys.readouterr().err


# -- the ablation ladder and the LAMAE paper's columns ----------------------------------------------
def test_the_ablation_ladder_is_one_table_of_holm_adjusted_paired_tests_against_lamae(tmp_path):
    store = ResultStore(tmp_path / "results")
    for seed in range(3):
        write_cell(store, "lamae", seed, 1.5)
        write_cell(store, "lamae[la_mask_ratio=0]", seed, 0.8)  # clearly worse
        write_cell(store, "lamae[la_tokens=patch]", seed, 1.5)  # as good: noise only
        write_cell(store, "ind_p[dim=24]", seed, 1.5)
        write_cell(store, "ind_p", seed, 1.5)  # not a rung: the paper's unmatched Ind_P
        write_cell(store, "random_init", seed, 0.3)
    write_leaderboard(store.root, tmp_path / "LB.md")
    board = (tmp_path / "LB.md").read_text()
    assert (tmp_path / "results/synthetic/labels/cpu/lamae@la_mask_ratio=0/linear_seed0.json").is_file()
    ladder = board.split("Ablation ladder of `lamae`")[1].split("\n\n")[1]
    rows = [line.split("|")[2].strip() for line in ladder.splitlines()[2:]]
    assert rows == ["lamae", "lamae[la_tokens=patch]", "lamae[la_mask_ratio=0]", "ind_p[dim=24]"]  # ladder order
    cells = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in ladder.splitlines()[2:]}
    header = [c.strip() for c in ladder.splitlines()[0].split("|")[1:-1]]
    worse = dict(zip(header, cells["lamae[la_mask_ratio=0]"]))
    same = dict(zip(header, cells["lamae[la_tokens=patch]"]))
    low, high = map(float, re.search(r"\[(\S+), (\S+)\]", worse["Δ (95 % CI)"]).groups())
    assert worse["Δ (95 % CI)"].startswith("-") and high < 0 and low < high
    assert (worse["p Holm"] == "<0.0001" or float(worse["p Holm"]) < 0.05) and worse["verdict"] == "lamae higher"
    assert same["verdict"] == "no significant difference" and float(same["p Holm"]) >= 0.05
    assert re.fullmatch(r"[+-]\d\.\d{4} \(p=\S+\)", worse["across seeds"])
    assert "lead-imputation task" in worse["what the difference measures"]
    assert "no ladder" not in board and board.count("Ablation ladder of") == 1


def test_no_ladder_table_without_a_rung(results, tmp_path):
    write_leaderboard(results.root, tmp_path / "LB.md")
    assert "Ablation ladder" not in (tmp_path / "LB.md").read_text()  # lamae and the unmatched ind_p only


def test_the_lamae_papers_ix_row_is_compared_with_the_measured_single_label_ix_and_scratch_with_random_init(tmp_path):
    store = ResultStore(tmp_path / "results")
    for method in ("lamae", "random_init"):
        write_cell(store, method, 0, 1.0, dataset="mimic-iv-ecg", names=ICD)
    write_leaderboard(store.root, tmp_path / "LB.md")
    board = (tmp_path / "LB.md").read_text()
    section = board.split("## mimic-iv-ecg · labels · preset `cpu` · linear")[1].split("\n## ")[0]
    measured, reported = section.split("Reported in the literature (not measured here")
    single = {
        line.split("|")[3].strip(): line  # label | name | reported | measured here
        for line in measured.split("Single labels reported by")[1].splitlines()
        if line.startswith("| IX")
    }
    codes = [line for line in measured.split("AUROC per code")[1].splitlines() if line.startswith("| ")]
    header = [c.strip() for c in codes[0].split("|")]
    ix = next(line for line in codes if line.startswith("| IX "))
    ix_random_init = ix.split("|")[header.index("random_init")].strip(" *")  # the measured single-label IX AUROC
    assert f"`random_init` {ix_random_init}" in single["Scratch 0.7715"]  # Scratch under a linear probe
    assert "`lamae`" in single["LAMAE 0.8345"] and "not run: `mvmae`" in single["MVMAE 0.6771"]
    assert "`ind_s` or `random_init[arch=ind_p]`" in single["Ind_S 0.7776"]  # both readings of Ind_S
    assert "0.8345" not in measured.split("Macro AUROC per ICD level")[1]  # never beside a macro
    assert "| LAMAE, label IX" in reported and "| Scratch, label IX" in reported and "`random_init`" in reported
    assert "Diseases of the circulatory system" in single["LAMAE 0.8345"]  # the label's name beside its code


def test_paper_columns_map_to_the_protocol_kinds_they_were_measured_under():
    from benchmark.report.reported import PAPER_COLUMNS, REPORTED

    assert PAPER_COLUMNS["Scratch"] == {"frozen": ("random_init",), "finetune": ("scratch",)}
    lamae_paper = [r for r in REPORTED if r.source.startswith("LAMAE paper")]
    assert {r.label for r in lamae_paper if r.protocol == "linear"} == {"IX"}  # never "macro"
    assert all(r.ours for r in lamae_paper)
