"""Method variants (``lamae[la_mask_ratio=0]``): names, construction, cells, budgets and scopes."""

from __future__ import annotations

import pytest
import torch

from benchmark.cli import main
from benchmark.config import ConfigError, parse_overrides, signature
from benchmark.eval.protocols.linear import LinearProbe
from benchmark.method.variant import parse_variant, split_names
from benchmark.registry import PluginError
from benchmark.run.build import build_method, check_scopes, method_config, resolve_method, resolve_methods
from benchmark.run.presets import PRESETS
from benchmark.run.results import Cell, ResultStore
from benchmark.train.budget import FlopsMeter, parse_budget, plan_pretraining

SMOKE = PRESETS["smoke"]


def test_a_method_list_keeps_commas_inside_a_variants_brackets():
    assert split_names("lamae, lamae[la_mask_ratio=0,la_depth=3],ind_p[dim=24]") == [
        "lamae",
        "lamae[la_mask_ratio=0,la_depth=3]",
        "ind_p[dim=24]",
    ]
    for bad in ("lamae[la_depth=3", "lamae]", "lamae[a=1]]"):
        with pytest.raises(ConfigError, match="matching"):
            split_names(bad)


def test_canonical_names_sort_settings_and_write_values_as_typed():
    canonical = "lamae[la_depth=3,la_mask_ratio=0]"
    for spelling in ("lamae[la_mask_ratio=0.0, la_depth=3]", "lamae[la_depth=3,la_mask_ratio=0]"):
        assert resolve_method(spelling).name == canonical
    assert resolve_method("lamae[lead_embedding=off,la_mask_ratio=.25]").name == (
        "lamae[la_mask_ratio=0.25,lead_embedding=false]"
    )
    assert resolve_method("lamae").name == resolve_method("lamae[]").name == "lamae"
    assert resolve_method("st_mem_pma[gate_fit.epochs=3]").name == "st_mem_pma[gate_fit.epochs=3]"


def test_unknown_fields_bad_values_and_bad_syntax_fail_with_one_line_errors():
    with pytest.raises(
        ConfigError, match=r"lamae\[la_mask_ratios=0\] has no setting 'la_mask_ratios'; did you mean 'la_mask_ratio'"
    ):
        resolve_method("lamae[la_mask_ratios=0]")
    with pytest.raises(ConfigError, match="expected float"):
        resolve_method("lamae[la_mask_ratio=half]")
    with pytest.raises(ConfigError, match="is set twice"):
        resolve_method("lamae[la_depth=1,la_depth=2]")
    with pytest.raises(ConfigError, match="NAME\\[FIELD=VALUE"):
        resolve_method("lamae[la_depth=1]x")
    with pytest.raises(PluginError, match="did you mean 'lamae'"):
        resolve_method("lamea[la_depth=1]")
    with pytest.raises(ConfigError, match="a method's settings go in its brackets, not in --set"):
        parse_overrides(["lamae[la_depth=1].la_mask_ratio=0"])


