"""External encoders as methods (benchmark/method/external.py): every file form, what the suite
feeds them, their identity, the protocols they get, one-line refusals — and the worked
example of docs/methods-and-plugins.md on the PTB-XL sample, run as written."""

from __future__ import annotations

import inspect
import json
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, make_toy_arrays, run_cli
from safetensors.torch import save_file
from scipy.signal import resample_poly
from test_workflow import a_batch, checkpoint_folder
from torch import nn

import ecgbench
from benchmark.cli import main
from benchmark.data.conditioning import resampling_filter
from benchmark.data.contract import LEADS, DataError
from benchmark.eval.protocols.finetune import FinetuneConfig, Recipe
from benchmark.method.external import check_data, check_feedable
from benchmark.method.external_source import EncoderSpec
from benchmark.registry import METHODS
from benchmark.run.build import method_config, resolve_method
from benchmark.run.export import export_encoder
from benchmark.run.presets import PRESETS
from benchmark.train.flops import supervised_step_flops, synthetic_batch

SMOKE = PRESETS["smoke"]  # 100 Hz, 2.5 s windows


class Net(nn.Module):
    def __init__(self, leads=12, width=16):
        super().__init__()
        self.conv = nn.Conv1d(leads, width, 7, padding=3)
        self.head = nn.Linear(width, width)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(-1))


#: the same network in a spec file
NET = "import torch\nfrom torch import nn\n\n\n" + inspect.getsource(Net)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


def spec_file(folder, body: str, name: str = "enc_spec.py"):
    path = folder / name
    path.write_text("from ecgbench import EncoderSpec\n" + NET + body)
    return path


def net(seed: int = 0, leads: int = 12) -> Net:
    torch.manual_seed(seed)
    return Net(leads).eval()


def features(name: str, batch, preset=SMOKE) -> torch.Tensor:
    method = METHODS.get(name)(method_config(name, preset), preset.input).eval()
    with torch.no_grad():
        return method.features(batch.signals, batch.lead_mask)


def toy_batch():
    return a_batch(make_toy_arrays(n_samples=250), 250)


# -- the forms -----------------------------------------------------------------------------------
def test_the_same_weights_in_every_form_give_the_same_features(tmp_path):
    module = net()
    example = torch.zeros(2, 12, 250)
    torch.jit.save(torch.jit.trace(module, example), tmp_path / "traced.pt")
    torch.jit.save(torch.jit.script(module), tmp_path / "scripted.pt")
    batch_dim = torch.export.Dim("batch")
    torch.export.save(torch.export.export(module, (example,), dynamic_shapes={"x": {0: batch_dim}}), tmp_path / "p.pt2")
    torch.save(module.state_dict(), tmp_path / "state.pt")
    save_file(module.state_dict(), tmp_path / "state.safetensors")
    declared = "SPEC = EncoderSpec(fs=100, window_s=2.5)\ndef build():\n    return Net()\n"
    with_state = spec_file(tmp_path, declared + "WEIGHTS = 'state.pt'", "a.py")
    with_safetensors = spec_file(tmp_path, declared + "WEIGHTS = 'state.safetensors'", "b.py")
    names = [
        resolve_method(f"external:{tmp_path / 'traced.pt'}[fs=100,window_s=2.5]").name,
        resolve_method(f"external:{tmp_path / 'scripted.pt'}[fs=100,window_s=2.5]").name,
        resolve_method(f"external:{tmp_path / 'p.pt2'}[fs=100,window_s=2.5]").name,
        resolve_method(f"external:{with_state}").name,
        resolve_method(f"external:{with_safetensors}").name,
    ]
    assert [n.rsplit("-", 1)[0] for n in names] == ["traced", "scripted", "p", "a", "b"]
    assert all(re.fullmatch(r"[a-z_]+-[0-9a-f]{8}", n) for n in names) and len(set(names)) == 5
    batch = toy_batch()
    with torch.no_grad():
        expected = module(batch.signals * batch.lead_mask[:, :, None])
    for name in names:
        assert torch.allclose(features(name, batch), expected, atol=1e-5), name
    assert METHODS.get(names[0]).source.format == "torchscript" and METHODS.get(names[2]).source.format == "export"
    assert METHODS.get(names[3]).source.format == "state_dict"


