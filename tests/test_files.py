"""Nothing silent, nothing lost (issue 24): a user's file is never overwritten, every damaged file
the suite reads back is one line naming it and the fix (or a said fallback), and a full disk or a
batch larger than the data fails in one line before anything half-written is left behind."""

from __future__ import annotations

import builtins
import errno
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO
from test_harness import build
from test_scaleout import arguments as smoke_run

from benchmark import storage
from benchmark.cli import main
from benchmark.report.leaderboard import check_target, is_leaderboard, plots_dir_for, write_leaderboard
from benchmark.run.results import IDENTITY, RUNS
from benchmark.storage import MARKER_FILE, DamagedFileError, ForeignFileError, atomic_torch_save, read_json
from benchmark.train.pretrain import PretrainConfig, pretrain


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines and lines[-1].startswith("error:") and "Traceback" not in "".join(lines), lines
    return lines[-1]


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# -- 1. never overwrite what the suite did not write ----------------------------------------------
def test_a_users_markdown_of_the_leaderboards_name_is_refused_before_any_work(tmp_path, capsys):
    paper = tmp_path / "paper.md"
    paper.write_text("# My paper\n\n![figure](paper_plots/figure1.png)\n")
    (tmp_path / "paper_plots").mkdir()
    (tmp_path / "paper_plots" / "figure1.png").write_bytes(b"my figure")
    message = one_line_error(capsys, smoke_run(tmp_path / "paper", tmp_path / "cache"))
    assert str(paper) in message and "--leaderboard FILE" in message
    assert paper.read_text().startswith("# My paper") and (tmp_path / "paper_plots" / "figure1.png").exists()
    assert not any((tmp_path / "paper").iterdir())  # refused before the data were even prepared


