"""The command line's vocabulary: ``--results DIR`` for every results folder, the deprecated
``--out`` still working with one warning line, and ``run --config FILE``."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import main, parse_args

RUN_FLAGS = [
    "--methods",
    "lamae,lamae[la_mask_ratio=0,la_depth=3]",
    "--dataset",
    "synthetic",
    "--labels",
    "icd",
    "--preset",
    "smoke",
    "--seeds",
    "0,4,7",
    "--protocols",
    "linear,finetune",
    "--results",
    "runs/x",
    "--set",
    "pretrain.steps=3",
    "--set",
    "model.dim=96",
    "--no-progress",
    "--rerun",
    "--learned-ratio",
    "0.7",
    "--budget",
    "600@lamae",
]
RUN_TOML = """\
methods = ["lamae", "lamae[la_mask_ratio=0,la_depth=3]"]
dataset = "synthetic"
labels = "icd"
preset = "smoke"
seeds = [0, 4, 7]
protocols = ["linear", "finetune"]
results = "runs/x"
set = ["pretrain.steps=3", "model.dim=96"]
no-progress = true
rerun = true
no-references = false
learned-ratio = 0.7
budget = "600@lamae"
"""


def options(argv: list[str]) -> dict:
    """The parsed options, without the handler and the bookkeeping of the renamed options."""
    args = vars(parse_args(argv))
    return {k: v for k, v in args.items() if k != "handler" and not k.startswith("_given_")}


def one_error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    return lines[0]


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_a_config_file_equals_its_flags(tmp_path):
    config = write_config(tmp_path, RUN_TOML)
    from_file = options(["run", "--config", str(config)])
    assert from_file == options(["run", *RUN_FLAGS])
    assert from_file["seeds"] == [0, 4, 7] and from_file["results"] == Path("runs/x")
    assert from_file["add_references"] is True  # a switch set to false is the default
    assert options(["run", f"--config={config}"]) == from_file


def test_the_command_lines_flags_override_the_config_file(tmp_path):
    config = write_config(tmp_path, RUN_TOML)
    args = options(["run", "--config", str(config), "--preset", "cpu", "--seeds", "2", "--set", "pretrain.steps=5"])
    assert args["preset"] == "cpu" and args["seeds"] == [0, 1]
    assert args["overrides"] == ["pretrain.steps=3", "model.dim=96", "pretrain.steps=5"]  # the later one wins
    assert args["methods"] == ["lamae", "lamae[la_mask_ratio=0,la_depth=3]"]


def test_a_run_request_holds_the_flags_under_their_own_names(tmp_path):
    """RunRequest's fields are the run flags' names: nothing is copied under a new name, and a
    field without its flag (but the settings, the cache folder and a task's units) fails here."""
    from benchmark.cli.run import run_request
    from benchmark.data.contract import default_cache_root
    from benchmark.run.runner import RunRequest

    args = parse_args(["run", "--config", str(write_config(tmp_path, RUN_TOML)), "--profile", str(tmp_path / "p")])
    request = run_request(args, {"pretrain": {"steps": "3"}})
    assert isinstance(request, RunRequest)
    assert request.results == Path("runs/x") and request.seeds == [0, 4, 7] and request.profile == tmp_path / "p"
    assert request.methods == ["lamae", "lamae[la_mask_ratio=0,la_depth=3]"] and request.preset == "smoke"
    assert request.overrides == {"pretrain": {"steps": "3"}} and request.units is None
    assert request.rerun is True and request.progress is False and request.label_set == "icd"
    assert request.cache_dir == default_cache_root()  # --cache-dir not given


def test_the_old_results_flag_overrides_the_config_file_too(tmp_path, capsys):
    config = write_config(tmp_path, RUN_TOML)
    assert options(["run", "--config", str(config), "--out", "runs/y"])["results"] == Path("runs/y")
    assert "--out is deprecated for the results folder" in capsys.readouterr().err


def test_a_one_element_list_of_seeds_is_that_seed_and_a_number_is_a_count(tmp_path):
    assert options(["run", "--config", str(write_config(tmp_path, 'methods = "lamae"\nseeds = [3]\n'))])["seeds"] == [3]
    assert options(["run", "--config", str(write_config(tmp_path, 'methods = "lamae"\nseeds = 3\n'))])["seeds"] == [
        0,
        1,
        2,
    ]


def test_an_unknown_config_key_is_refused_naming_the_valid_keys(tmp_path, capsys):
    config = write_config(tmp_path, 'methods = ["lamae"]\nout = "runs/x"\n')
    line = one_error_line(capsys, ["run", "--config", str(config)])
    assert f"{config}: unknown key 'out'; valid keys: methods, dataset, labels" in line
    assert "results" in line and "set" in line and "config" not in line.partition("valid keys:")[2]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('methods = "lamae"\nseeds = "two"\n', "seeds = 'two': --seeds 'two': give a count (3)"),
        ('methods = "lamae"\nrerun = "yes"\n', "rerun = 'yes': a switch takes true or false"),
        ('methods = "lamae"\nduplicates = "keep"\n', "duplicates = 'keep': choose from refuse, drop"),
        ('methods = "lamae"\nset = {steps = 3}\n', "set = {'steps': 3}: give a string, a number or a list"),
        ("methods = [lamae]\n", "not a TOML file"),
    ],
)
def test_a_bad_config_value_is_one_line_naming_the_file_and_key(tmp_path, capsys, text, expected):
    config = write_config(tmp_path, text)
    line = one_error_line(capsys, ["run", "--config", str(config)])
    assert str(config) in line and expected in line