def test_the_name_is_the_content_hash_not_the_place(tmp_path):
    module = net()
    torch.jit.save(torch.jit.trace(module, torch.zeros(2, 12, 250)), tmp_path / "enc.pt")
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(tmp_path / "enc.pt", tmp_path / "elsewhere" / "enc.pt")
    first = resolve_method(f"external:{tmp_path / 'enc.pt'}[fs=100,window_s=2.5]").name
    assert resolve_method(f"external:{tmp_path / 'elsewhere' / 'enc.pt'}[fs=100,window_s=2.5]").name == first
    assert resolve_method(f"external:{tmp_path / 'enc.pt'}[fs=100,window_s=2.5,name=mine]").name.startswith("mine-")
    torch.jit.save(torch.jit.trace(net(seed=1), torch.zeros(2, 12, 250)), tmp_path / "enc.pt")  # changed weights
    changed = resolve_method(f"external:{tmp_path / 'enc.pt'}[fs=100,window_s=2.5]").name
    assert changed != first and changed.startswith("enc-")
    other_input = resolve_method(f"external:{tmp_path / 'elsewhere' / 'enc.pt'}[fs=100,window_s=2.5,normalise=lead]")
    assert other_input.name != first  # what it is fed is part of what it is
    config = method_config(first, SMOKE)
    assert config.sha256.startswith(first.rsplit("-", 1)[1]) and str(tmp_path) not in json.dumps(
        config.__dict__, default=str
    )


def test_an_export_encoder_folder_is_an_external_encoder(tmp_path):
    folder, _ = checkpoint_folder(tmp_path)
    export_encoder(folder, tmp_path / "encoder")
    name = resolve_method(f"external:{tmp_path / 'encoder'}").name
    method_cls = METHODS.get(name)
    assert name.startswith("encoder-") and method_cls.source.format == "ecgbench"
    assert "attention_probe" in method_cls.evaluations  # the exported method's tokens
    batch = toy_batch()
    loaded = ecgbench.load_encoder(tmp_path / "encoder")
    with torch.no_grad():
        assert torch.allclose(features(name, batch), loaded(batch.signals, batch.lead_mask, fs=100), atol=1e-6)
    method = method_cls(method_config(name, SMOKE), SMOKE.input)
    inner = loaded.method
    for parameter_name, _ in method.named_parameters():  # the exported method's own layer ids
        assert method.layer_id(parameter_name) == inner.layer_id(parameter_name.removeprefix("encoder.method."))
    assert method.pretraining_only and all(p.startswith("encoder.method.") for p in method.pretraining_only)


def test_a_plain_callable_is_evaluated_by_the_frozen_probes_only(tmp_path):
    path = spec_file(
        tmp_path, "SPEC = EncoderSpec(fs=100, window_s=2.5)\ndef build():\n    return lambda x: x.std(-1)\n"
    )
    name = resolve_method(f"external:{path}").name
    assert METHODS.get(name).evaluations == frozenset({"linear"})
    batch = toy_batch()
    expected = (batch.signals * batch.lead_mask[:, :, None]).std(-1)
    assert torch.allclose(features(name, batch), expected)
    with pytest.raises(DataError, match="without parameters cannot be fine-tuned"):
        check_feedable(METHODS.get(name), 100, ["linear", "finetune"])


# -- what the suite feeds --------------------------------------------------------------------------
def recording_encoder(tmp_path, spec: str, name: str = "rec.py"):
    """An external encoder that returns its whole input, flattened, so tests can see it."""
    body = f"SPEC = EncoderSpec({spec})\ndef build():\n    return lambda *args: args[0].flatten(1) if len(args) == 1 else torch.cat([args[0].flatten(1), args[1].float()], 1)\n"
    return METHODS.get(resolve_method(f"external:{spec_file(tmp_path, body, name)}").name)


def fed(method_cls, batch, preset=SMOKE) -> torch.Tensor:
    method = method_cls(method_config(method_cls.name, preset), preset.input)
    with torch.no_grad():
        return method.features(batch.signals, batch.lead_mask)


