"""The data contract: reading and validating the event log and audience settings.

Validation happens once, here, at the boundary. Every error names the file, the
column, how many rows break the rule, the first offending row (1-based data row,
as a spreadsheet would show it after the header) and what to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputError
from optimizer.io.bad_rows import BadRows
from optimizer.io.csv_format import read_csv_kwargs

REQUIRED_EVENT_COLUMNS = (
    "timestamp",
    "audience",
    "bid",
    "won",
    "cost",
    "click",
    "conversion",
)
OPTIONAL_EVENT_COLUMNS = ("revenue",)
# Every other column of the event log is a feature of the impression.
NON_FEATURES = frozenset(REQUIRED_EVENT_COLUMNS) | frozenset(OPTIONAL_EVENT_COLUMNS)
SETTINGS_COLUMNS = (
    "audience",
    "min_spend",
    "max_spend",
    "value_per_conversion",
    "volume_per_day",
    "group",
    "max_bid",
    "min_budget",
    "currency",
)
_BINARY = ("won", "click", "conversion")
_MONEY_SETTINGS = (
    "min_spend",
    "max_spend",
    "value_per_conversion",
    "volume_per_day",
    "max_bid",
    "min_budget",
)


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame, with a clear error if unreadable.

    Args:
        path: file to read; ``.parquet``/``.pq`` is read as Parquet, anything else as CSV.
        what: what the file is, for messages (e.g. ``"event log"``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path}: file not found. Check the path.")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, **read_csv_kwargs(path))
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(
            f"{what} {path}: could not be read as "
            f"{'Parquet' if path.suffix.lower() in ('.parquet', '.pq') else 'CSV'} "
            f"({exc}). Save it as UTF-8 CSV with a header row, or as Parquet."
        ) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _fail(
    path: Path, column: str, mask: np.ndarray, rule: str, fix: str, offset: int = 0
) -> None:
    """Raise InputError if ``mask`` flags any row, naming count and first row.

    ``offset`` is the data row number of the mask's first row minus one (chunks of
    a streamed file start later in the file).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.any():
        first = int(np.flatnonzero(mask)[0]) + 1 + offset
        raise InputError(
            f"{path}: column '{column}' {rule} in {int(mask.sum())} row(s) "
            f"(first at data row {first}). {fix}"
        )


