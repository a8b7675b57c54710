"""How a CSV file is written: its separator and decimal mark, sniffed or given.

Spreadsheets in many locales (Excel in French, German, Spanish...) export CSV
with a semicolon separator and a decimal comma. The separator is sniffed from
the header line and the decimal mark from the first data lines, unless the
planner gives ``--csv-sep`` / ``--decimal`` (:func:`use_csv_format`, one choice
per command run). Text is read exactly: only empty cells are missing, so an
audience named ``NA``, ``None`` or ``null`` stays a name.
"""

from __future__ import annotations

import re
from pathlib import Path

from optimizer.errors import InputError

SEPARATORS = {",": ",", ";": ";", "tab": "\t", "pipe": "|"}
DECIMALS = (".", ",")
_SNIFF_BYTES = 65536
_COMMA_NUMBER = re.compile(r'^"?-?\d+,\d+"?$')
_DOT_NUMBER = re.compile(r'^"?-?\d+\.\d+"?$')
_given: dict[str, str | None] = {"sep": None, "decimal": None}


def use_csv_format(sep: str | None = None, decimal: str | None = None) -> None:
    """Fix the separator (``,``, ``;``, ``tab``, ``pipe``) and decimal mark (``.``
    or ``,``) of every CSV read from now on; None sniffs it per file."""
    if sep is not None and sep not in SEPARATORS:
        raise InputError(
            f"--csv-sep {sep!r}: use one of {', '.join(SEPARATORS)} (or leave it out to detect it)."
        )
    if decimal is not None and decimal not in DECIMALS:
        raise InputError(f"--decimal {decimal!r}: use '.' or ','.")
    _given["sep"] = SEPARATORS[sep] if sep is not None else None
    _given["decimal"] = decimal


def _sniff(path: Path) -> tuple[str, str]:
    """(separator, decimal mark) from the first 64 KiB of the file."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return ",", "."
    lines = [line for line in head.splitlines() if line.strip()]
    if not lines:
        return ",", "."
    header = lines[0]
    sep = _given["sep"] or max(
        SEPARATORS.values(), key=lambda s: (header.count(s), s == ",")
    )
    if _given["decimal"] == "," and sep == ",":
        raise InputError(
            f"{path}: --decimal ',' needs a separator other than ',' (the header "
            "reads as comma-separated): pass --csv-sep ';' as well."
        )
    if _given["decimal"] is not None:
        return sep, _given["decimal"]
    if sep == ",":
        return sep, "."
    fields = [f.strip() for line in lines[1:21] for f in line.split(sep)]
    commas = sum(bool(_COMMA_NUMBER.match(f)) for f in fields)
    dots = sum(bool(_DOT_NUMBER.match(f)) for f in fields)
    return sep, "," if commas > dots else "."


def read_csv_kwargs(path: str | Path) -> dict:
    """Keyword arguments for ``pandas.read_csv`` on ``path``: separator, decimal
    mark, and names read exactly (only empty cells are missing)."""
    sep, decimal = _sniff(Path(path))
    return {
        "sep": sep,
        "decimal": decimal,
        "keep_default_na": False,
        "na_values": [""],
        "low_memory": False,
    }
