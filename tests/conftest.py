"""Shared fixtures: strict float64 JAX, a small synthetic market, a hypothesis profile.

JAX is made strict where it can be: implicit rank promotion (adding a (n,) array to an
(n, 1) one by accident) raises instead of broadcasting silently.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

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


def _run_folder(tmp_path_factory) -> Path:
    """This test run's temporary folder, shared by its pytest-xdist workers."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """``name``, a folder in the run's folder that ``build`` fills once per run.

    The first worker to ask builds it while the others wait on a lock (each would
    otherwise build the same files from the same seeds); a build that fails
    leaves no ``.done`` mark, so the next one to ask builds it again."""
    base = _run_folder(tmp_path_factory)
    folder = base / name
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".done").write_text("")
    return folder


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache_in_tmp(tmp_path_factory):
    """adplan commands under test keep compiled programs in a temporary folder,
    never in the user's ~/.cache (subprocesses inherit it). Test processes of one
    run (pytest-xdist workers) share it, as planners' runs share theirs, and so do
    tests that call the library directly (a program one worker compiled, the
    other reads)."""
    from optimizer.devices import use_compilation_cache

    folder = _run_folder(tmp_path_factory) / "jax-cache"
    folder.mkdir(exist_ok=True)
    os.environ["ADPLAN_CACHE_DIR"] = str(folder)
    use_compilation_cache(folder)  # library-level tests share it too, not only CLI runs


@pytest.fixture(scope="session")
def small_market(tmp_path_factory):
    """A 6-audience, 7-day synthetic market written to disk (events, settings, truth);
    built once per run, read-only for tests."""
    from click.testing import CliRunner

    from optimizer.cli import main

    def build(out: Path) -> None:
        result = CliRunner().invoke(
            main,
            [
                *("generate", "--out", str(out / "market")),
                *("--audiences", "6", "--days", "7", "--seed", "3"),
            ],
        )
        assert result.exit_code == 0, result.output

    return _built_once(tmp_path_factory, "small-market", build) / "market"


@pytest.fixture(scope="session")
def trained(small_market, tmp_path_factory):
    """small_market trained by ``adplan train`` (few epochs) and planned once; built
    once per run, read-only for tests."""
    from click.testing import CliRunner

    from optimizer.cli import main

    def build(root: Path) -> None:
        runner = CliRunner()
        model, plan = root / "model", root / "plan"
        result = runner.invoke(
            main,
            [
                *("-q", "train", "--events", str(small_market / "events.csv")),
                *("--out", str(model), "--epochs", "4"),
            ],
            env={"ADPLAN_NO_BACKTEST": None},  # with the band check, as planners run it
        )
        assert result.exit_code == 0, result.output
        args = ["-q", "plan", "--model", str(model), "--budget", "300", "--days", "7"]
        result = runner.invoke(
            main,
            [
                *args,
                *("--audiences", str(small_market / "audiences.csv")),
                *("--out", str(plan)),
            ],
        )
        assert result.exit_code == 0, result.output

    root = _built_once(tmp_path_factory, "pipeline", build)
    return {
        "market": small_market,
        "model": root / "model",
        "plan": root / "plan",
        "root": root,
    }


# Sharding over several emulated devices and multi-process training: run by
# ``make test-devices``, not by ``make test`` (they keep it under 15 minutes).
DEVICE_FILES = {
    "test_distributed.py",
    "test_allocator_sharding.py",
    "test_simulator_sharding.py",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in DEVICE_FILES:
            item.add_marker(pytest.mark.devices)