def _suggest(missing: str, present: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(missing, present, n=1, cutoff=0.6)
    return f" (found '{close[0]}': rename it to '{missing}')" if close else ""


class _Rules:
    """Row rules of one frame: each either raises (no ``bad``) or records its rows.

    A row is recorded under the first rule it breaks; ``flagged`` marks them.
    """

    def __init__(
        self, frame: pd.DataFrame, path: Path, offset: int, bad: BadRows | None
    ):
        self.frame, self.path, self.offset, self.bad = frame, path, offset, bad
        self.flagged = np.zeros(len(frame), dtype=bool)

    def check(self, column: str, mask: np.ndarray, rule: str, fix: str) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.flagged
        if self.bad is None:
            _fail(self.path, column, mask, rule, fix, self.offset)
            return
        rows = np.flatnonzero(mask)
        self.bad.add(
            self.path,
            f"column '{column}' {rule}",
            fix,
            rows + 1 + self.offset,
            self.frame.iloc[rows],
        )
        self.flagged |= mask

    def numeric(self, column: str) -> np.ndarray:
        """Column as float64; non-numbers, blanks and infinities break a rule."""
        raw = self.frame[column]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        self.check(
            column,
            np.isnan(values) & raw.notna().to_numpy(),
            "is not a number",
            "Use plain numbers such as 0.35 (no currency signs).",
        )
        self.check(
            column,
            np.isnan(values),
            "is empty (NaN)",
            "Fill in every value or drop those rows.",
        )
        self.check(column, np.isinf(values), "is infinite", "Use finite numbers.")
        return values


def _describe(present: list[str], missing: list[str]) -> str:
    """Why the required columns are missing, in the planner's terms."""
    lower = {c.lower() for c in present}
    daily = {"date", "day", "spend", "impressions", "clicks", "conversions", "ctr"}
    if len(present) == 1 and any(s in present[0] for s in ";\t|"):
        return (
            f". The header reads as one column ('{present[0][:60]}'): pass the file's "
            "separator, e.g. --csv-sep ';'."
        )
    if len(lower & daily) >= 3 and "bid" not in lower:
        return (
            ". This looks like a daily platform report (date, spend, impressions, ...): "
            "adplan needs one row per auction (timestamp, audience, bid, won, cost, "
            "click, conversion); to plan budgets from a daily report, map its columns "
            "(adplan train --mapping FILE.toml; README 'Quickstart with a platform export')."
        )
    return "".join(_suggest(c, present) for c in missing) + "."


def validate_event_log(
    frame: pd.DataFrame,
    path: str | Path = "event log",
    row_offset: int = 0,
    bad: BadRows | None = None,
) -> pd.DataFrame:
    """Check an event log against the contract and return a clean, typed copy.

    Required columns: timestamp (ISO 8601), audience (string), bid (> 0, currency
    per impression), won/click/conversion (0/1), cost (> 0 when won, 0 when not).
    Optional: revenue (>= 0). Other columns are impression features: strings are
    categorical, numbers numeric.

    Returns:
        The frame with timestamp as UTC datetime64, money as float64, flags as int8,
        audience and string features as str; row order and ``frame``'s index
        are kept. With ``bad``, rows breaking a row rule are recorded there and
        left out.

    ``row_offset`` is added to the row numbers in messages (for chunks of a file).

    Raises:
        InputError: naming the file, column, rows and fix (without ``bad``, at
        the first broken rule; with it, only for missing or repeated columns).
    """
    path = Path(path)
    if len(frame) == 0:
        raise InputError(
            f"{path}: the event log has no rows. Export at least a few days of auctions."
        )
    present = list(frame.columns)
    missing = [c for c in REQUIRED_EVENT_COLUMNS if c not in present]
    if missing:
        raise InputError(
            f"{path}: missing required column(s) {', '.join(repr(c) for c in missing)}"
            f"{_describe(present, missing)} "
            f"An event log needs: {', '.join(REQUIRED_EVENT_COLUMNS)}."
        )
    dupes = [c for c in set(present) if present.count(c) > 1]
    if dupes:
        raise InputError(
            f"{path}: column(s) {dupes} appear more than once. Keep one of each."
        )
    out = frame.copy()
    rules = _Rules(frame, path, row_offset, bad)

    ts = pd.to_datetime(out["timestamp"], errors="coerce", utc=True, format="ISO8601")
    rules.check(
        "timestamp",
        ts.isna().to_numpy(),
        "is not an ISO 8601 date-time",
        "Write timestamps like 2026-03-01T14:05:00 (or with a Z / +01:00 offset).",
    )
    out["timestamp"] = ts

    aud = out["audience"]
    blank = aud.isna().to_numpy() | (aud.astype(str).str.strip() == "").to_numpy()
    rules.check(
        "audience",
        blank,
        "is empty",
        "Give every auction the audience it was bought for.",
    )
    out["audience"] = aud.astype(str).str.strip()

    for col in ("bid", "cost"):
        out[col] = rules.numeric(col)
    rules.check(
        "bid",
        out["bid"].to_numpy() <= 0,
        "is not positive",
        "Bids are currency per impression and must be > 0.",
    )
    rules.check(
        "cost",
        out["cost"].to_numpy() < 0,
        "is negative",
        "Cost is the price paid and must be >= 0.",
    )

    flags = {}
    for col in _BINARY:
        flags[col] = rules.numeric(col)
        rules.check(
            col,
            ~np.isin(flags[col], (0.0, 1.0)),
            "is not 0 or 1",
            f"'{col}' is a flag: write 1 for yes and 0 for no.",
        )
    won, click, conv = (flags[c] for c in _BINARY)
    rules.check(
        "click",
        click > won,
        "is 1 on an auction that was not won",
        "A click needs a won impression (click <= won).",
    )
    rules.check(
        "conversion",
        conv > click,
        "is 1 without a click",
        "A conversion needs a click (conversion <= click).",
    )
    cost = out["cost"].to_numpy()
    rules.check(
        "cost",
        (won == 0) & (cost != 0),
        "is not 0 on a lost auction",
        "Set cost to 0 where won is 0.",
    )
    rules.check(
        "cost",
        (won == 1) & (cost == 0),
        "is 0 on a won auction",
        "A won impression has a price: fill in what was paid, or drop the row.",
    )

    if "revenue" in out.columns:
        out["revenue"] = rules.numeric("revenue")
        rules.check(
            "revenue",
            out["revenue"].to_numpy() < 0,
            "is negative",
            "Revenue is the value of a conversion and must be >= 0.",
        )

    keep = ~rules.flagged
    out = out.loc[keep]
    for col in _BINARY:
        out[col] = flags[col][keep].astype(np.int8)
    if len(out) == 0:
        raise InputError(
            f"{path}: every row of the event log breaks a rule:\n"
            + "\n".join(bad.lines() if bad is not None else [])
        )
    for col in out.columns:
        if col in REQUIRED_EVENT_COLUMNS or col in OPTIONAL_EVENT_COLUMNS:
            continue
        if pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].astype(np.float64)
        elif pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].astype(np.float64)
        else:
            out[col] = out[col].astype(str).where(out[col].notna(), "")
    return out