def test_a_users_plot_folder_is_refused_and_the_leaderboard_command_names_its_option(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    (tmp_path / "board_plots").mkdir()
    (tmp_path / "board_plots" / "figure1.png").write_bytes(b"my figure")
    message = one_line_error(
        capsys, ["leaderboard", "--results", str(tmp_path / "results"), "--leaderboard", str(tmp_path / "board.md")]
    )
    assert str(tmp_path / "board_plots") in message and "--leaderboard FILE" in message
    assert (tmp_path / "board_plots" / "figure1.png").read_bytes() == b"my figure"
    assert not (tmp_path / "board.md").exists()
    with pytest.raises(ForeignFileError):  # the library call refuses alike
        write_leaderboard(tmp_path / "results", tmp_path / "board.md")


def test_the_suites_own_leaderboard_is_regenerated_and_marked_with_its_plot_folder(tmp_path):
    (tmp_path / "results").mkdir()
    board = tmp_path / "LB.md"
    write_leaderboard(tmp_path / "results", board)
    assert is_leaderboard(board) and storage.MARK in board.read_text().splitlines()[0]
    plots = plots_dir_for(board)
    plots.mkdir()  # as a generation with plots leaves it
    storage.mark_folder(plots, "test")
    (plots / "curves_x.png").write_bytes(b"old plot")
    board.write_text(board.read_text() + "\n![curves](lb_plots/curves_x.png)\n")
    write_leaderboard(tmp_path / "results", board)  # its results are gone: so is its plot
    assert not (plots / "curves_x.png").exists() and (plots / MARKER_FILE).exists()


def test_the_committed_leaderboard_and_its_plots_are_recognised_as_the_suites(tmp_path):
    check_target(REPO / "LEADERBOARD.md")  # written before the marker existed: its generated header
    shutil.copy(REPO / "LEADERBOARD.md", tmp_path / "LEADERBOARD.md")
    shutil.copytree(REPO / "leaderboard_plots", tmp_path / "leaderboard_plots")
    (tmp_path / "leaderboard_plots" / MARKER_FILE).unlink(missing_ok=True)
    embedded = sorted(p.name for p in (tmp_path / "leaderboard_plots").glob("*.png"))
    (tmp_path / "results").mkdir()
    write_leaderboard(tmp_path / "results", tmp_path / "LEADERBOARD.md")  # CI's regeneration, from no results
    assert embedded and not list((tmp_path / "leaderboard_plots").glob("*.png"))  # its own stale plots, deleted
    assert is_leaderboard(tmp_path / "LEADERBOARD.md") and (tmp_path / "leaderboard_plots" / MARKER_FILE).exists()


def test_a_users_table_profile_folder_or_encoder_folder_is_refused(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    mine = tmp_path / "table.csv"
    mine.write_text("name,value\na,1\n")
    message = one_line_error(capsys, ["export", "--results", str(tmp_path / "results"), "--to", str(mine)])
    assert str(mine) in message and "--to FILE" in message and mine.read_text() == "name,value\na,1\n"

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "notes.txt").write_text("mine")
    message = one_line_error(capsys, smoke_run(tmp_path / "r", tmp_path / "cache", "--profile", str(profiles)))
    assert str(profiles) in message and "--profile DIR" in message

    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text('{"my": "settings"}')
    message = one_line_error(capsys, ["export-encoder", str(tmp_path / "any.json"), "--to", str(encoder)])
    assert str(encoder) in message and "--to DIR" in message
    assert (encoder / "config.json").read_text() == '{"my": "settings"}'


def test_an_earlier_export_is_replaced(tmp_path, capsys):
    from benchmark.report.export import CELL_COLUMNS, is_export

    table = tmp_path / "table.csv"
    table.write_text(",".join([*CELL_COLUMNS, "status"]) + "\n")
    assert is_export(table) and not is_export(tmp_path / "absent.csv")


# -- 3. every damaged file is one line -----------------------------------------------------------
def test_the_reader_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"cell": {"dataset"')
    with pytest.raises(DamagedFileError, match=r"x\.json is damaged .*JSONDecodeError.*; do this"):
        read_json(path, "do this")
    path.write_text("[1, 2]")
    with pytest.raises(DamagedFileError, match="a JSON object was expected"):
        read_json(path, "do this")


@pytest.mark.parametrize("checkpoint, said", [("last.pt", "restarting pretraining from step 0"), ("final.pt", "again")])
def test_a_truncated_checkpoint_is_said_and_pretraining_gives_the_weights_of_a_fresh_run(
    toy_arrays, tmp_path, caplog, checkpoint, said
):
    cfg = PretrainConfig(steps=4, batch_size=8, checkpoint_every=2, log_every=2)
    fresh, _ = build("lamae", toy_arrays, window_s=5.0)
    pretrain(fresh, toy_arrays, cfg, 1, torch.device("cpu"), tmp_path / "fresh", progress=False)
    folder = tmp_path / "damaged"
    folder.mkdir()
    torch.save({"model": fresh.state_dict(), "report": {}, "step": 2}, folder / checkpoint)
    truncate(folder / checkpoint)
    again, _ = build("lamae", toy_arrays, window_s=5.0)
    with caplog.at_level("WARNING", logger="benchmark"):
        report = pretrain(again, toy_arrays, cfg, 1, torch.device("cpu"), folder, progress=False)
    assert report.steps == 4 and any(str(folder / checkpoint) in m and said in m for m in caplog.messages)
    for (name, a), b in zip(fresh.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.load(folder / "final.pt", weights_only=False)["report"]["steps"] == 4  # replaced


def test_an_old_result_without_signature_is_stale_not_a_crash(tmp_path, capsys, caplog):
    out = tmp_path / "r"
    cell = out / "synthetic" / "conditions" / "smoke" / "lamae" / "linear_seed0.json"
    cell.parent.mkdir(parents=True)
    old = {"cell": {"dataset": "synthetic", "label_set": "conditions", "preset": "smoke", "method": "lamae",
                    "protocol": "linear", "seed": 0}, "config": {}, "metrics": {"macro_auroc": 0.7}}  # fmt: skip
    cell.write_text(json.dumps(old))
    message = one_line_error(capsys, smoke_run(out, tmp_path / "cache", "--leaderboard", str(tmp_path / "b.md")))
    assert str(cell) in message and "older version" in message and "--rerun" in message
    caplog.clear()
    assert main(["leaderboard", "--results", str(out), "--leaderboard", str(tmp_path / "b.md")]) == 0
    assert any(str(cell) in m and "left out of reports" in m for m in caplog.messages)
    assert main(["status", "--results", str(out)]) == 0
    message = one_line_error(capsys, ["export-encoder", str(cell), "--to", str(tmp_path / "e")])
    assert str(cell) in message and "older version" in message


def test_export_encoder_of_a_truncated_result_or_identity_is_one_line(tmp_path, capsys):
    result = tmp_path / "linear_seed0.json"
    result.write_text('{"cell": {"dataset": "synth')
    message = one_line_error(capsys, ["export-encoder", str(result), "--to", str(tmp_path / "e")])
    assert str(result) in message and "damaged" in message
    folder = tmp_path / "_checkpoints" / "lamae_seed0_01234567"
    folder.mkdir(parents=True)
    (folder / IDENTITY).write_text('{"signature": "0123')
    message = one_line_error(capsys, ["export-encoder", str(folder), "--to", str(tmp_path / "e")])
    assert str(folder / IDENTITY) in message and "delete it" in message
    assert not (tmp_path / "e").exists()


def test_status_names_a_truncated_run_state_file(tmp_path, capsys):
    runs = tmp_path / "r" / RUNS
    runs.mkdir(parents=True)
    (runs / "host-1-20261130T101500.json").write_text('{"format": 1, "run_id": "ho')
    message = one_line_error(capsys, ["status", "--results", str(tmp_path / "r")])
    assert str(runs / "host-1-20261130T101500.json") in message and "delete it" in message


# -- 4. resources checked before they fail -------------------------------------------------------
def test_a_batch_larger_than_the_split_is_refused_before_the_flops_are_counted(tmp_path, capsys, monkeypatch):
    def no_flop_count(*args, **kwargs):
        raise AssertionError("the FLOP count ran a batch")

    monkeypatch.setattr("benchmark.train.budget.pretrain_step_flops", no_flop_count)
    message = one_line_error(
        capsys,
        smoke_run(
            tmp_path / "r",
            tmp_path / "c",
            "--set",
            "pretrain.batch_size=100000",
            "--leaderboard",
            str(tmp_path / "b.md"),
        ),
    )
    assert "smaller than one batch of 100000" in message and "pretrain.batch_size" in message


class FullDisk:
    """A file handle on a disk that fills up after ``room`` bytes."""

    def __init__(self, handle, room: int):
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def fill_disk(monkeypatch, target: str, room: int = 1000) -> None:
    """``open`` in benchmark/storage.py gives a full disk to writes of files named ``target``."""

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)
        return FullDisk(handle, room) if "w" in mode and target in Path(path).name else handle

    monkeypatch.setattr(storage, "open", open_on_a_full_disk, raising=False)


def test_a_full_disk_names_the_target_and_leaves_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    atomic_torch_save({"step": 1}, target)
    fill_disk(monkeypatch, "last.pt")
    with pytest.raises(OSError) as raised:  # torch.save's own "unexpected pos" RuntimeError, unwrapped
        atomic_torch_save({"weights": torch.zeros(10_000)}, target)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert torch.load(target)["step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.slow
def test_a_run_on_a_full_disk_is_one_line_and_leaves_nothing_that_reads_as_finished(tmp_path, capsys, monkeypatch):
    out, cache, board = tmp_path / "r", tmp_path / "c", ("--leaderboard", str(tmp_path / "b.md"))
    fill_disk(monkeypatch, "final.pt")
    message = one_line_error(capsys, smoke_run(out, cache, *board))
    assert "final.pt: No space left on device; free disk space" in message
    assert not list(out.rglob("final.pt")) and not list(out.rglob("linear_seed0.json")) and not list(out.rglob("*.tmp"))
    monkeypatch.undo()  # space freed: the same command finishes the run
    assert main(smoke_run(out, cache, *board)) == 0 and list(out.rglob("linear_seed0.json"))


def test_truncated_stored_frozen_outputs_are_computed_again(toy_arrays, tmp_path, caplog):
    from benchmark.eval.protocol import CellContext

    method, _ = build("lamae", toy_arrays, window_s=5.0)
    calls = []

    def compute(indices):
        calls.append(len(indices))
        return torch.arange(len(indices), dtype=torch.float32)[:, None], toy_arrays.labels[indices]

    def outputs():
        context = CellContext(method, lambda: method, toy_arrays, 0, torch.device("cpu"), persist=tmp_path)
        return context.split_outputs("test", "features", compute)[0]

    first = outputs()
    assert torch.equal(outputs(), first) and len(calls) == 1  # read back from the file
    (stored,) = tmp_path.glob("features_test_*.npz")
    truncate(stored)
    with caplog.at_level("WARNING", logger="benchmark"):
        assert torch.equal(outputs(), first) and len(calls) == 2
    assert any(str(stored) in m and "computing them again" in m for m in caplog.messages)


def test_a_read_only_target_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    def read_only(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return builtins.open(path, mode, *args, **kwargs)

    (tmp_path / "results").mkdir()
    monkeypatch.setattr(storage, "open", read_only, raising=False)
    board = tmp_path / "board.md"
    message = one_line_error(
        capsys, ["leaderboard", "--results", str(tmp_path / "results"), "--leaderboard", str(board)]
    )
    assert f"{board}: Read-only file system; make it writable" in message and not board.exists()


def test_the_next_run_rewrites_a_damaged_identity(tmp_path):
    from benchmark.run.presets import PRESETS
    from benchmark.run.runner import record_identity

    (tmp_path / IDENTITY).write_text('{"signature": "01')
    identity = {"dataset": "synthetic", "method": "lamae", "seed": 0}
    record_identity(tmp_path, identity, PRESETS["smoke"])
    assert read_json(tmp_path / IDENTITY, "")["config"] == {**identity, "preset": "smoke"}
