"""Atomic file output and provenance (input hashes, library versions).

No output is ever left half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from optimizer import __version__


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    On any exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes it private; outputs are shared
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory; it replaces ``target`` only on success.

    Files already in ``target`` that the new run does not write are kept, so an
    output folder shared by several commands (e.g. a model and its market fit)
    loses nothing.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        target.mkdir(parents=True, exist_ok=True)
        for item in tmp.iterdir():
            destination = target / item.name
            if item.is_dir() and destination.is_dir():
                shutil.rmtree(destination)  # a sub-folder is replaced whole
            os.replace(item, destination)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _plain(obj: Any) -> Any:
    """Recursively convert numpy/jax values to JSON types; NaN and inf become None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "__array__") and not isinstance(obj, str | bytes):
        arr = np.asarray(obj)
        return _plain(arr.tolist()) if arr.ndim else _plain(arr.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    return obj


def dumps_json(data: Any) -> str:
    """JSON text with numpy/jax values converted; NaN/inf become null."""
    return json.dumps(_plain(data), indent=2, allow_nan=False)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(dumps_json(data) + "\n", encoding="utf-8")


def write_csv(path: str | os.PathLike[str], frame: Any) -> None:
    """Write a DataFrame as CSV, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (provenance of inputs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict:
    """Versions of the libraries a result depends on (provenance)."""
    import importlib.metadata as md

    out = {"adplan": __version__}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "pandas"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out
