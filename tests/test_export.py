"""`export` (results as a data frame) and diverged cells in reports, from stored results (no training)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_leaderboard import table_rows, write_cell

from benchmark.cli import main
from benchmark.report.comparison import comparable_tables
from benchmark.report.export import results_frame
from benchmark.report.leaderboard import mean_sd, write_leaderboard
from benchmark.run.results import Cell, ResultStore


def write_diverged(store, method, seed, stage="pretraining", protocol="linear"):
    """A diverged cell as the runner writes it, from a finished record of the same method."""
    write_cell(store, method, seed, 1.0, protocol=protocol)
    cell = Cell("synthetic", "labels", "cpu", method, protocol, seed)
    record = json.loads(store.path(cell).read_text())
    record["compute"]["pretrain"]["loss_curve"] = [[200, 0.5], [400, 0.4]]
    record["failure"] = {"stage": stage, "step": 420, "loss": "nan", "message": f"{stage} loss became nan at step 420"}
    for key in ("metrics", "cell", "predictions", "_path"):
        record.pop(key, None)
    store.write_diverged(cell, record)


def rows_separator(rows: dict) -> str:
    return next(k for k in rows if set(k) <= {"-", ":"})


@pytest.fixture
def results(tmp_path):
    store = ResultStore(tmp_path / "results")
    for seed in range(3):
        write_cell(store, "lamae", seed, 1.5)
        write_cell(store, "ind_p", seed, 1.2)
        write_cell(store, "random_init", seed, 0.3)
        write_cell(store, "lamae", seed, 1.4, protocol="finetune", protocol_config={"epochs": 4})
        write_cell(store, "scratch", seed, 0.4, protocol="finetune", protocol_config={"epochs": 4})
    write_cell(store, "ind_p", 0, 1.3, protocol="finetune", protocol_config={"epochs": 4}, budget_flops=2e12)
    return store


def test_export_has_one_row_per_cell_with_metrics_compute_and_every_config_field(results, tmp_path):
    out = tmp_path / "results.csv"
    assert main(["export", "--results", str(results.root), "--to", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == len(list(results.records())) == 16
    assert list(frame.columns[:7]) == ["dataset", "label_set", "preset", "method", "protocol", "point", "seed"]
    for column in (
        "status",
        "table",
        "evaluation",
        "budget",
        "path",
        "predictions",
        "macro_auroc",
        "macro_auprc",
        "n_test",
        "compute.encoder_params",
        "compute.pretrain.flops_per_step",
        "compute.pretrain.total_flops",
        "compute.pretrain.steps",
        "compute.pretrain.wall_s",
        "compute.protocol_wall_s",
        "details.n_train",
        "config.dataset_config.n",
        "config.protocol_config.max_iter",
        "config.protocol_config.epochs",
        "provenance.git.commit",
    ):
        assert column in frame.columns, column
    assert not any("loss_curve" in c or "per_label" in c for c in frame.columns)
    row = frame[(frame.method == "lamae") & (frame.protocol == "linear") & (frame.seed == 1)].iloc[0]
    record = json.loads((results.root / row.path).read_text())
    assert row.macro_auroc == pytest.approx(record["metrics"]["macro_auroc"])
    assert (results.root / row.path).with_name(row.predictions).exists()
    assert frame[frame.method == "random_init"].budget.isna().all()  # untrained: joins every budget's table
    assert set(frame[frame.protocol == "linear"].table) == {"synthetic · labels · cpu · linear"}  # readable


def test_the_leaderboard_tables_are_reproducible_from_the_export(results, tmp_path):
    """Group the exported rows as the leaderboard does (dataset, label set, preset, protocol,
    point, evaluation; untrained methods in every budget's table) and recompute every row's
    mean ± sd, seeds and compute columns."""
    board_path = tmp_path / "LEADERBOARD.md"
    write_leaderboard(results.root, board_path)
    board = board_path.read_text()
    out = tmp_path / "results.csv"
    assert main(["export", "--results", str(results.root), "--to", str(out)]) == 0
    frame = pd.read_csv(out, keep_default_na=False, na_values=[""])
    tables = comparable_tables(list(results.records()))
    assert len(tables) == 3  # linear; finetune at two budgets
    keys = ["dataset", "label_set", "preset", "protocol", "point", "evaluation"]
    checked = 0
    for (dataset, label_set, preset, protocol, _point, _evaluation), group in frame.groupby(keys, dropna=False):
        budgets = sorted(group.budget.dropna().unique())
        for budget in budgets:
            members = group[(group.budget == budget) | group.budget.isna()]
            heading = f"## {dataset} · {label_set} · preset `{preset}` · {protocol}"
            sections = [s.split("\n## ")[0] for s in board.split(heading)[1:]]
            sections = [s for s in sections if f"pretraining budget: {budget}" in s]
            assert len(sections) == 1, (heading, budget)
            main_table = sections[0].split("\n\n| ")[1].split("\n\n")[0]  # the first table of the section
            rows = {line.split("|")[1].strip(): line for line in ("| " + main_table).splitlines()}
            assert set(rows) - {"method", rows_separator(rows)} == set(members.method)
            for method, cells in members.groupby("method"):
                line = rows[method]
                assert f"| {mean_sd(cells.sort_values('seed').macro_auroc.tolist())}" in line
                assert f"| {mean_sd(cells.sort_values('seed').macro_auprc.tolist())} " in line
                assert f"| {len(cells)} " in line
                checked += 1
    assert checked == 3 + 2 + 2  # linear: 3 methods; finetune at 1e12: lamae, scratch; at 2e12: ind_p, scratch


def test_parquet_holds_the_same_table_as_csv(results, tmp_path):
    pytest.importorskip("pyarrow")
    assert main(["export", "--results", str(results.root), "--format", "parquet", "--to", str(tmp_path / "r.pq")]) == 0
    assert main(["export", "--results", str(results.root), "--to", str(tmp_path / "r.csv")]) == 0
    parquet, csv = pd.read_parquet(tmp_path / "r.pq"), pd.read_csv(tmp_path / "r.csv")
    assert list(parquet.columns) == list(csv.columns) and len(parquet) == len(csv)
    np.testing.assert_allclose(parquet.macro_auroc, csv.macro_auroc)


def test_per_label_export_has_a_row_per_cell_and_label(results, tmp_path):
    frame = results_frame(results.root, per_label=True)
    assert len(frame) == 16 * 3 and list(frame.columns[:8])[-1] == "label"
    record = next(r for r in results.records() if r["cell"]["method"] == "ind_p")
    rows = frame[frame.path == "synthetic/labels/cpu/ind_p/finetune_seed0.json"].set_index("label")
    assert rows.auroc.to_dict() == pytest.approx(record["metrics"]["per_label_auroc"])


def test_a_diverged_cell_is_exported_marked_and_shown_apart_in_the_leaderboard(results, tmp_path):
    write_diverged(results, "ind_p", 1)
    frame = results_frame(results.root)
    diverged = frame[frame.status == "diverged"]
    assert len(diverged) == 1 and np.isnan(diverged.macro_auroc.iloc[0])
    assert diverged["failure.stage"].iloc[0] == "pretraining" and diverged["failure.step"].iloc[0] == 420
    write_leaderboard(results.root, tmp_path / "LB.md")
    board = (tmp_path / "LB.md").read_text()
    rows = table_rows(board, "## synthetic · labels · preset `cpu` · linear")
    assert "diverged: seed 1 (pretraining, step 420, loss nan)" in rows["ind_p"]
    assert "not ranked" in rows["ind_p"] and "| 2 + 1 diverged " in rows["ind_p"]
    assert "±" not in rows["ind_p"]  # its two finished seeds are not averaged into a score
    assert "(p=" in rows["random_init"] and "ind_p" not in rows["lamae"]  # ranked and tested without it


def test_export_without_results_or_pyarrow_says_what_to_do(tmp_path, capsys, monkeypatch):
    assert main(["export", "--results", str(tmp_path / "nothing"), "--to", str(tmp_path / "x.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    store = ResultStore(tmp_path / "results")
    write_cell(store, "lamae", 0, 1.0)
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)  # as if it were not installed
    assert main(["export", "--results", str(store.root), "--format", "parquet", "--to", str(tmp_path / "x")]) == 2
    assert "pip install 'ecgbench[export]'" in capsys.readouterr().err
