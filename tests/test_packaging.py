"""Packaging: an editable install (what `make install` runs) is quiet."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_is_a_quiet_pth(tmp_path):
    """The PEP 660 hook pip calls for ``pip install -e .`` writes a plain .pth to the
    project root and prints no setuptools warning box."""
    hook = (
        "import sys; from setuptools import build_meta as b; "
        "print(b.build_editable(sys.argv[1]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", hook, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Editable installation" not in done.stderr + done.stdout
    assert "*****" not in done.stderr
    wheel = tmp_path / done.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        pth = [n for n in archive.namelist() if n.endswith(".pth")]
        assert len(pth) == 1
        assert archive.read(pth[0]).decode().strip() == str(ROOT)


def test_planning_commands_do_not_import_the_training_libraries():
    # Every plan, what-if and frontier waits for its imports: scipy, optax and flax
    # (about 0.2 s) are needed only to fit a model.
    code = (
        "import sys, optimizer.cli, optimizer.commands.plan, optimizer.commands.whatif;"
        "print(sorted(m for m in ('scipy.special', 'scipy.stats', 'optax', 'flax')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