def test_the_suite_feeds_the_declared_leads_units_rate_and_normalisation(tmp_path):
    batch = toy_batch()
    signals = (batch.signals * batch.lead_mask[:, :, None]).numpy()
    order = ("v1", "I", "AVF")  # any case, any order
    index = [LEADS.index("V1"), LEADS.index("I"), LEADS.index("aVF")]

    leads_uv = recording_encoder(tmp_path, f"fs=100, window_s=2.5, leads={order!r}, units='uV'", "a.py")
    assert np.allclose(fed(leads_uv, batch).reshape(8, 3, 250), 1000 * signals[:, index], atol=1e-3)

    half_rate = recording_encoder(tmp_path, "fs=50, window_s=2.0", "b.py")  # 2 s at 50 Hz from 100 Hz
    window = a_batch(make_toy_arrays(n_samples=250), 200)  # the suite crops its 2 s at 100 Hz
    expected = resample_poly(
        window.signals.numpy() * window.lead_mask[:, :, None].numpy(), 1, 2, axis=2, window=resampling_filter(1, 2)
    )
    assert np.allclose(fed(half_rate, window).reshape(8, 12, 100), expected, atol=1e-5)

    z_lead = recording_encoder(tmp_path, "fs=100, window_s=2.5, normalise='lead', lead_mask=True", "c.py")
    out = fed(z_lead, batch)
    x, mask = out[:, : 12 * 250].reshape(8, 12, 250), out[:, 12 * 250 :].bool()
    assert torch.equal(mask, batch.lead_mask)  # declared lead_mask: the module gets the mask too
    assert torch.allclose(x[mask].mean(-1), torch.zeros(()), atol=1e-5) and torch.allclose(
        x[mask].std(-1), torch.ones(()), atol=1e-4
    )
    assert torch.equal(x[~mask], torch.zeros_like(x[~mask]))  # absent leads stay zero


def test_what_the_data_cannot_provide_is_refused(tmp_path):
    recorder = recording_encoder(tmp_path, "fs=500, window_s=2.5", "a.py")
    with pytest.raises(
        DataError, match=r"takes 500 Hz but the data are prepared at 100 Hz; run with --set input.fs=500"
    ):
        check_feedable(recorder, 100, ["linear"])
    arrays = make_toy_arrays(n_samples=250)
    arrays.lead_mask[:, LEADS.index("V6")] = False
    long_window = recording_encoder(tmp_path, "fs=100, window_s=5", "b.py")
    with pytest.raises(DataError, match="takes 5 s windows but the records of toy are 2.5 s long"):
        check_data(long_window, arrays)
    v6 = recording_encoder(tmp_path, "fs=100, window_s=2.5, leads=('I', 'V6')", "c.py")
    with pytest.raises(DataError, match="takes V6, which no record of toy has"):
        check_data(v6, arrays)
    with pytest.raises(DataError, match="the attention probe reads tokens"):
        check_feedable(v6, 100, ["attention_probe"])
    with pytest.raises(ValueError, match="leads V7: the data cannot provide them"):
        EncoderSpec(fs=100, window_s=2.5, leads=("I", "V7"))
    with pytest.raises(ValueError, match="units must be one of"):
        EncoderSpec(fs=100, window_s=2.5, units="mv")


# -- protocols -----------------------------------------------------------------------------------------
def test_fine_tuning_uses_the_recipe_of_pretrained_encoders_and_the_spec_layer_ids(tmp_path):
    body = "SPEC = EncoderSpec(fs=100, window_s=2.5)\ndef build():\n    torch.manual_seed(0)\n    return Net()\n"
    plain = METHODS.get(resolve_method(f"external:{spec_file(tmp_path, body, 'a.py')}").name)
    layered = body + "def layer_id(name):\n    return 0 if name.startswith('conv') else 1\n"
    with_ids = METHODS.get(resolve_method(f"external:{spec_file(tmp_path, layered, 'b.py')}").name)
    for method_cls in (plain, with_ids):
        assert method_cls.pretrained_elsewhere and not method_cls.pretrains and not method_cls.supervised_only()
        method = method_cls(method_config(method_cls.name, SMOKE), SMOKE.input)
        recipe = Recipe.of(FinetuneConfig(), method)
        assert recipe.pretrained and recipe.head_init == "linear_probe" and recipe.optim.layer_decay == 0.75
    method = with_ids(method_config(with_ids.name, SMOKE), SMOKE.input)
    assert {n: method.layer_id(n) for n, _ in method.named_parameters()} == {
        "encoder.conv.weight": 0,
        "encoder.conv.bias": 0,
        "encoder.head.weight": 1,
        "encoder.head.bias": 1,
    }
    assert plain(method_config(plain.name, SMOKE), SMOKE.input).num_layers == 1  # one layer below the head