def test_cli_refuses_a_bad_variant_on_one_line_with_status_2(capsys, tmp_path):
    code = main(["run", "--methods", "lamae,lamae[la_mask_ratios=0]", "--preset", "smoke", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "did you mean 'la_mask_ratio'" in err


def test_a_variants_settings_apply_over_the_preset_and_change_its_signature():
    plain = method_config("lamae", SMOKE)
    variant = method_config("lamae[la_depth=3,la_mask_ratio=0]", SMOKE)
    assert (plain.la_depth, variant.la_depth, variant.la_mask_ratio) == (2, 3, 0.0)
    assert method_config("ind_p[dim=24]", SMOKE).dim == 24  # over the preset's shared width too
    assert signature(plain) != signature(variant)
    assert signature(method_config("lamae[la_mask_ratio=0.0]", SMOKE)) == signature(
        method_config("lamae[la_mask_ratio=0]", SMOKE)
    )


def test_variants_resolve_in_runs_and_the_untrained_alternative_ind_s_runs_under_the_linear_probe():
    names = [
        s.name
        for s in resolve_methods(
            ["lamae", "lamae[la_mask_ratio=0.0]", "random_init[arch=ind_p]"], [LinearProbe()], True, SMOKE
        )
    ]
    assert names == ["lamae", "lamae[la_mask_ratio=0]", "random_init[arch=ind_p]", "random_init", "ecg_features"]
    method = build_method("random_init[arch=ind_p]", SMOKE)
    assert LinearProbe.kind in type(method).evaluations and type(method.net).name == "ind_p"


def test_cells_of_variants_have_their_own_file_safe_paths(tmp_path):
    store = ResultStore(tmp_path)
    names = ["lamae", "lamae[la_mask_ratio=0]", "lamae[la_depth=3,la_mask_ratio=0]", "ind_p[dim=24]"]
    paths = [store.path(Cell("synthetic", "conditions", "cpu", name, "linear", 0)) for name in names]
    folders = [p.parent.name for p in paths]
    assert folders == ["lamae", "lamae@la_mask_ratio=0", "lamae@la_depth=3@la_mask_ratio=0", "ind_p@dim=24"]
    assert all(set(f) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-.=@,+%") for f in folders)
    # a value that contains the separator or a path character cannot alias another variant
    odd = parse_variant("x[a=1@b=2/c]").file_name
    assert odd == "x@a=1%40b%3D2%2Fc" and odd != parse_variant("x[a=1,b=2]").file_name


def test_set_of_a_methods_settings_is_refused_with_the_variant_that_says_it(capsys, tmp_path):
    """One variant, one identity, one folder: ``--set lamae.la_depth=3`` once wrote a LAMAE with
    another signature into ``lamae/``, where the next plain run met a stale-result error."""
    with pytest.raises(ConfigError, match=r"write the variant in brackets instead: --methods 'lamae\[la_depth=3\]'"):
        check_scopes(parse_overrides(["lamae.la_depth=3"]), {})
    with pytest.raises(ConfigError, match=r"validate 'ind_p\[dim=24,mask_ratio=0.5\]'"):
        check_scopes(parse_overrides(["ind_p.mask_ratio=0.5", "ind_p.dim=24"]), {}, "validation")
    command = ["run", "--methods", "lamae[la_mask_ratio=0]", "--preset", "smoke", "--results", str(tmp_path)]
    assert main([*command, "--set", "lamae.la_depth=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--methods 'lamae[la_depth=3]'" in err
    assert main(["validate", "lamae", "--preset", "smoke", "--set", "lamae.la_depth=3"]) == 2
    assert "validate 'lamae[la_depth=3]'" in capsys.readouterr().err


def test_profile_writes_one_folder_per_variant_of_one_seed(tmp_path):
    """Regression: the profile folder was named by the method's class, so ``lamae`` and
    ``lamae[la_mask_ratio=0]`` at seed 0 wrote (and overwrote) one folder."""
    profile = tmp_path / "profile"
    code = main(
        [
            "run",
            "--methods",
            "lamae,lamae[la_mask_ratio=0]",
            "--preset",
            "smoke",
            "--protocols",
            "linear",
            "--no-references",
            "--set",
            "pretrain.steps=2",
            "--results",
            str(tmp_path / "results"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--profile",
            str(profile),
            "--no-progress",
        ]
    )
    assert code == 0
    folders = sorted(p.name for p in profile.iterdir() if p.is_dir())
    assert folders == ["lamae@la_mask_ratio=0_seed0", "lamae_seed0"]
    assert all((profile / folder / "pretrain_top_ops.txt").is_file() for folder in folders)


def test_a_variant_of_the_budget_method_is_matched_to_the_budget_not_to_itself(tmp_path):
    """Regression: the budget's reference was recognised by class name, so every LAMAE variant
    counted as the reference and ran pretrain.steps steps whatever its FLOPs per step."""
    meter = FlopsMeter(tmp_path, torch.device("cpu"))
    lamae = build_method("lamae", SMOKE)
    lead_level = build_method("lamae[la_skip=true,la_tokens=lead]", SMOKE)
    build = lambda name: build_method(name, SMOKE)  # noqa: E731
    plan = plan_pretraining(
        lead_level, 200, 16, parse_budget("lamae"), meter, build, name="lamae[la_skip=true,la_tokens=lead]"
    )
    assert plan.budget_flops == 200 * meter(lamae, 16) != 200 * meter(lead_level, 16)
    assert plan.steps == round(plan.budget_flops / meter(lead_level, 16))
    of_variant = plan_pretraining(
        lamae, 200, 16, parse_budget("50@lamae[la_skip=true,la_tokens=lead]"), meter, build, name="lamae"
    )
    assert of_variant.budget_flops == 50 * meter(lead_level, 16)


@pytest.mark.slow
def test_a_run_with_variants_writes_their_own_results_rows_and_ladder_table(tmp_path):
    from conftest import run_cli

    out = tmp_path / "results"
    common = ["--preset", "smoke", "--protocols", "linear", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    result = run_cli(
        "run",
        "--methods",
        "lamae,lamae[la_mask_ratio=0.0]",
        "--results",
        str(out),
        "--leaderboard",
        str(out / "LB.md"),
        "--set",
        "pretrain.steps=2",
        *common,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = out / "synthetic" / "conditions" / "smoke"
    assert (folder / "lamae@la_mask_ratio=0" / "linear_seed0.json").is_file()
    assert (folder / "lamae" / "linear_seed0.json").is_file()
    board = (out / "LB.md").read_text()
    assert "| lamae[la_mask_ratio=0] " in board and "Ablation ladder of `lamae`" in board
    compared = run_cli("compare", "lamae[la_mask_ratio=0]", "lamae", "--results", str(out), "--resamples", "50")
    assert compared.returncode == 0 and "lamae[la_mask_ratio=0] - lamae (seed-mean macro AUROC) = " in compared.stdout


def test_the_untrained_independent_lead_model_passes_the_contract_for_frozen_protocols():
    from benchmark.run.validate import validate_method

    report = validate_method("random_init[arch=ind_p]", SMOKE)
    assert report.passed and report.method == "random_init[arch=ind_p]"
    assert report.encoder_params == build_method("ind_p", SMOKE).encoder_parameters()  # ind_p's network
