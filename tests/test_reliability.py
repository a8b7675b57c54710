"""Disk faults and killed runs never cost a planner their work (issue #20, points 1-2).

Every command that writes is swept over a read-only, a full and a missing output
location: exit code 1, one clear line, no traceback, nothing written. Atomic
folders are proven with real kills (SIGKILL, SIGTERM, SIGINT) at each step.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.io import atomic
from optimizer.io.atomic import TAG, atomic_dir, scratch_dir, settle
from optimizer.io.plan_dir import read_plan

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("generate", "train", "predict", "plan", "simulate", "whatif", "frontier", "report")  # fmt: skip


def _args(command: str, trained: dict, out: Path) -> list[str]:
    """Arguments of ``command`` writing to ``out`` (a folder, or a file in it)."""
    model, plan = str(trained["model"]), str(trained["plan"])
    events = str(trained["market"] / "events.csv")
    return {
        "generate": ["generate", "--out", out, "--audiences", "2", "--days", "1"],
        "train": ["train", "--events", events, "--out", out, "--epochs", "1"],
        "predict": ["predict", "--model", model, "--events", events, "--out", out / "p.csv"],
        "plan": ["plan", "--model", model, "--budget", "100", "--days", "7", "--out", out],
        "simulate": ["simulate", "--model", model, "--plan", plan, "--runs", "3", "--out", out],
        "whatif": ["whatif", "--model", model, "--plan", plan, "--budget-scale", "1.1", "--out", out],
        "frontier": ["frontier", "--model", model, "--budgets", "100:300:3", "--days", "7", "--out", out],
        "report": ["report", "--model", model, "--plan", plan, "--out", out / "r.html"],
    }[command]  # fmt: skip


def _invoke(args: list) -> tuple[int, str]:
    # The simulator kernel is not yet strict about rank promotion (conftest).
    with jax.numpy_rank_promotion("allow"):
        result = CliRunner().invoke(main, ["-q", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exc_info
    )
    return result.exit_code, result.output


def _debris(base: Path) -> list[Path]:
    return [p for p in base.rglob("*") if TAG in p.name]


def _under(path, base: Path) -> bool:
    return path is not None and str(Path(path).absolute()).startswith(str(base))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("fault", ["read-only", "full", "missing"])
def test_disk_faults_fail_fast_with_one_message(
    command, fault, trained, tmp_path, monkeypatch
):
    base = tmp_path / "disk"
    base.mkdir()
    out = base / "out"
    if fault == "missing":  # a part of the path is a file
        (base / "afile").write_text("x")
        out = base / "afile" / "out"
    elif fault == "read-only":  # root ignores chmod: refuse creation under base
        real_mkstemp, real_mkdtemp = tempfile.mkstemp, tempfile.mkdtemp

        def refuse(real):
            def wrapped(*a, dir=None, **k):
                if _under(dir, base):
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
                return real(*a, dir=dir, **k)

            return wrapped

        monkeypatch.setattr(tempfile, "mkstemp", refuse(real_mkstemp))
        monkeypatch.setattr(tempfile, "mkdtemp", refuse(real_mkdtemp))
    else:
        usage = shutil.disk_usage(base)
        monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=4096))
    code, output = _invoke(_args(command, trained, out))
    assert code == 1, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: cannot use"), output
    expected = {
        "read-only": "read-only",
        "full": "disk is full",
        "missing": "not a folder",
    }
    assert expected[fault] in output
    assert not out.exists() and not _debris(base)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "train"])
def test_disk_filling_up_while_writing_leaves_the_old_output(
    command, trained, tmp_path, monkeypatch
):
    """ENOSPC on the last step: exit 1, one message, the earlier output intact."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier output")
    real_replace = os.replace

    def full(src, dst, *a, **k):
        if _under(dst, out):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", full)
    code, output = _invoke(_args(command, trained, out))
    assert code == 1 and "Traceback" not in output, output
    assert "disk is full" in output and len(output.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_an_existing_output_folder_is_not_renamed(tmp_path):
    """A mount point cannot be renamed: its contents are replaced instead."""
    out = tmp_path / "mount"
    out.mkdir()
    (out / "old.csv").write_text("old")
    (out / "sub").mkdir()
    (out / "sub" / "stale.txt").write_text("stale")
    inode = out.stat().st_ino
    with atomic_dir(out) as tmp:
        (tmp / "old.csv").write_text("new")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "fresh.txt").write_text("fresh")
    assert out.stat().st_ino == inode
    assert (out / "old.csv").read_text() == "new"
    assert [p.name for p in (out / "sub").iterdir()] == ["fresh.txt"]
    assert not _debris(tmp_path)


# ---------------------------------------------------------------- real kills

