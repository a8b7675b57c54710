"""Shared fixtures: strict float64 JAX, a small synthetic market, a hypothesis profile.

JAX is made strict where it can be: implicit rank promotion (adding a (n,) array to an
(n, 1) one by accident) raises instead of broadcasting silently.
"""

from __future__ import annotations

import os

import jax
import pytest
from hypothesis import settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
# adplan train's held-out band check costs a second training: tests that train only
# to get a model skip it; the shared ``trained`` model and the backtest tests run it.
os.environ["ADPLAN_NO_BACKTEST"] = "1"


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache_in_tmp(tmp_path_factory):
    """adplan commands under test keep compiled programs in a temporary folder,
    never in the user's ~/.cache (subprocesses inherit it). Test processes of one
    run (pytest-xdist workers) share it, as planners' runs share theirs."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above each worker's own
    folder = base / "jax-cache"
    folder.mkdir(exist_ok=True)
    os.environ["ADPLAN_CACHE_DIR"] = str(folder)


@pytest.fixture(scope="session")
def small_market(tmp_path_factory):
    """A 6-audience, 7-day synthetic market written to disk (events, settings, truth)."""
    from click.testing import CliRunner

    from optimizer.cli import main

    out = tmp_path_factory.mktemp("market")
    result = CliRunner().invoke(
        main,
        [
            "generate",
            "--out",
            str(out),
            "--audiences",
            "6",
            "--days",
            "7",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def trained(small_market, tmp_path_factory):
    """small_market trained by ``adplan train`` (few epochs) and planned once."""
    from click.testing import CliRunner

    from optimizer.cli import main

    root = tmp_path_factory.mktemp("pipeline")
    runner = CliRunner()
    model, plan = root / "model", root / "plan"
    result = runner.invoke(
        main,
        [
            "-q",
            "train",
            "--events",
            str(small_market / "events.csv"),
            "--out",
            str(model),
            "--epochs",
            "4",
        ],
        env={"ADPLAN_NO_BACKTEST": None},  # with the band check, as a planner runs it
    )
    assert result.exit_code == 0, result.output
    args = ["-q", "plan", "--model", str(model), "--budget", "300", "--days", "7"]
    result = runner.invoke(
        main,
        [*args, "--audiences", str(small_market / "audiences.csv"), "--out", str(plan)],
    )
    assert result.exit_code == 0, result.output
    return {"market": small_market, "model": model, "plan": plan, "root": root}