def test_a_non_finite_output_on_real_data_stops_evaluation_but_is_a_divergence_in_training(tmp_path):
    body = (
        "SPEC = EncoderSpec(fs=100, window_s=2.5)\n"
        "def build():\n    return lambda x: torch.where(x.abs().amax(-1) > 5, float('nan'), x.mean(-1))\n"
    )
    method_cls = METHODS.get(resolve_method(f"external:{spec_file(tmp_path, body)}").name)  # the probe is fine
    method = method_cls(method_config(method_cls.name, SMOKE), SMOKE.input).eval()
    batch = toy_batch()
    batch.signals[3, 0, 100] = 9.0  # a 9 mV spike
    with pytest.raises(DataError, match="returned non-finite values"):
        method.features(batch.signals, batch.lead_mask)
    assert torch.isnan(method.train().features(batch.signals, batch.lead_mask)[3]).any()  # the loss check's case


def test_a_plugin_with_weights_from_elsewhere_gets_the_pretrained_recipe_and_unknown_compute():
    from benchmark.method.base import Method
    from benchmark.method.external import external_pretraining

    class Loaded(Method):  # a plugin that loads weights trained elsewhere in its __init__
        pretrains = False
        pretrained_elsewhere = True

    assert not Loaded.supervised_only() and external_pretraining(Loaded) == {"external": True, "compute": "unknown"}


def test_torchscript_flops_are_counted_at_the_dispatcher_like_the_python_form(tmp_path):
    module = net()
    torch.jit.save(torch.jit.trace(module, torch.zeros(2, 12, 250)), tmp_path / "enc.pt")
    torch.save(module.state_dict(), tmp_path / "state.pt")
    body = "SPEC = EncoderSpec(fs=100, window_s=2.5)\nWEIGHTS = 'state.pt'\ndef build():\n    return Net()\n"
    counted = []
    for text in (f"external:{tmp_path / 'enc.pt'}[fs=100,window_s=2.5]", f"external:{spec_file(tmp_path, body)}"):
        method_cls = METHODS.get(resolve_method(text).name)
        method = method_cls(method_config(method_cls.name, SMOKE), SMOKE.input)
        counted.append(supervised_step_flops(method, synthetic_batch(method, 2), 5))
    assert counted[0] == counted[1] > 3 * 2 * 2 * 16 * 12 * 7 * 250  # at least the convolution


