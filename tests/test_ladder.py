"""The ablation ladder of LAMAE (``ladder:lamae``): its rungs, their sizes and their contract."""

from __future__ import annotations

import pytest

from benchmark.cli import main
from benchmark.config import ConfigError
from benchmark.eval.protocols.linear import LinearProbe
from benchmark.run.build import encoder_params, ladder_methods, method_config, resolve_method, resolve_methods
from benchmark.run.ladder import LADDERS, PARAMETER_TOLERANCE, rung_of
from benchmark.run.presets import PRESETS
from benchmark.run.validate import FAIL, validate_method

RUNGS = LADDERS["lamae"]


def test_fixed_rungs_are_written_in_canonical_form_and_recognised_by_name():
    for rung in RUNGS:
        if rung.matched_field is None:
            assert resolve_method(rung.fixed.name).name == rung.fixed.name
            assert rung_of("lamae", rung.fixed.name) is rung
    assert rung_of("lamae", "ind_p[dim=24,feature_dim=64]").label.startswith("Ind_P")
    assert rung_of("lamae", "ind_p") is None and rung_of("lamae", "ind_p[dim=24]") is None
    assert rung_of("lamae", "ind_p[depth=2,dim=24,feature_dim=64]") is None
    for i, rung in enumerate(RUNGS):  # a chain: every rung's neighbour comes before it
        assert (rung.neighbour is None) == (i == 0) and (i == 0 or rung.neighbour < i)


def test_every_rung_differs_from_its_neighbour_in_one_factor():
    """One changed setting, or for the readout and LA-removal rungs the one setting that the
    neighbour's configuration requires with it (LA within a lead and without LA need a readout
    other than LA's CLS: the neighbour already has it)."""
    for rung in RUNGS[1:]:
        if rung.base != "lamae":
            continue
        mine, theirs = dict(rung.settings), dict(RUNGS[rung.neighbour].settings)
        changed = {k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)}
        assert len(changed) == 1, (rung.label, changed)
    assert rung_of("lamae", "lamae[la_depth=3]") is None


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_the_matched_ind_p_holds_lamaes_encoder_parameters_within_15_percent_at_every_preset(preset):
    names = [variant.name for variant in ladder_methods("ladder:lamae", PRESETS[preset])]
    assert [rung_of("lamae", n) for n in names] == list(RUNGS)  # every rung once, in order
    lamae = encoder_params("lamae", PRESETS[preset])
    assert abs(encoder_params(names[-1], PRESETS[preset]) / lamae - 1) <= PARAMETER_TOLERANCE


def test_the_matched_width_is_the_closest_one():
    preset = PRESETS["cpu"]
    lamae = encoder_params("lamae", preset)
    assert encoder_params("ind_p", preset) > 5 * lamae  # what matching removes
    width = method_config(ladder_methods("ladder:lamae", preset)[-1], preset).dim
    misses = {w: abs(encoder_params(f"ind_p[dim={w}]", preset) - lamae) for w in (width - 4, width, width + 4)}
    assert min(misses, key=misses.get) == width  # one step (lcm of 4 heads and 2) either way is further


def test_the_matched_width_follows_the_presets_model_size():
    preset = PRESETS["cpu"]
    wider = preset.with_overrides({"model": {"dim": "96"}})  # LAMAE's encoder grows about 2.25 times
    matched = method_config(ladder_methods("ladder:lamae", preset)[-1], preset).dim
    assert method_config(ladder_methods("ladder:lamae", wider)[-1], wider).dim > matched


def test_runs_expand_the_ladder_and_unknown_ladders_fail_on_one_line(capsys, tmp_path):
    names = [s.name for s in resolve_methods(["ladder:lamae", "lamae"], [LinearProbe()], True, PRESETS["smoke"])]
    rungs = [variant.name for variant in ladder_methods("ladder:lamae", PRESETS["smoke"])]
    assert names == [*rungs, "random_init", "ecg_features"]
    with pytest.raises(ConfigError, match="unknown ablation ladder 'ladder:mvmae'; ladders: ladder:lamae"):
        ladder_methods("ladder:mvmae", PRESETS["smoke"])
    assert main(["run", "--methods", "ladder:nope", "--preset", "smoke", "--results", str(tmp_path)]) == 2
    assert "unknown ablation ladder" in capsys.readouterr().err


def test_list_names_the_ladder_and_its_rungs(capsys):
    assert main(["list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("ladder:lamae"))
    assert all(rung.label in line for rung in RUNGS)


@pytest.mark.parametrize("index", range(1, len(RUNGS)))
def test_every_rung_passes_the_contract(index):
    """The contract on the smoke preset (the matched ind_p, the built-in's code at another width,
    all but overfitting); the token-level reading, the one new code path at scale, also at the
    cpu preset's size. `validate ladder:lamae` checks every rung in full on both presets."""
    rung = RUNGS[index]
    presets = [(PRESETS["smoke"], rung.matched_field is not None)]
    if rung.settings in ((("la_skip", "true"),), (("la_skip", "true"), ("la_tokens", "lead"))):
        presets.append((PRESETS["cpu"], True))
    for preset, light in presets:
        variant = ladder_methods("ladder:lamae", preset)[index]
        report = validate_method(variant, preset, light=light)
        assert report.method == variant.name
        assert report.passed, (
            f"{variant.name} @ {preset.name}: {[(c.name, c.detail) for c in report.checks if c.status == FAIL]}"
        )