_WRITER = """
import sys
from pathlib import Path
from optimizer.io.files import atomic_dir, write_json
with atomic_dir(Path(sys.argv[1])) as tmp:
    write_json(tmp / "plan.csv", {"budget": float(sys.argv[2])})
    write_json(tmp / "plan.json", {"budget": float(sys.argv[2])})
"""


def _write(out: Path, budget: float, kill_at: str | None, signal: str = "KILL"):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADPLAN_TEST_SIGNAL": signal}
    env.pop("ADPLAN_TEST_KILL_AT", None)
    if kill_at:
        env["ADPLAN_TEST_KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, "-c", _WRITER, str(out), str(budget)], env=env, timeout=120
    )


def _budgets(out: Path) -> set[float]:
    return {
        json.loads((out / n).read_text())["budget"] for n in ("plan.csv", "plan.json")
    }


@pytest.mark.parametrize(
    "kill_at", ["before-file-rename", "before-commit", "after-commit", "between-moves"]
)
def test_a_killed_replacement_is_all_old_or_all_new(kill_at, tmp_path):
    out = tmp_path / "plan"
    assert _write(out, 7.97, None).returncode == 0
    assert _write(out, 15.94, kill_at).returncode == -9
    assert _debris(out), "the kill should have left a staged write behind"
    settle(out)  # what every reader (and the next writer) does first
    want = {15.94} if kill_at in ("after-commit", "between-moves") else {7.97}
    assert _budgets(out) == want and not _debris(tmp_path)


def test_a_killed_first_write_leaves_nothing_and_is_swept(tmp_path):
    out = tmp_path / "plan"
    assert _write(out, 1.0, "before-commit").returncode == -9
    assert not out.exists() and _debris(tmp_path)  # hidden stage beside --out
    assert _write(out, 2.0, None).returncode == 0
    assert _budgets(out) == {2.0} and not _debris(tmp_path)


# A job started in the background (cmd &) inherits SIGINT ignored; a planner's
# terminal does not. The CLI is started with Ctrl-C restored, as a planner runs
# it (in the child itself: a preexec_fn would fork the multithreaded pytest).
_CLI_WITH_CTRL_C = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from optimizer.cli import main; sys.exit(main())"
)


@pytest.mark.parametrize("signal", ["TERM", "INT"])
def test_sigterm_and_sigint_remove_the_temporary_folder(signal, tmp_path):
    """The CLI unwinds on SIGTERM like on Ctrl-C: the stage is removed."""
    out = tmp_path / "market"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ADPLAN_TEST_KILL_AT": "before-commit",
    }
    env["ADPLAN_TEST_SIGNAL"] = signal
    args = ["generate", "--out", str(out), "--audiences", "2", "--days", "1"]
    proc = subprocess.run(
        [sys.executable, "-c", _CLI_WITH_CTRL_C, "-q", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == (143 if signal == "TERM" else 1), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not _debris(tmp_path)


def test_the_real_plan_command_killed_between_moves(trained, tmp_path):
    """adplan plan over an existing plan, SIGKILL after plan.csv moved in: no
    reader ever sees the old plan.json beside the new plan.csv."""
    out = tmp_path / "plan"
    shutil.copytree(trained["plan"], out)
    old = json.loads((out / "plan.json").read_text())["budget"]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ADPLAN_TEST_KILL_AT": "between-moves",
    }
    args = ["plan", "--model", str(trained["model"]), "--budget", "123", "--days", "7"]
    proc = subprocess.run(
        [sys.executable, "-m", "optimizer.cli", "-q", *args, "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    assert old != 123 and _debris(out)
    names = json.loads((trained["model"] / "model.json").read_text())["audiences"]
    doc, _, budget = read_plan(out, names)
    assert doc["budget"] == 123 and budget.sum() == pytest.approx(123, abs=0.01)
    assert not _debris(out)


def test_scratch_folders_of_dead_runs_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f"adplan-train-scratch-{dead}-abc"
    live = tmp_path / f"adplan-train-scratch-{os.getppid()}-abc"
    stale.mkdir()
    live.mkdir()
    with scratch_dir("adplan-train") as work:
        assert work.is_dir() and str(os.getpid()) in work.name
    assert not stale.exists() and live.exists() and not work.exists()


def test_os_errors_name_the_path_and_the_fix():
    from optimizer.io.files import os_error_message

    text = os_error_message(OSError(errno.ENOSPC, "No space left", "/out/plan.csv"))
    assert text.startswith("cannot use /out/plan.csv: the disk is full")
    tmp = os_error_message(OSError(errno.ENOSPC, "x", f"{tempfile.gettempdir()}/y"))
    assert "TMPDIR" in tmp
    assert atomic.MIN_FREE_BYTES > 0
