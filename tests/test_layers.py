"""The package's floors: every import runs down (or sideways), never up.

ground (config, registry, storage, provenance, rng) → data → nn → method → train → eval → run →
report → cli. A module may import its own floor and the floors below it. ``ecgbench`` (the
plugin API) stands on the method floor: importing it loads the contract and the building blocks,
never the training, evaluation, run or report code.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ("ground", "data", "nn", "method", "train", "eval", "run", "report", "cli")
GROUND = {
    "benchmark",
    "benchmark.config",
    "benchmark.registry",
    "benchmark.storage",
    "benchmark.provenance",
    "benchmark.rng",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    files = [*ROOT.glob("benchmark/**/*.py"), *ROOT.glob("ecgbench/*.py")]
    return {module_name(path): path for path in files}


def floor(module: str) -> int:
    """The floor of a module of ``benchmark`` or ``ecgbench``."""
    if module == "ecgbench" or module.startswith("ecgbench."):
        return FLOORS.index("method")
    if module in GROUND:
        return FLOORS.index("ground")
    if module == "benchmark.__main__":
        return FLOORS.index("cli")
    package = module.split(".")[1]
    assert package in FLOORS, f"{module} is on no floor; add its package to FLOORS (tests/test_layers.py)"
    return FLOORS.index(package)


def imported(path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """Every module of the project that ``path`` imports, anywhere in the file, with the line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:  # ``from benchmark import rng`` imports the module benchmark.rng
                child = f"{node.module}.{alias.name}"
                found.append((child if child in known else node.module, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] in ("benchmark", "ecgbench")]


def test_every_import_runs_down_the_floors():
    known = modules()
    upward = []
    for name, path in sorted(known.items()):
        for target, line in imported(path, known):
            if floor(target) > floor(name):
                upward.append(
                    f"{path.relative_to(ROOT)}:{line} ({FLOORS[floor(name)]}) imports {target} ({FLOORS[floor(target)]})"
                )
    assert not upward, "imports running up the floors:\n" + "\n".join(upward)


def test_the_floor_check_sees_an_upward_import(tmp_path):
    """The check itself: a data module importing the runner is caught."""
    module = tmp_path / "benchmark" / "data" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from benchmark.run.runner import run\n")
    targets = imported(module, {"benchmark.run.runner": module})
    assert targets == [("benchmark.run.runner", 2)]
    assert floor(targets[0][0]) > floor("benchmark.data.bad")


def test_importing_ecgbench_loads_no_train_eval_or_report_module():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import ecgbench"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    loaded = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line]
    assert "ecgbench" in loaded
    heavy = [
        m for m in loaded if m.startswith(("benchmark.report", "benchmark.train", "benchmark.eval", "benchmark.run"))
    ]
    assert not heavy, f"import ecgbench loads {', '.join(heavy)}"
