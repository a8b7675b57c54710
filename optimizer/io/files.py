"""Output files (atomic, formula-safe CSV), OS error messages and provenance.

No output is ever left half-written (:mod:`optimizer.io.atomic`). Text cells of
every CSV adplan writes that a spreadsheet would run as a formula (starting with
``=``, ``+``, ``-``, ``@``, tab or carriage return) get a leading ``'``; numbers,
also negative ones, and every JSON file keep their exact values.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optimizer import __version__
from optimizer.errors import InputError
from optimizer.io.atomic import atomic_dir, atomic_path, public_path, settle

__all__ = ["atomic_dir", "atomic_path", "write_csv", "write_json"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


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


def neutralize(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_for_spreadsheets(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells (and column names) are neutralized.

    Only text is touched: numeric columns (negative numbers included) keep
    their values.
    """
    out = frame.copy()
    for column in out.columns:
        if not (
            pd.api.types.is_numeric_dtype(out[column])
            or pd.api.types.is_bool_dtype(out[column])
            or pd.api.types.is_datetime64_any_dtype(out[column])
        ):
            out[column] = out[column].map(neutralize)
    out.columns = [neutralize(c) for c in out.columns]
    return out


def write_csv(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """Write a DataFrame as CSV atomically, formula-like text neutralized."""
    with atomic_path(path) as tmp:
        safe_for_spreadsheets(frame).to_csv(tmp, index=False)


_OS_FIXES = {
    errno.ENOSPC: "the disk is full. Free some space or write to another disk",
    errno.EDQUOT: "the disk quota is used up. Free some space or write elsewhere",
    errno.EROFS: "the file system is read-only. Write to a folder you can change",
    errno.EACCES: "permission denied. Write to a folder you own or fix its permissions",
    errno.EPERM: "operation not permitted. Write to a folder you own",
    errno.ENOENT: "no such file or folder. Check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder. Check the path",
    errno.EISDIR: "this is a folder where a file is expected. Check the path",
    errno.EXDEV: "it is on another device than its folder. Write to a plain folder",
}


def os_error_message(exc: OSError) -> str:
    """One line for a planner: which path, what the system said, what to do."""
    where = public_path(str(exc.filename)) if exc.filename else "a file"
    fix = _OS_FIXES.get(exc.errno, f"{exc.strerror or exc}. Check the path and disk")
    text = f"cannot use {where}: {fix}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) and exc.strerror:
        text += f" ({exc.strerror})"
    if str(where).startswith(tempfile.gettempdir()):
        text += "; scratch files go to $TMPDIR: point TMPDIR at a disk with room"
    return text + "."


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


_RETRAIN = "Retrain with 'adplan train'."


def folder_checksums(folder: str | os.PathLike[str]) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (hidden entries skipped), keyed by
    the path relative to it ("rates/params.msgpack")."""
    folder = Path(folder)
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(p.startswith(".") for p in rel.parts):
            out[rel.as_posix()] = file_sha256(path)
    return out


def _recorded(folder: Path, info: dict) -> list[tuple[str, str, str]]:
    """(file, sha256, where recorded) for a model folder's files.

    Folders written before model.json listed every file still have market.json's
    hash in the model id and the network's hashes in rates/config.json.
    """
    if isinstance(info.get("sha256"), dict):
        return [(n, str(h), "model.json") for n, h in info["sha256"].items()]
    out = []
    if isinstance(info.get("model_id"), str) and (folder / "market.json").is_file():
        out.append(("market.json", info["model_id"], "model.json"))
    with contextlib.suppress(OSError, ValueError, AttributeError):
        config = json.loads((folder / "rates" / "config.json").read_text("utf-8"))
        out += [
            (f"rates/{n}", str(h), "rates/config.json")
            for n, h in dict(config["sha256"]).items()
        ]
    return out


def check_model_folder(
    model_dir: str | os.PathLike[str], only: tuple[str, ...] | None = None
) -> dict:
    """Read model.json and verify the checksum of every file it lists (or ``only``).

    Returns:
        model.json as a dict.

    Raises:
        InputError: model.json is missing or unreadable, or a listed file is
            missing or was changed (one message naming the file and the fix).
    """
    folder = Path(model_dir)
    settle(folder)
    path = folder / "model.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError as exc:
        raise InputError(
            f"model {folder}: model.json is missing. Train a model first with adplan train --out {folder}."
        ) from exc
    except (OSError, ValueError) as exc:
        raise InputError(
            f"model {folder}: model.json is missing or unreadable ({exc}). {_RETRAIN}"
        ) from exc
    for name, want, source in _recorded(folder, info):
        if only is not None and name not in only:
            continue
        file = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute() or not file.is_file():
            raise InputError(f"{file}: missing. {_RETRAIN}")
        got = file_sha256(file)
        if not (len(want) >= 12 and got.startswith(want)):  # the model id is a prefix
            raise InputError(
                f"{file}: checksum does not match {source}; the model folder was "
                f"modified or corrupted. {_RETRAIN}"
            )
    return info
