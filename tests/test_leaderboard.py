"""LEADERBOARD.md and `compare` from stored results (written directly, no models trained)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from matplotlib.image import imread
from sklearn.metrics import roc_auc_score

from benchmark.cli import main
from benchmark.config import signature
from benchmark.eval.protocol import Prediction
from benchmark.eval.sweep import Sweep
from benchmark.nn.metrics import classification_report
from benchmark.registry import PROTOCOLS
from benchmark.report.comparison import Table, TableStats, comparable_tables
from benchmark.report.leaderboard import learning_notes, plots_dir_for, summary_table, sweeps, write_leaderboard
from benchmark.report.plots import LEGEND_INSIDE_MAX, Run, ratio_limits, training_curves_plot
from benchmark.run.results import Cell, ResultStore

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
    label_set="labels",
    protocol_config=None,
    variant="",
    variant_identity=None,
    budget_flops=1e12,
    n_train=300,
    details=None,
    downstream=None,
    loss_ratio=0.5,
    patients=None,
    preset="cpu",
):
    """A result whose scores separate the classes with strength ``skill`` (0 = chance); ``patients``:
    the test records' patient ids (None: a result written before they were stored)."""
    y = labels_for(names)
    rng = np.random.default_rng([seed, *map(ord, method)])
    scores = 1 / (1 + np.exp(-(skill * (2.0 * y - 1) + rng.standard_normal(y.shape))))
    pretrains = method not in ("random_init", "scratch", "xresnet1d", "ecg_features")
    cell = Cell(dataset, label_set, preset, method, protocol, seed, variant)
    record = {
        "label_names": names,
        "config": {
            "dataset": dataset,
            "dataset_config": {"n": 1},
            "input": {"fs": 100},
            "label_set": label_set,
            "preset": preset,
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
                "loss_curve": [[300, 0.08], [600, 0.08 * loss_ratio]],
                "trivial_curve": [
                    [300, {"zero": 0.09, "visible_mean": 0.08}],
                    [600, {"zero": 0.09, "visible_mean": 0.08}],
                ],
                "loss_ratio": loss_ratio,
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
    # as a run's: the identity of the computation (its settings and budget, not the preset's name),
    # not its outcome
    budget = budget_flops if pretrains else None
    settings = {k: v for k, v in record["config"].items() if k != "preset"}
    record["signature"] = signature([settings, budget, details, n_train, downstream])
    store.write(cell, record, Prediction(y, scores, np.array([f"r{i}" for i in range(N_TEST)]), patients))


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


def test_a_test_that_is_both_vs_best_and_vs_a_reference_counts_once_in_holm(tmp_path):
    store = ResultStore(tmp_path / "results")
    for seed in range(3):
        write_cell(store, "ecg_features", seed, 2.0)  # a reference, and the best
        write_cell(store, "lamae", seed, 1.0)
        write_cell(store, "random_init", seed, 0.3)
    write_leaderboard(store.root, tmp_path / "LB.md")
    board = (tmp_path / "LB.md").read_text()
    section = board.split("## synthetic · labels · preset `cpu` · linear")[1].split("\n## ")[0]
    assert "Holm over 3 distinct tests" in section  # not 6: lamae/random_init vs best = vs ecg_features
    rows = table_rows(board, "## synthetic · labels · preset `cpu` · linear")
    header = [c.strip() for c in rows["method"].split("|")[1:-1]]
    cells = {m: dict(zip(header, (c.strip() for c in rows[m].split("|")[1:-1]))) for m in rows if m != "method"}
    assert cells["lamae"]["Δ best (p Holm)"] == cells["lamae"]["Δ ecg_features (p Holm)"]
    forward, backward = cells["random_init"]["Δ ecg_features (p Holm)"], cells["ecg_features"]["Δ random_init (p Holm)"]
    assert forward.startswith("-") and backward.startswith("+") and forward[1:] == backward[1:]  # one test, both ways


def test_patients_are_the_resampled_unit_where_results_stored_them(tmp_path):
    patients = np.repeat(np.arange(N_TEST // 2), 2).astype(str)  # two test records per patient
    store = ResultStore(tmp_path / "results")
    for method, skill in (("lamae", 1.0), ("random_init", 0.3)):
        for seed in range(2):
            write_cell(store, method, seed, skill, patients=patients)
    record = next(r for r in store.records() if r["cell"]["method"] == "lamae")
    np.testing.assert_array_equal(store.predictions(record)["patient_ids"], patients)
    write_leaderboard(store.root, tmp_path / "LB.md")
    assert "1000 resamples of 200 patients (400 records), stratified by label" in (tmp_path / "LB.md").read_text()
    counts = next((store.root / "_bootstrap").rglob("*.npz"))
    with np.load(counts) as saved:
        pairs = saved["counts"].reshape(1000, N_TEST // 2, 2)
    assert (pairs[:, :, 0] == pairs[:, :, 1]).all()  # a patient's two records are drawn together
    older = ResultStore(tmp_path / "older")  # results without patient ids: records, said in the footnote
    for method, skill in (("lamae", 1.0), ("random_init", 0.3)):
        write_cell(older, method, 0, skill)
    write_leaderboard(older.root, tmp_path / "LB2.md")
    board = (tmp_path / "LB2.md").read_text()
    assert "1000 resamples of 400 records (no patient ids stored with these results" in board
    assert "`lamae`, `random_init`: one seed, so the seed variance of these methods is not in the tests" in board


def test_unknown_labels_survive_the_store_and_stay_out_of_every_resampled_auroc(tmp_path):
    """Stored predictions keep which labels each test record's source never annotated (NaN when
    read back); the leaderboard's AUROCs leave those records out of that label."""
    store = ResultStore(tmp_path / "results")
    y = labels_for(CONDITIONS).astype(float)
    y[:150, 1] = np.nan  # the first 150 test records' source never annotates I440
    rng = np.random.default_rng(0)
    scores = 1 / (1 + np.exp(-(1.0 * (2 * np.nan_to_num(y) - 1) + rng.standard_normal(y.shape))))
    scores[:150, 1] = 1.0  # an unknown label's score: as a negative it would drag the AUROC down
    for method in ("lamae", "random_init"):
        write_cell(store, method, 0, 1.0)
        record = next(r for r in store.records() if r["cell"]["method"] == method)
        store.write(Cell(**record["cell"]), record, Prediction(y, scores, np.array([f"r{i}" for i in range(N_TEST)])))
    record = next(iter(store.records()))
    read = store.predictions(record)["y_true"]
    np.testing.assert_array_equal(np.isnan(read), np.isnan(y))
    table = comparable_tables(list(store.records()))[0]
    per_label = TableStats(table, store, n_resamples=50).per_label("lamae")[1][0]
    known = ~np.isnan(y[:, 1])
    assert per_label[:, 1].min() > roc_auc_score(np.nan_to_num(y[:, 1]), scores[:, 1])  # unknowns left out
    assert np.allclose(
        TableStats(table, store, n_resamples=50).per_label("lamae")[0][0, 1],
        roc_auc_score(y[known, 1], scores[known, 1]),
    )


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
    assert sum("curves_" in image for image in images) == 1  # the training curves of the main table
    images = [image for image in images if "curves_" not in image]
    assert len(images) == 2 and all((path.parent / image).stat().st_size > 5000 for image in images)
    assert {(path.parent / image).parent for image in images} == {plots_dir_for(path)}
    foreign = plots_dir_for(path) / "mine.png"  # a file the leaderboard did not write
    foreign.write_bytes(b"not ours")
    for reduced in results.root.rglob("*leads-I*"):  # the reduced-lead results are gone ...
        reduced.unlink()
    write_leaderboard(results.root, path)
    remaining = [i for i in re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", path.read_text()) if "curves_" not in i]
    assert len(remaining) == 1 and set(images) - set(remaining)
    assert not (path.parent / (set(images) - set(remaining)).pop()).exists()  # ... and so is their plot
    assert foreign.read_bytes() == b"not ours"


def test_a_plugin_sweep_describes_its_own_axis_on_the_leaderboard(results, tmp_path, monkeypatch):
    """The leaderboard knows no sweep by name: a sweep registered by a plugin gets its section,
    table columns, curve and replicate note from what the sweep says of itself."""

    class NoiseLevels(Sweep):
        title = "Added noise"
        axis = "added noise (mV)"
        repeats = "noise draws"

        @classmethod
        def point(cls, variant, details):
            noise = variant.get("params", {}).get("noise_mv", 0.0)
            return f"{noise:g} mV", noise

        @classmethod
        def column(cls, label, position):
            return f"+{label}"

    NoiseLevels.name = "noise_levels"
    PROTOCOLS.discover()
    monkeypatch.setitem(PROTOCOLS._entries, "noise_levels", NoiseLevels)
    assert NoiseLevels in sweeps()
    for seed in range(2):
        for method, skill in (("lamae", 1.0), ("random_init", 0.2)):
            for noise in (0.5, 0.1):
                identity = {"name": f"noise-{noise}", "sweep": "noise_levels", "params": {"noise_mv": noise}}
                write_cell(results, method, seed, skill - noise, variant=f"noise-{noise}", variant_identity=identity)
    path = tmp_path / "LEADERBOARD.md"
    write_leaderboard(results.root, path)
    board = path.read_text()
    section = board.split("\n## Added noise\n")[1]
    assert "### Added noise: synthetic · labels · preset `cpu` · linear" in section
    header = next(line for line in section.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.split("|")[2:-1]] == ["+0 mV", "+0.1 mV", "+0.5 mV"]  # by position
    assert "seeds × noise draws" in section and "(2)" in section
    image = re.search(r"!\[Added noise: [^]]*\]\(([^)]+\.png)\)", section)
    assert image and (path.parent / image.group(1)).stat().st_size > 5000


def test_a_reported_number_is_matched_to_our_methods_by_its_protocols_kind():
    """The paper's "Scratch" is our untrained probe under a frozen protocol and our from-scratch
    training under fine-tuning: reported.py asks each protocol its ``kind``."""
    from benchmark.report.reported import LAMAE_TASK, PAPER_COLUMNS, _rows

    def ours(protocol: str) -> tuple[str, ...]:
        (row,) = _rows("a paper", LAMAE_TASK, "its data", protocol, {"Scratch": 0.5}, "macro", PAPER_COLUMNS)
        return row.ours

    assert ours("linear") == ours("attention_probe") == ("random_init",)
    assert ours("finetune") == ("scratch",)


def test_reported_numbers_sit_beside_but_apart_from_measured_ones(tmp_path):
    store = ResultStore(tmp_path / "results")
    for method in ("lamae", "random_init"):
        write_cell(store, method, 0, 1.0, dataset="mimic-iv-ecg", label_set="chapter-ix")
    write_leaderboard(store.root, tmp_path / "LB.md")
    board = (tmp_path / "LB.md").read_text()
    table = board.split("## mimic-iv-ecg · chapter-ix · preset `cpu` · linear")[1].split("\n## ")[0]
    measured, reported = table.split("Reported in the literature for the same task (not measured here")
    assert "0.8345" not in measured and "| LAMAE" in reported and "0.8345" in reported
    assert "| lamae" in measured and "| lamae" not in reported
    assert "cardiac ICD codes" not in table  # the reality check's MIMIC task is another task
    assert "## Reported in the literature (not measured here)" in board  # it quotes MIMIC-IV-ECG


def test_the_literature_box_quotes_the_anchor_of_the_same_task_only(tmp_path):
    """PTB-XL superdiagnostic gets Strodthoff et al.'s xresnet1d101 anchor (0.928) with its caveats
    and none of the all-statements numbers; another PTB-XL task gets no superdiagnostic anchor."""
    store = ResultStore(tmp_path / "results")
    for label_set, names in (("superdiagnostic", ["CD", "HYP", "MI", "NORM", "STTC"]), ("form", CONDITIONS)):
        for method in ("lamae", "scratch", "xresnet1d"):
            write_cell(store, method, 0, 1.0, dataset="ptbxl", label_set=label_set, protocol="finetune", names=names)
    write_leaderboard(store.root, tmp_path / "LB.md")
    board = (tmp_path / "LB.md").read_text()
    superdiagnostic = board.split("## ptbxl · superdiagnostic · preset `cpu` · finetune")[1].split("\n## ")[0]
    box = superdiagnostic.split("Reported in the literature for the same task")[1]
    assert "Strodthoff et al. 2021" in box and "| xresnet1d101" in box and "0.9280" in box and "`xresnet1d`" in box
    assert "about 17 thousand training records" in box and "2.5-s" in box and "maximum" in box
    assert "all statements" not in superdiagnostic and "0.940" not in superdiagnostic  # the reality check's task
    form = board.split("## ptbxl · form · preset `cpu` · finetune")[1].split("\n## ")[0]
    assert "Reported in the literature" not in form and "xresnet1d101" not in form, form
    closing = board.split("## Reported in the literature (not measured here)")[1]
    assert "0.9280" in closing and "all statements" in closing  # every number, in the closing section


def test_compare_prints_paired_tests_with_p_values(results, capsys):
    assert main(["compare", "lamae", "random_init", "--results", str(results.root), "--resamples", "300"]) == 0
    out = capsys.readouterr().out
    assert "hierarchical bootstrap: seeds and test records resampled; 300 resamples of 400 records" in out
    assert re.search(
        r"lamae - random_init .* = \+0\.\d{4}, 95 % CI \[.*\], t = .*, p = \S+ \(seeds \d+ % of the variance, df ", out
    )
    assert "per label (seed-mean AUROC, the same hierarchical bootstrap" in out and "p (Holm)" in out
    assert len(re.findall(r"^I(48|440|210) ", out, flags=re.M)) == 3
    assert main(["compare", "lamae", "scratch", "--results", str(results.root)]) == 2
    assert "no comparable results of both lamae and scratch" in capsys.readouterr().err


# -- the ablation ladder and the LAMAE paper's columns ----------------------------------------------
def test_the_ablation_ladder_tests_each_rung_against_its_one_factor_neighbour(tmp_path):
    store = ResultStore(tmp_path / "results")
    for seed in range(3):
        write_cell(store, "lamae", seed, 1.5)
        write_cell(store, "lamae[la_mask_ratio=0]", seed, 0.8)  # clearly worse than its neighbour lamae
        write_cell(store, "lamae[la_mask_ratio=0,readout=la_mean]", seed, 0.8)  # as its neighbour: noise only
        write_cell(store, "lamae[la_skip=true,la_tokens=lead]", seed, 1.5)  # its neighbour (la_skip) not run
        write_cell(store, "ind_p[dim=24,feature_dim=64]", seed, 1.5)
        write_cell(store, "ind_p", seed, 1.5)  # not a rung: the paper's unmatched Ind_P
        write_cell(store, "random_init", seed, 0.3)
    write_leaderboard(store.root, tmp_path / "LB.md")
    board = (tmp_path / "LB.md").read_text()
    assert (tmp_path / "results/synthetic/labels/cpu/lamae@la_mask_ratio=0/linear_seed0.json").is_file()
    ladder = board.split("Ablation ladder of `lamae`")[1].split("\n\n")[1]
    rows = [line.split("|")[2].strip() for line in ladder.splitlines()[2:]]
    assert rows == [
        "lamae",
        "lamae[la_mask_ratio=0]",
        "lamae[la_mask_ratio=0,readout=la_mean]",
        "ind_p[dim=24,feature_dim=64]",
        "lamae[la_skip=true,la_tokens=lead]",  # shown, not tested: its neighbour was not run
    ]
    cells = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in ladder.splitlines()[2:]}
    header = [c.strip() for c in ladder.splitlines()[0].split("|")[1:-1]]
    worse = dict(zip(header, cells["lamae[la_mask_ratio=0]"]))
    same = dict(zip(header, cells["lamae[la_mask_ratio=0,readout=la_mean]"]))
    untested = dict(zip(header, cells["lamae[la_skip=true,la_tokens=lead]"]))
    assert worse["vs"] == "lamae" and same["vs"] == "lamae[la_mask_ratio=0]"  # each against its neighbour
    low, high = map(float, re.search(r"\[(\S+), (\S+)\]", worse["Δ (95 % CI)"]).groups())
    assert worse["Δ (95 % CI)"].startswith("-") and high < 0 and low < high
    assert (worse["p Holm"] == "<0.0001" or float(worse["p Holm"]) < 0.05) and worse["verdict"] == "lamae higher"
    assert same["verdict"] == "no significant difference" and float(same["p Holm"]) >= 0.05
    assert untested["Δ (95 % CI)"] == "not tested" and untested["vs"].startswith("not run: token-level LA with a skip")
    assert re.fullmatch(r"seeds \d+ % of the variance, df \d+\.\d", worse["variance"])
    assert "masking LA's input" in worse["what the difference measures"]
    assert "no ladder" not in board and board.count("Ablation ladder of") == 1


def test_no_ladder_table_without_a_rung(results, tmp_path):
    write_leaderboard(results.root, tmp_path / "LB.md")
    assert "Ablation ladder" not in (tmp_path / "LB.md").read_text()  # lamae and the unmatched ind_p only


def test_the_lamae_papers_ix_row_is_compared_with_the_measured_single_label_ix_and_scratch_with_random_init(tmp_path):
    store = ResultStore(tmp_path / "results")
    for method in ("lamae", "random_init"):
        write_cell(store, method, 0, 1.0, dataset="mimic-iv-ecg", label_set="chapter-ix", names=ICD)
    write_leaderboard(store.root, tmp_path / "LB.md")
    board = (tmp_path / "LB.md").read_text()
    section = board.split("## mimic-iv-ecg · chapter-ix · preset `cpu` · linear")[1].split("\n## ")[0]
    measured, reported = section.split("Reported in the literature for the same task (not measured here")
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


def test_a_method_that_did_not_learn_is_shown_apart_with_its_ratio_and_never_ranked(tmp_path):
    store = ResultStore(tmp_path / "results")
    for seed in range(3):
        write_cell(store, "lamae", seed, 1.5, loss_ratio=0.55)
        # the best scores of the table, but seed 1's pretraining ended at the trivial loss
        write_cell(store, "ind_p", seed, 3.0, loss_ratio=0.97 if seed == 1 else 0.6)
        write_cell(store, "random_init", seed, 0.3)
    path = tmp_path / "LB.md"
    write_leaderboard(store.root, path)
    board = path.read_text()
    rows = table_rows(board, "## synthetic")
    assert "did not learn: seed 1 (loss/trivial 0.97)" in rows["ind_p"] and "not ranked" in rows["ind_p"]
    assert "0.55 ± 0.00" in rows["lamae"] and "| best " in rows["lamae"]  # lamae is the best of the ranked
    assert "`ind_p`: did not learn" in board and "no pretrained method in this table learned" not in board
    # the threshold is a reporting rule: raised above the ratio, ind_p is ranked (and the best)
    write_leaderboard(store.root, path, learned=1.0)
    rows = table_rows(path.read_text(), "## synthetic")
    assert "| best " in rows["ind_p"] and "did not learn:" not in path.read_text()


def test_a_table_where_no_pretrained_method_learned_says_so_loudly(tmp_path):
    store = ResultStore(tmp_path / "results")
    for seed in range(2):
        write_cell(store, "lamae", seed, 1.5, loss_ratio=0.99)
        write_cell(store, "random_init", seed, 0.3)
    path = tmp_path / "LB.md"
    write_leaderboard(store.root, path)
    assert "**Warning: no pretrained method in this table learned.**" in path.read_text()
    assert "more pretraining" in path.read_text() and "`--preset cpu-long`" in path.read_text()  # the fix, named


@pytest.mark.parametrize("value", ["0", "1.5", "-0.2", "nan", "high"])
def test_a_learned_ratio_outside_0_1_is_one_line_and_exit_2(results, value, capsys):
    assert main(["leaderboard", "--results", str(results.root), "--learned-ratio", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--learned-ratio" in err and "(0, 1]" in err


# -- pretraining-budget sweeps ----------------------------------------------------------------------
def test_a_budget_sweep_plots_auroc_against_flops_and_says_whether_the_ranking_holds(tmp_path):
    store = ResultStore(tmp_path / "results")  # as run --budgets writes: one folder per budget
    for seed in range(2):
        for budget, (lamae, ind_p) in {1e12: (1.0, 0.5), 4e12: (1.5, 2.0)}.items():  # ind_p overtakes lamae
            point = ResultStore(store.root / f"budget-{budget:g}")
            write_cell(point, "lamae", seed, lamae, budget_flops=budget)
            write_cell(point, "ind_p", seed, ind_p, budget_flops=budget)
            write_cell(point, "random_init", seed, 0.3)
    path = tmp_path / "LB.md"
    write_leaderboard(store.root, path)
    board = path.read_text()
    section = board.split("### Pretraining budget: synthetic · labels · preset `cpu` · linear")[1]
    assert "| 1T FLOPs" in section and "| 4T FLOPs" in section
    assert "the ranking changes with the budget: 1T FLOPs: `lamae` > `ind_p`; 4T FLOPs: `ind_p` > `lamae`" in section
    image = re.search(r"!\[Pretraining budget[^]]*\]\(([^)]+\.png)\)", section).group(1)
    assert (path.parent / image).stat().st_size > 5000
    rows = table_rows(section, "| method")
    assert "did not learn" not in section and rows  # every method learned (ratio 0.5)
    for table in comparable_tables(list(store.records())):  # the reference, in both folders, counts once
        assert [r["cell"]["seed"] for r in table.by_method["random_init"]] == [0, 1]


def test_a_budget_sweep_keeps_methods_that_did_not_learn_out_of_the_ranking(tmp_path):
    store = ResultStore(tmp_path / "results")
    for budget, ratio in ((1e12, 0.95), (4e12, 0.5)):  # lamae learns only at the larger budget
        point = ResultStore(store.root / f"budget-{budget:g}")
        write_cell(point, "lamae", 0, 1.5, budget_flops=budget, loss_ratio=ratio)
        write_cell(point, "ind_p", 0, 1.0, budget_flops=budget)
    write_leaderboard(store.root, tmp_path / "LB.md")
    section = (tmp_path / "LB.md").read_text().split("### Pretraining budget:")[1]
    assert "did not learn" in section
    assert "fewer than two pretrained methods learned at every budget" in section


def test_a_reference_shared_by_two_presets_joins_the_tables_of_both(tmp_path):
    # cpu-long is cpu with more pretraining: a reference (not pretrained) is the same computation,
    # with the same signature, at both — but each preset's table needs it (a regression: counted
    # once over all folders, the committed cpu table lost its references to the cpu-long sweep's)
    store = ResultStore(tmp_path / "results")
    for preset, folder in (("cpu-long", store.root / "budget-1x"), ("cpu", store.root)):
        write_cell(ResultStore(folder), "lamae", 0, 1.5, preset=preset)
        write_cell(ResultStore(folder), "random_init", 0, 0.3, preset=preset)
    tables = {t.preset: t for t in comparable_tables(list(store.records()))}
    assert set(tables) == {"cpu", "cpu-long"}
    assert all(set(t.by_method) == {"lamae", "random_init"} for t in tables.values())


def test_the_tables_of_a_budget_sweep_have_headings_that_name_their_budget(tmp_path):
    # the points of a sweep are one evaluation at several budgets: under one heading each they
    # read alike in the leaderboard and in run's summary (a regression: all three said the same)
    store = ResultStore(tmp_path / "results")
    for budget in (2e12, 5e11):
        point = ResultStore(store.root / f"budget-{budget:g}")
        write_cell(point, "lamae", 0, 1.5, budget_flops=budget)
        write_cell(point, "random_init", 0, 0.3)
    write_cell(store, "lamae", 0, 1.5, protocol="finetune")  # alone under its title: no budget named
    write_leaderboard(store.root, tmp_path / "LB.md")
    headings = re.findall(r"^## (.*)$", (tmp_path / "LB.md").read_text(), re.MULTILINE)
    linear = "synthetic · labels · preset `cpu` · linear"
    # in increasing budget (as strings "2e+12" sorted before "5e+11")
    assert [h for h in headings if h.startswith(linear)] == [
        f"{linear} · 500G FLOPs pretraining",
        f"{linear} · 2T FLOPs pretraining",
    ]
    assert "synthetic · labels · preset `cpu` · finetune" in headings
    summary = summary_table(list(store.records()))
    assert summary.index(f"{linear} · 500G FLOPs pretraining\n") < summary.index(f"{linear} · 2T FLOPs pretraining\n")


def test_a_method_that_did_not_learn_is_pointed_to_a_longer_preset_only_below_it():
    table = Table(
        "synthetic", "labels", "cpu", "linear", "", "e", "lamae", not_learned={"lamae": []}, learned_ratio=0.8
    )
    assert "`--preset cpu-long`" in " ".join(learning_notes(table))
    at_cpu_long = dataclasses.replace(table, preset="cpu-long")  # already there: only a larger budget helps
    note = " ".join(learning_notes(at_cpu_long))
    assert "--preset cpu-long" not in note and "a larger budget: `--budget`" in note


def test_training_curves_keep_the_plateau_readable_when_the_first_intervals_are_far_above_trivial():
    # a run starting at 20x the trivial loss (the decoder's output settling) and learning to 0.7:
    # the axis shows the range between the threshold and 1, not 0 to 20
    learning = Run([1, 2, 3, 4, 5, 6], [20.0, 1.0, 0.9, 0.8, 0.75, 0.7])
    assert ratio_limits({"lamae": [learning]}, 0.8) == pytest.approx((0.6, 1.25))
    rising = Run([1, 2, 3, 4], [5.0, 0.9, 1.6, float("nan")])  # a run whose late loss rises stays in view
    low, high = ratio_limits({"lamae": [learning], "ind_p": [rising]}, 0.8)
    assert low == pytest.approx(0.6) and high == pytest.approx(1.76)
    assert ratio_limits({}, None) == (0.0, 1.25)


def test_a_training_curve_legend_of_many_lines_moves_beside_the_axes(tmp_path):
    # a dozen settings' lines in one panel: a legend inside the axes covered the curves it names
    run = Run([1, 2, 3], [1.0, 0.9, 0.8], reference=[1.0, 1.0, 1.0])
    few = {f"m{i}": [run] for i in range(LEGEND_INSIDE_MAX)}
    many = {f"m{i}": [run] for i in range(LEGEND_INSIDE_MAX + 1)}
    widths = [
        imread(training_curves_plot(tmp_path / f"{n}.png", "t", runs, {}, 0.8)).shape[1]
        for n, runs in (("few", few), ("many", many))
    ]
    assert widths[1] > widths[0] * 1.3