# -- one-line refusals ----------------------------------------------------------------------------
def refused(tmp_path, capsys, methods: str, *extra: str) -> str:
    out = tmp_path / "out"
    code = main(["run", "--methods", methods, "--preset", "smoke", "--results", str(out), "--no-progress", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert not [p for p in out.rglob("*") if p.is_file()]  # nothing written
    return err[0]


def test_bad_external_encoders_are_one_line_refusals_and_nothing_is_written(tmp_path, capsys):
    module = net()
    torch.jit.save(torch.jit.trace(module, torch.zeros(2, 12, 250)), tmp_path / "enc.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "enc.pt").read_bytes()[:400])
    torch.save(module.state_dict(), tmp_path / "state.pt")
    tokens = tmp_path / "tokens.py"
    tokens.write_text(
        "from ecgbench import EncoderSpec\nSPEC = EncoderSpec(fs=100, window_s=2.5)\n"
        "def build():\n    return lambda x: x.transpose(1, 2)\n"
    )
    nan = tmp_path / "nan.py"
    nan.write_text(
        "from ecgbench import EncoderSpec\nSPEC = EncoderSpec(fs=100, window_s=2.5)\n"
        "def build():\n    return lambda x: x.mean(-1) / 0 * 0\n"
    )
    unseeded = spec_file(tmp_path, "SPEC = EncoderSpec(fs=100, window_s=2.5)\ndef build():\n    return Net()\n")
    cases = {
        f"external:{tmp_path / 'missing.pt'}[fs=100,window_s=2.5]": "missing.pt does not exist",
        f"external:{truncated}[fs=100,window_s=2.5]": "truncated.pt is not a complete TorchScript file",
        f"external:{tmp_path / 'state.pt'}": "state.pt is a state_dict, which holds weights but no module; write a spec file",
        f"external:{tmp_path / 'enc.pt'}": "declare its input, e.g. 'external:",
        f"external:{tmp_path / 'enc.pt'}[fs=100,window_s=2.5,leads=I,V7]": "leads V7: the data cannot provide them",
        f"external:{tokens}": "returned (2, 250, 12) for a batch of 2; it must return (batch, features); declare output='tokens'",
        f"external:{nan}": "returned non-finite values",
        f"external:{unseeded}": "build() gives other weights each time it is called",
        f"external:{tmp_path / 'enc.pt'}[fs=500,window_s=2.5]": "the data are prepared at 100 Hz",
    }
    for methods, message in cases.items():
        assert message in refused(tmp_path, capsys, methods, "--protocols", "linear"), methods
    scripted_fails = tmp_path / "bad.pt"
    torch.jit.save(torch.jit.trace(net(leads=6), torch.zeros(2, 6, 250)), scripted_fails)  # takes 6 leads
    line = refused(tmp_path, capsys, f"external:{scripted_fails}[fs=100,window_s=2.5]", "--protocols", "linear")
    assert "fails on a batch of its declared input (2, 12, 250)" in line


def test_an_external_result_has_no_encoder_to_export_and_compare_knows_its_name(tmp_path, capsys):
    torch.jit.save(torch.jit.trace(net(), torch.zeros(2, 12, 250)), tmp_path / "enc.pt")
    out = tmp_path / "out"
    methods = f"external:{tmp_path / 'enc.pt'}[fs=100,window_s=2.5]"
    args = ["run", "--methods", methods, "--preset", "smoke", "--protocols", "linear", "--no-progress"]
    assert main([*args, "--results", str(out), "--seeds", "2", "--no-references"]) == 0
    name = resolve_method(methods).name
    record = json.loads((out / f"synthetic/conditions/smoke/{name}/linear_seed0.json").read_text())
    assert record["compute"]["pretrain"]["external"] and record["compute"]["pretrain"]["compute"] == "unknown"
    assert record["config"]["pretrain"] is None and record["config"]["method_config"]["sha256"].startswith(name[-8:])
    capsys.readouterr()
    assert (
        main(
            [
                "export-encoder",
                str(out / f"synthetic/conditions/smoke/{name}/linear_seed0.json"),
                "--to",
                str(tmp_path / "e"),
            ]
        )
        == 2
    )
    assert "is an external encoder; its weights are the file it was evaluated from" in capsys.readouterr().err
    assert main(["compare", name, "lamae", "--results", str(out)]) == 2  # its name is known from the results
    assert f"no comparable results of both {name} and lamae" in capsys.readouterr().err


# -- the worked example of docs/methods-and-plugins.md ------------------------------------------------
def guide_section() -> str:
    """The section 'Evaluate your own encoder' of docs/methods-and-plugins.md, up to the next one."""
    text = (REPO / "docs" / "methods-and-plugins.md").read_text()
    start = text.index("\n## Evaluate your own encoder\n")
    return text[start:].split("\n## ", 2)[1]


@pytest.mark.slow
def test_the_guides_worked_example_on_ptbxl(shared_data, tmp_path):
    """The section's commands, run as written (paths moved to tmp_path): the TorchScript and
    state_dict forms of one encoder share the references' tables with the same results, fine-tune
    with the recipe of pretrained encoders, and changed weights are new results."""
    example = shutil.copytree(REPO / "examples" / "external_encoder", tmp_path / "example")
    out, cache = tmp_path / "runs", tmp_path / "cache"
    commands = [
        line.strip().rstrip("\\").strip()
        for block in re.findall(r"```bash\n(.*?)```", guide_section(), re.DOTALL)
        for line in block.replace("\\\n", " ").splitlines()
        if line.strip().startswith("python")
    ]
    assert len(commands) >= 3, commands

    def run(command: str) -> subprocess.CompletedProcess:
        command = command.replace("examples/external_encoder", str(example)).replace("runs/external", str(out))
        args = shlex.split(command.replace("../shared/data", str(shared_data)), comments=True)[1:]
        if args[:2] == ["-m", "benchmark"]:
            return run_cli(*args[2:], "--cache-dir", str(cache), "--no-progress")
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=300)

    made = run(commands[0])
    assert made.returncode == 0, made.stderr
    first = run(commands[1])
    assert first.returncode == 0, first.stderr
    records = [json.loads(p.read_text()) for p in out.rglob("*_seed0.json")]
    by_method = {(r["cell"]["method"], r["cell"]["protocol"]): r for r in records}
    external = sorted({m for (m, p), r in by_method.items() if p == "linear" and r["compute"]["pretrain"]})
    assert len(external) == 2 and {m.rsplit("-", 1)[0] for m in external} == {"my_cnn", "my_encoder"}
    assert {m for m, p in by_method if p == "linear"} >= {*external, "random_init", "ecg_features"}
    assert {m for m, p in by_method if p == "finetune"} >= {*external, "scratch", "xresnet1d"}
    for protocol in ("linear", "finetune"):
        scores = [
            np.load(out / "ptbxl/superdiagnostic/smoke" / m / f"{protocol}_seed0.preds.npz")["y_score"]
            for m in external
        ]
        assert np.allclose(*scores, atol=1e-4), protocol  # TorchScript and state_dict: one encoder
    for method in external:
        details = by_method[(method, "finetune")]["details"]
        # LP-FT, the recipe of pretrained encoders
        assert details["initialisation"] == "pretrained" and details["recipe"]["head_init"] == "linear_probe"
        assert "probe_l2" in details
    board = (tmp_path / "runs.md").read_text()
    linear_table = board[board.index("· linear") :]
    assert all(f"| {m} " in linear_table for m in (*external, "random_init", "ecg_features"))
    assert "external, unknown" in board

    again = run(commands[1])
    assert again.returncode == 0 and "finished already, 0 to run" in again.stderr
    changed = run(commands[2])  # other weights
    assert changed.returncode == 0, changed.stderr
    rerun = run(commands[1])
    assert rerun.returncode == 0 and "finished already, 4 to run" in rerun.stderr  # new results, old ones kept
    methods = {p.parent.name for p in out.rglob("linear_seed0.json")}
    assert len([m for m in methods if m.startswith(("my_cnn-", "my_encoder-"))]) == 4


@pytest.mark.slow
def test_a_tokens_encoder_runs_every_protocol_of_pretrained_encoders(tmp_path):
    """Attention probe, label efficiency and reduced leads on an encoder of 4 leads at 50 Hz that
    returns tokens (the smoke preset's sweeps: 10/50/100 % x 2 subsets, all / I+II / I)."""
    body = (
        "SPEC = EncoderSpec(fs=50, window_s=2.0, leads=('I', 'II', 'V1', 'V2'), output='tokens')\n"
        "def build():\n    torch.manual_seed(0)\n    return nn.Conv1d(4, 16, 10, stride=10)\n"
    )
    path = spec_file(tmp_path, body)
    protocols = "attention_probe,label_efficiency,reduced_leads"
    args = ["run", "--methods", f"external:{path}", "--preset", "smoke", "--protocols", protocols, "--no-references"]
    assert main([*args, "--results", str(tmp_path / "out"), "--no-progress"]) == 0
    name = resolve_method(f"external:{path}").name
    files = sorted(p.name for p in (tmp_path / "out" / "synthetic/conditions/smoke" / name).glob("*.json"))
    assert files == sorted(
        ["attention_probe_seed0.json", "finetune_seed0.json", "linear_seed0.json"]
        + [f"{p}_n{n}pct-s{s}_seed0.json" for p in ("linear", "finetune") for n in (10, 50) for s in (0, 1)]
        + ["linear_leads-I+II_seed0.json", "linear_leads-I_seed0.json"]
    )
    probe = json.loads(
        (tmp_path / "out" / "synthetic/conditions/smoke" / name / "attention_probe_seed0.json").read_text()
    )
    assert probe["details"]["tokens"] == 16 and probe["details"]["width"] == 10  # Conv1d: (batch, 16, 10)
