"""The plugin registry: discovery from three sources, clear errors, isolation of broken plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pytest
from conftest import REPO, run_cli

from benchmark.registry import DATASETS, METHODS, PROTOCOLS, PluginError, Registry, load_plugin_file


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    """A fresh registry over a temporary package holding one good and one broken plugin."""
    holder = types.ModuleType("fake_registry_holder")
    holder.REG = Registry("thing", "fake_things_pkg", "ecgbench.test_things")
    monkeypatch.setitem(sys.modules, "fake_registry_holder", holder)
    package = tmp_path / "fake_things_pkg"
    package.mkdir()
    (package / "good.py").write_text(
        textwrap.dedent("""
        from fake_registry_holder import REG
        @REG.register("good_thing")
        class Good:
            summary = "works"
    """)
    )
    (package / "broken.py").write_text("import this_module_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return holder.REG, tmp_path


def test_broken_plugin_is_reported_without_breaking_the_others(plugin_package):
    registry, _ = plugin_package
    assert registry.names() == ["good_thing"]
    assert [b.source for b in registry.broken] == ["fake_things_pkg.broken"]
    assert "ModuleNotFoundError" in registry.broken[0].error
    with pytest.raises(PluginError, match="fake_things_pkg.broken"):
        registry.get("missing")


def test_entry_point_plugins_are_discovered(plugin_package):
    registry, root = plugin_package
    (root / "ep_thing.py").write_text(
        textwrap.dedent("""
        from fake_registry_holder import REG
        @REG.register("from_entry_point")
        class FromEntryPoint:
            summary = "installed by a third-party distribution"
    """)
    )
    dist = root / "third_party_thing-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: third-party-thing\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ecgbench.test_things]\nfrom_entry_point = ep_thing\n")
    assert "from_entry_point" in registry.names()


def test_unknown_name_suggests_close_matches():
    with pytest.raises(PluginError, match="did you mean 'lamae'"):
        METHODS.get("lamea")
    with pytest.raises(PluginError, match="Valid methods: .*ind_p.*lamae"):
        METHODS.get("nothing_like_it")


def test_builtin_plugins_of_every_kind_are_registered():
    assert {"lamae", "ind_p", "random_init", "scratch"} <= set(METHODS.names())
    assert {"linear", "finetune"} <= set(PROTOCOLS.names())
    assert "synthetic" in DATASETS.names()
    assert not METHODS.broken and not DATASETS.broken and not PROTOCOLS.broken


def test_duplicate_name_from_another_file_is_refused(tmp_path):
    plugin = tmp_path / "impostor.py"
    plugin.write_text(
        textwrap.dedent("""
        from benchmark.registry import METHODS
        from benchmark.method.base import Method
        @METHODS.register("lamae")
        class Impostor(Method):
            pass
    """)
    )
    with pytest.raises(PluginError, match="already registered"):
        load_plugin_file(plugin)
    assert METHODS.get("lamae").__module__ == "ecgbench_methods.lamae"


@pytest.mark.parametrize(("registry", "base"), [("METHODS", "ecgbench.Method"), ("DATASETS", "ecgbench.DatasetPlugin")])
def test_a_class_that_does_not_subclass_the_base_is_refused_at_registration(tmp_path, registry, base):
    plugin = tmp_path / f"not_a_{registry.lower()}.py"
    plugin.write_text(
        textwrap.dedent(f"""
        from ecgbench import {registry}
        @{registry}.register("not_a_plugin")
        class NotAPlugin:
            pass
    """)
    )
    with pytest.raises(PluginError, match=f"does not subclass {base}") as refused:
        load_plugin_file(plugin)
    assert "\n" not in str(refused.value) and f"import {base.rsplit('.', 1)[1]}" in str(refused.value)
    assert "not_a_plugin" not in {"METHODS": METHODS, "DATASETS": DATASETS}[registry]


def test_plugin_file_must_register_something(tmp_path):
    plugin = tmp_path / "empty_plugin.py"
    plugin.write_text("X = 1\n")
    with pytest.raises(PluginError, match=r"registered nothing.*\(from ecgbench import METHODS\)"):
        load_plugin_file(plugin)  # plugins import from ecgbench, never benchmark.*


def test_plugin_file_on_the_command_line_is_listed(tmp_path):
    plugin = tmp_path / "my_method.py"
    plugin.write_text(
        textwrap.dedent("""
        from ecgbench import METHODS
        from ecgbench_methods.lamae import LAMAE

        @METHODS.register("my_lamae_variant")
        class MyVariant(LAMAE):
            summary = "a third-party variant, loaded from a file"
    """)
    )
    result = run_cli("list", "--plugin", str(plugin))
    assert result.returncode == 0, result.stderr
    assert "my_lamae_variant" in result.stdout and "loaded from a file" in result.stdout


def test_validating_a_plugin_file_without_a_method_names_the_plugin_api(tmp_path):
    """A file that registers only a dataset is not a method: the one-line error says how to
    register one, importing from ecgbench (the plugin API), never from benchmark.*."""
    plugin = tmp_path / "only_a_dataset.py"
    plugin.write_text(
        textwrap.dedent("""
        from ecgbench import DATASETS, DatasetPlugin

        @DATASETS.register("readme23_only_a_dataset")
        class OnlyADataset(DatasetPlugin):
            pass
    """)
    )
    result = run_cli("validate", str(plugin))
    assert result.returncode == 2, result.stderr
    assert "registers no method" in result.stderr and "(from ecgbench import METHODS)" in result.stderr


def test_datasets_folder_does_not_shadow_hugging_face_datasets():
    """Our top-level datasets/ folder has no __init__.py, so the installed HF package wins,
    both when Python runs from the repository root and inside this pytest process."""
    pytest.importorskip("datasets", reason="Hugging Face datasets is part of the [test] extra")
    import datasets

    assert hasattr(datasets, "load_dataset"), datasets.__file__
    code = "import datasets, sys; print(datasets.__file__); sys.exit(0 if hasattr(datasets, 'load_dataset') else 1)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "site-packages" in result.stdout
    assert not (REPO / "datasets" / "__init__.py").exists()