def test_a_missing_or_abbreviated_config_is_refused(tmp_path, capsys):
    assert "--config" in one_error_line(capsys, ["run", "--config", str(tmp_path / "none.toml")])
    config = write_config(tmp_path, 'methods = "lamae"\n')
    assert "write --config in full" in one_error_line(capsys, ["run", "--methods", "lamae", "--conf", str(config)])


@pytest.mark.parametrize(
    "argv, dest, value, warning",
    [
        (["run", "--methods", "lamae", "--out", "x"], "results", Path("x"), "--out is deprecated for the results folder; use --results"),
        (["status", "--out", "x"], "results", Path("x"), "--out is deprecated for the results folder; use --results"),
        (["leaderboard", "--out", "b.md"], "leaderboard", Path("b.md"), "--out is deprecated for the leaderboard file; use --leaderboard"),
        (["export", "--out", "r.csv"], "to", Path("r.csv"), "--out is deprecated for export's table file; use --to"),
        (["export-encoder", "r.json", "--out", "e"], "to", Path("e"), "--out is deprecated for export-encoder's folder; use --to"),
        (["new-method", "mine", "--out", "m.py"], "to", Path("m.py"), "--out is deprecated for new-method's file; use --to"),
    ],
)  # fmt: skip
def test_the_old_out_flag_still_works_with_one_warning_line(capsys, argv, dest, value, warning):
    assert options(argv)[dest] == value
    assert capsys.readouterr().err.strip().splitlines() == [f"warning: {warning}"]


def test_the_new_names_print_no_warning_and_both_names_at_once_are_refused(capsys):
    assert options(["status", "--results", "x"])["results"] == Path("x")
    assert options(["export", "--to", "r.csv"])["to"] == Path("r.csv")
    assert capsys.readouterr().err == ""
    line = one_error_line(capsys, ["status", "--results", "x", "--out", "y"])
    assert "--out and --results both name the results folder; give --results alone" in line


def test_status_with_the_old_flag_reads_the_folder(tmp_path, capsys):
    assert main(["status", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == "warning: --out is deprecated for the results folder; use --results"
    assert str(tmp_path) in captured.out


def test_every_subcommand_that_reads_results_takes_the_same_flag():
    for argv in (
        ["run", "--methods", "lamae"],
        ["status"],
        ["leaderboard"],
        ["compare", "a", "b"],
        ["export", "--to", "t"],
    ):
        assert options([*argv, "--results", "r"])["results"] == Path("r")
        assert options(argv)["results"] == Path("results")


def test_compare_takes_protocols_and_its_old_singular_name():
    assert options(["compare", "a", "b", "--protocols", "linear,finetune"])["protocols"] == ["linear", "finetune"]
    assert options(["compare", "a", "b", "--protocol", "linear"])["protocols"] == ["linear"]
    assert options(["validate", "lamae", "--presets", "smoke"])["presets"] == ["smoke"]


def test_the_documented_config_file_runs_as_its_flags_and_the_docs_name_every_key(tmp_path):
    """docs/command-line.md's example file parses to the flags it stands for, and its list of keys
    is the parser's (a new run option is documented as a key too)."""
    import re

    from conftest import REPO

    from benchmark.cli import build_parser
    from benchmark.cli.run_config import config_keys

    guide = (REPO / "docs" / "command-line.md").read_text()
    example = re.search(r"```toml\n(.*?)```", guide, re.DOTALL)
    assert example, "docs/command-line.md shows no run.toml"
    config = write_config(tmp_path, example.group(1))
    assert options(["run", "--config", str(config)]) == options(
        ["run", "--methods", "lamae,ind_p,lamae[la_mask_ratio=0]", "--dataset", "synthetic", "--labels", "conditions"]
        + ["--preset", "smoke", "--seeds", "3", "--protocols", "linear,finetune", "--results", "runs/study"]
        + ["--set", "pretrain.steps=200", "--set", "linear.max_iter=100", "--no-progress"]
    )
    keys = guide.partition("A key is a `run` option's name")[2].partition("a value is")[0]
    named = set(re.findall(r"`([a-z-]+)`", keys))
    launchers = {"jobs", "partition", "gpus-per-task", "cpus-per-task", "time", "array-parallelism", "job-dir"}
    assert set(config_keys(build_parser()[1])) == named | launchers


def test_the_synopsis_names_every_option_of_every_subcommand():
    """docs/command-line.md's synopsis shows each subcommand with all its options (their current
    names: the deprecated ones are documented once, in prose)."""
    import argparse

    from conftest import REPO

    from benchmark.cli import build_parser
    from benchmark.cli.common import Renamed

    guide = (REPO / "docs" / "command-line.md").read_text()
    synopsis = guide.partition("## Synopsis")[2].partition("```\n\n")[0]
    shown = {}
    for block in synopsis.split("python -m benchmark ")[1:]:
        shown[block.split()[0]] = block
    parser = build_parser()[0]
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(shown) == set(commands)
    for name, command in commands.items():
        for action in command._actions:
            if isinstance(action, Renamed) and action.deprecated or not action.option_strings:
                continue
            flag = action.option_strings[0]
            assert flag == "-h" or f"{flag} " in shown[name] or f"{flag}]" in shown[name], f"{name} {flag}"
