"""Golden outputs: a small pipeline at a fixed seed must reproduce the stored files.

A refactor that moves code must leave every number where it was. The stored files in
``tests/golden/`` were written by this test with ``ADPLAN_UPDATE_GOLDEN=1``; rewrite them
only for a change that is meant to move numbers, and say so in the commit.
Text fields must match exactly; numbers to 1e-9 relative (sums reordered by a refactor).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main

GOLDEN = Path(__file__).parent / "golden"
SCENARIOS = Path(__file__).parent.parent / "simulations" / "scenarios"
# Fields that legitimately differ between runs: clocks, paths (also any key ending
# in _dir or _file), library versions.
VOLATILE = {"created", "versions", "paths", "path", "files", "elapsed_s", "seconds"}
RTOL = 1e-9


def _run(args: list[str]) -> None:
    result = CliRunner().invoke(main, ["-q", *args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict[str, Path]:
    """generate -> train -> plan -> simulate -> whatif -> frontier, seed 5."""
    root = tmp_path_factory.mktemp("golden")
    market, model, plan = root / "market", root / "model", root / "plan"
    _run(
        [
            "generate",
            "--out",
            str(market),
            "--audiences",
            "5",
            "--days",
            "6",
            "--seed",
            "5",
        ]
    )
    _run(["train", "--events", str(market / "events.csv"), "--out", str(model),
          "--epochs", "3", "--seed", "5"])  # fmt: skip
    _run(["plan", "--model", str(model), "--budget", "250", "--days", "7",
          "--audiences", str(market / "audiences.csv"), "--out", str(plan),
          "--flat-bids"])  # fmt: skip
    _run(["simulate", "--model", str(model), "--plan", str(plan), "--runs", "20",
          "--seed", "5", "--out", str(root / "sim")])  # fmt: skip
    _run(["whatif", "--model", str(model), "--plan", str(plan),
          "--scenario", str(SCENARIOS / "budget_plus_20.toml"),
          "--scenario", str(SCENARIOS / "prices_plus_15.toml"),
          "--out", str(root / "whatif")])  # fmt: skip
    _run(["frontier", "--model", str(model), "--budgets", "100:400:4", "--days", "7",
          "--plan", str(plan), "--out", str(root / "frontier")])  # fmt: skip
    return {
        "market.json": model / "market.json",
        "plan.csv": plan / "plan.csv",
        "plan.json": plan / "plan.json",
        "summary.csv": root / "sim" / "summary.csv",
        "comparison.csv": root / "whatif" / "comparison.csv",
        "frontier.csv": root / "frontier" / "frontier.csv",
    }


def _same(got, want, where: str) -> None:
    """Recursive comparison: exact for text, RTOL for numbers, volatile keys skipped."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for key in want:
            if key not in VOLATILE and not key.endswith(("_dir", "_file")):
                _same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and isinstance(got, int | float):
        ok = (math.isnan(want) and math.isnan(got)) or math.isclose(
            got, want, rel_tol=RTOL, abs_tol=1e-12
        )
        assert ok, f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _load(path: Path):
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    frame = pd.read_csv(path, keep_default_na=False)
    return {"columns": list(frame.columns), "rows": frame.to_dict(orient="records")}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["market.json", "plan.csv", "plan.json", "summary.csv", "comparison.csv",
     "frontier.csv"],
)  # fmt: skip
def test_pipeline_matches_golden(pipeline, name):
    produced = pipeline[name]
    stored = GOLDEN / name
    if os.environ.get("ADPLAN_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        shutil.copyfile(produced, stored)
    _same(_load(produced), _load(stored), name)
