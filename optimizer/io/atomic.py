"""Outputs that appear whole or not at all, and the clean-up after killed runs.

Every temporary name carries the writing process's id (``.adplan-tmp-PID-xxxx``),
so the next run can tell debris of a dead process from a run still going:

* :func:`atomic_path`: one file, written beside its target and renamed over it.
* :func:`atomic_dir`: a new folder is written beside its target and renamed into
  place (one step). An existing folder (possibly a mount point, which cannot be
  renamed) has its contents replaced: the new files are staged inside it, a commit
  list is written, then the entries move in. A run killed after the commit list is
  rolled forward by the next command that opens the folder (:func:`settle`), so a
  reader never mixes old and new files; one killed before it leaves nothing behind.
* :func:`scratch_dir`: a private folder in ``$TMPDIR`` removed on exit; the
  scratch folders of dead runs are removed at the next start.

``ADPLAN_TEST_KILL_AT`` (tests only) names a point at which the process kills
itself with SIGKILL, to prove that each step is safe.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from optimizer.errors import InputError

TAG = ".adplan-tmp-"
COMMIT = ".adplan-commit"
_OLD = ".adplan-old-"
_PID = re.compile(r"(?:adplan-tmp|-scratch)-(\d+)-")
# Below this much free space a command refuses to start (bytes).
MIN_FREE_BYTES = 16 << 20


def public_path(path: str) -> str:
    """``path`` as the planner named it: temporary parts (``.adplan-tmp-...``) removed."""
    path = re.sub(r"/\.adplan-tmp-[^/]*", "", path)
    return re.sub(r"\.([^/]+?)\.adplan-tmp-[^/]*", r"\1", path)


def _kill_point(name: str) -> None:
    """Test hook: signal this process at the named point (see the module doc);
    ``ADPLAN_TEST_SIGNAL`` picks the signal (default KILL)."""
    if os.environ.get("ADPLAN_TEST_KILL_AT") == name:
        sig = os.environ.get("ADPLAN_TEST_SIGNAL", "KILL")
        # raise_signal signals this thread, so the handler runs before the call
        # returns; a signal sent to the process may be taken by any thread.
        signal.raise_signal(getattr(signal, f"SIG{sig}"))


def _dead(name: str) -> bool:
    """True when ``name`` is a temporary of a process that no longer runs."""
    match = _PID.search(name)
    if not match:
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _roll_forward(stage: Path, target: Path) -> None:
    """Move the committed entries of ``stage`` into ``target``, then drop ``stage``.

    Safe to repeat after a crash at any point: moved entries are skipped.
    """
    names = json.loads((stage / COMMIT).read_text(encoding="utf-8"))
    for name in names:
        src, dst = stage / name, target / name
        if not src.exists() and not src.is_symlink():
            continue  # moved before the crash
        if dst.is_dir() and not dst.is_symlink():
            old = stage / f"{_OLD}{name}"
            _remove(old)
            os.rename(dst, old)  # a sub-folder is replaced whole
            _kill_point("subfolder")
        os.replace(src, dst)
        _kill_point("between-moves")
    (stage / COMMIT).unlink()
    shutil.rmtree(stage, ignore_errors=True)


def settle(folder: str | os.PathLike[str]) -> None:
    """Finish or remove the writes of dead runs inside ``folder`` (readers call this).

    A committed write is rolled forward; an uncommitted one is deleted. A folder
    that cannot be changed (read-only) is left as it is.
    """
    folder = Path(folder)
    try:
        stale = [p for p in folder.iterdir() if p.name.startswith(TAG)]
    except OSError:
        return
    for stage in stale:
        if not _dead(stage.name):
            continue
        with contextlib.suppress(OSError):
            if (stage / COMMIT).is_file():
                _roll_forward(stage, folder)
            else:
                _remove(stage)


def _sweep_beside(target: Path) -> None:
    """Remove dead runs' temporaries of ``target`` in its parent folder."""
    prefix = f".{target.name}{TAG}"
    with contextlib.suppress(OSError):
        for path in target.parent.iterdir():
            if path.name.startswith(prefix) and _dead(path.name):
                _remove(path)


def _stage_prefix() -> str:
    return f"{TAG}{os.getpid()}-"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    On any exception (also SIGINT/SIGTERM) the temporary file is removed and
    ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep_beside(target)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}{_stage_prefix()}", suffix=".tmp", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes it private; outputs are shared
    try:
        yield tmp_path
        _kill_point("before-file-rename")
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder; its entries replace ``target``'s on success.

    Files already in ``target`` that the new run does not write are kept, so an
    output folder shared by several commands loses nothing; a sub-folder the run
    writes replaces the old one whole. ``target`` itself is never renamed when it
    exists (it may be a mount point). On an exception before the commit nothing
    changes; see the module docstring for a kill.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise InputError(
            f"{target} is a file, not a folder. Give --out a folder name (it is created)."
        )
    in_place = target.is_dir()
    if in_place:
        settle(target)
        stage = Path(tempfile.mkdtemp(prefix=_stage_prefix(), dir=target))
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweep_beside(target)
        stage = Path(
            tempfile.mkdtemp(
                prefix=f".{target.name}{_stage_prefix()}", dir=target.parent
            )
        )
        os.chmod(stage, 0o777 & ~_umask())
    committed = False
    try:
        yield stage
        _kill_point("before-commit")
        if in_place:
            names = sorted(p.name for p in stage.iterdir())
            (stage / COMMIT).write_text(json.dumps(names), encoding="utf-8")
            committed = True
            _kill_point("after-commit")
            _roll_forward(stage, target)
        else:
            os.rename(stage, target)
    except BaseException:
        if committed:  # the new contents are complete: finish, do not lose them
            with contextlib.suppress(OSError):
                _roll_forward(stage, target)
        else:
            shutil.rmtree(stage, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A private folder in ``$TMPDIR`` for big intermediate arrays, removed on exit.

    Scratch folders with the same ``prefix`` left by dead processes are removed first.
    """
    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for path in base.glob(f"{prefix}-scratch-*"):
            if _dead(path.name):
                _remove(path)
    with tempfile.TemporaryDirectory(
        prefix=f"{prefix}-scratch-{os.getpid()}-", dir=base
    ) as tmp:
        yield Path(tmp)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(
    target: str | os.PathLike[str], *, folder: bool, need_bytes: int = MIN_FREE_BYTES
) -> None:
    """Fail fast, before long work, when ``target`` cannot be written.

    Creates nothing that outlives the call. ``folder``: ``target`` is an output
    folder (else one output file). ``need_bytes``: rough free space needed.

    Raises:
        InputError: ``target`` is the wrong kind; OSError: it cannot be written
            (read-only, no permission) or the disk has less than ``need_bytes`` free.
    """
    target = Path(target)
    if target.exists() and folder != target.is_dir():
        kind = "a file, not a folder" if folder else "a folder, not a file"
        raise InputError(f"--out {target} is {kind}. Give --out another name.")
    # An output file is replaced: what must be writable is the folder it goes in.
    where = _nearest_existing(target if folder else target.parent)
    if not where.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(where))
    fd, probe = tempfile.mkstemp(prefix=f"{TAG}{os.getpid()}-probe-", dir=where)
    os.close(fd)
    os.unlink(probe)
    free = shutil.disk_usage(where).free
    if free < need_bytes:
        raise OSError(
            errno.ENOSPC,
            f"{free / 2**20:,.1f} MiB free, about {need_bytes / 2**20:,.0f} MiB needed",
            str(where),
        )