def read_event_log(path: str | Path) -> pd.DataFrame:
    """Read and validate an event log (CSV or Parquet)."""
    return validate_event_log(read_table(path, "event log"), path)


def validate_settings(
    frame: pd.DataFrame,
    known_audiences: list[str],
    path: str | Path = "audience settings",
) -> pd.DataFrame:
    """Check audience settings and return one row per audience, float64 money.

    Columns: audience (required) and any of min_spend, max_spend (currency over the
    plan's horizon), value_per_conversion (currency), volume_per_day (auctions),
    max_bid (currency per impression) and group (string tag for group caps).

    Raises:
        InputError: unknown or repeated audiences, unknown columns, bad numbers,
        or min_spend above max_spend.
    """
    path = Path(path)
    if "audience" not in frame.columns:
        raise InputError(
            f"{path}: missing required column 'audience'{_suggest('audience', list(frame.columns))}. "
            "Audience settings need an 'audience' column naming audiences from the event log."
        )
    unknown_cols = [c for c in frame.columns if c not in SETTINGS_COLUMNS]
    if unknown_cols:
        hints = "".join(_suggest(c, list(SETTINGS_COLUMNS)) for c in unknown_cols)
        raise InputError(
            f"{path}: unknown column(s) {', '.join(repr(c) for c in unknown_cols)}{hints}. "
            f"Allowed: {', '.join(SETTINGS_COLUMNS)}."
        )
    out = frame.copy()
    out["audience"] = out["audience"].astype(str).str.strip()
    dup = out["audience"].duplicated().to_numpy()
    _fail(path, "audience", dup, "repeats an audience", "Give each audience one row.")
    unknown = ~out["audience"].isin(known_audiences).to_numpy()
    if unknown.any():
        first = int(np.flatnonzero(unknown)[0])
        raise InputError(
            f"{path}: column 'audience' names {int(unknown.sum())} audience(s) not in the model "
            f"(first at data row {first + 1}: '{out['audience'].iloc[first]}'). "
            "Use audience names exactly as in the event log, or retrain with a log that has them."
        )
    for col in _MONEY_SETTINGS:
        if col not in out.columns:
            continue
        raw = out[col]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(values) & raw.notna().to_numpy()
        _fail(
            path,
            col,
            bad,
            "is not a number",
            "Use plain numbers, or leave the cell empty for no setting.",
        )
        _fail(path, col, values < 0, "is negative", f"'{col}' must be >= 0.")
        _fail(
            path,
            col,
            np.isinf(values),
            "is infinite",
            "Leave the cell empty for no limit.",
        )
        out[col] = values
    if "max_bid" in out.columns:
        _fail(
            path,
            "max_bid",
            out["max_bid"].to_numpy() == 0,
            "is zero",
            "A max bid must be > 0, or empty for none.",
        )
    if "min_spend" in out.columns and "max_spend" in out.columns:
        lo, hi = out["min_spend"].to_numpy(), out["max_spend"].to_numpy()
        _fail(
            path,
            "min_spend",
            lo > hi,
            "is above max_spend",
            "Make min_spend <= max_spend (equal values freeze an audience).",
        )
    if "group" in out.columns:
        out["group"] = out["group"].astype(str).where(out["group"].notna(), "")
    return out.reset_index(drop=True)


def read_settings(path: str | Path, known_audiences: list[str]) -> pd.DataFrame:
    """Read and validate an audience settings CSV."""
    return validate_settings(
        read_table(path, "audience settings"), known_audiences, path
    )


def feature_columns(events: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Split the log's feature columns into (categorical, numeric) names.

    The audience is always categorical; float, int and bool columns are numeric,
    everything else (str, object, categorical dtype) is categorical.
    """
    categorical, numeric = ["audience"], []
    for col in events.columns:
        if col in NON_FEATURES:
            continue
        dtype = events[col].dtype
        is_num = pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(
            dtype
        )
        (numeric if is_num else categorical).append(str(col))
    return categorical, numeric
