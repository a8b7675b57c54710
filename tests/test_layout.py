"""The folder tree is the pipeline: imports run one way, modules stay small.

Stages in pipeline order (a module may import its own stage and earlier ones):
io -> log -> features -> rates | market -> allocate -> plan -> simulations -> commands -> cli.
``rates`` and ``market`` are parallel branches fitted from the same log: neither
imports the other. ``errors``, ``devices`` and ``distributed`` are the floor every
stage may stand on. ``allocate`` is pure JAX (no pandas, no files); nothing but
``cli`` imports ``commands``; the report reads files through ``io`` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("optimizer", "simulations", "reports")
FLOOR = {"optimizer", "optimizer.errors", "optimizer.devices", "optimizer.distributed"}
RANK = {
    "optimizer.io": 0,
    "optimizer.log": 1,
    "optimizer.features": 2,
    "optimizer.rates": 3,
    "optimizer.market": 3,
    "optimizer.allocate": 4,
    "optimizer.plan": 5,
    "simulations": 6,
    "reports": 6,
    "optimizer.commands": 7,
    "optimizer.cli": 8,
}
PARALLEL = {
    ("optimizer.market", "optimizer.rates"),
    ("optimizer.rates", "optimizer.market"),
}
# Third-party or standard modules a stage must not use, by stage.
FORBIDDEN = {"optimizer.allocate": {"pandas", "pathlib", "pyarrow", "json", "tomllib"}}
MAX_LINES = 450
MAX_TOP_LEVEL = 6


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module name imported anywhere in the file (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _stage(name: str) -> str | None:
    """The stage a dotted name belongs to (longest matching prefix), None for the floor."""
    if name in FLOOR or name.startswith("optimizer.__"):
        return None
    for stage in sorted(RANK, key=len, reverse=True):
        if name == stage or name.startswith(stage + "."):
            return stage
    return None


def violations(modules: dict[str, Path]) -> list[str]:
    """Every import that runs against the pipeline, as 'importer -> imported: why'."""
    found = []
    for name, path in modules.items():
        here = _stage(name)
        for target in sorted(_imports(path)):
            top = target.split(".")[0]
            if here and top in FORBIDDEN.get(here, ()):
                found.append(f"{name} -> {target}: {here} must not use {top}")
            there = _stage(target)
            if here is None and name in FLOOR and there is not None:
                found.append(f"{name} -> {target}: the floor imports no stage")
            if here is None or there is None or here == there:
                continue
            if (here, there) in PARALLEL:
                found.append(f"{name} -> {target}: {here} and {there} are parallel")
            elif RANK[there] > RANK[here]:
                found.append(f"{name} -> {target}: imports a later stage ({there})")
            elif there == "optimizer.commands" and here != "optimizer.cli":
                found.append(f"{name} -> {target}: only cli imports commands")
            elif here == "reports" and there != "optimizer.io":
                found.append(f"{name} -> {target}: the report reads files through io")
    return found


def test_imports_run_down_the_pipeline():
    assert violations(_modules()) == []


def test_the_check_catches_a_violation(tmp_path):
    """A scratch module of the market stage importing the rate network is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("import pandas\nfrom optimizer.rates.model import RateNetwork\n")
    assert violations({"optimizer.market.bad": bad}) == [
        "optimizer.market.bad -> optimizer.rates.model: optimizer.market and "
        "optimizer.rates are parallel",
        "optimizer.market.bad -> optimizer.rates.model.RateNetwork: optimizer.market "
        "and optimizer.rates are parallel",
    ]
    worse = tmp_path / "worse.py"
    worse.write_text("import pandas\nfrom optimizer.commands import train\n")
    assert len(violations({"optimizer.allocate.worse": worse})) == 3


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_is_small(name):
    lines = len(_modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines (at most {MAX_LINES})"


def test_few_files_directly_in_optimizer():
    files = sorted(p.name for p in (ROOT / "optimizer").glob("*.py"))
    assert len(files) <= MAX_TOP_LEVEL, files


def test_every_stage_folder_says_its_job():
    for package in PACKAGES:
        for folder in [ROOT / package, *(ROOT / package).iterdir()]:
            if not folder.is_dir() or not any(folder.glob("*.py")):
                continue
            init = folder / "__init__.py"
            assert init.exists(), f"{folder} has no __init__.py"
            doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
            assert doc and len(doc) > 20, f"{init} needs a docstring naming its job"
