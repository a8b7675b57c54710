"""The second input: a daily platform report (one row per ad set and day).

Meta Ads Manager, Google Ads and DV360 export spend, impressions, clicks and
conversions per ad set (campaign, line item) per day, possibly split further by
breakdowns (age, placement, device ...). Their headers are recognized by a
*preset*; any other export maps its columns with a small TOML file
(``[columns]`` canonical = "header"). Nothing from a user file is executed.

Rules checked here, at the boundary (one message: file, column, count, first
data row, fix): every required column present; dates present and parseable;
numbers numeric, finite and not negative; no two rows for the same (date,
audience, breakdowns). Conversions above clicks (or clicks above impressions)
are accepted: platforms count view-through conversions and "all clicks".
"""

from __future__ import annotations

import re
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputError
from optimizer.io.schema import _fail, _Rules, read_table

REQUIRED = ("date", "audience", "spend", "impressions", "clicks", "conversions")
OPTIONAL = ("value", "reach", "daily_budget")
COUNTS = ("spend", "impressions", "clicks", "conversions", *OPTIONAL)
WEEKDAYS = (
    "Mon",
    "Tue",
    "Wed",
    "Thu",
    "Fri",
    "Sat",
    "Sun",
)  # day_of_week 0-6, in cells
# Preset name -> canonical column -> accepted headers (a regex; group 1, when
# there, is the currency code, e.g. "Amount spent (EUR)").
PRESETS: dict[str, dict[str, str]] = {
    "adplan": {c: re.escape(c) for c in (*REQUIRED, *OPTIONAL)},
    "meta": {
        "date": r"Day|Reporting starts",
        "audience": r"Ad set name",
        "spend": r"Amount spent(?: \(([A-Z]{3})\))?",
        "impressions": r"Impressions",
        "clicks": r"Link clicks",
        "conversions": r"Results",
        "value": r"Results value",
        "reach": r"Reach",
        "daily_budget": r"Ad set budget",
    },
    "google_ads": {
        "date": r"Day",
        "audience": r"Campaign",
        "spend": r"Cost(?: \(([A-Z]{3})\))?",
        "impressions": r"Impr\.",
        "clicks": r"Clicks",
        "conversions": r"Conversions",
        "value": r"Conv\. value",
        "daily_budget": r"Budget",
    },
    "dv360": {
        "date": r"Date",
        "audience": r"Line Item",
        "spend": r"Revenue \(Adv Currency\)",
        "impressions": r"Impressions",
        "clicks": r"Clicks",
        "conversions": r"Total Conversions",
    },
}
# Columns an export carries that are neither a measure nor a breakdown.
_IGNORED = re.compile(
    r"(?i)^(currency( code)?|advertiser currency|reporting ends|ad set id|campaign id|"
    r"line item id|campaign name|account name|attribution setting|result indicator|"
    r"cost per .*|ctr.*|cpm.*|cpc.*|frequency)$"
)


# Names adplan gives columns of its own (the cells, predict's output): a breakdown
# column may not carry one (compared without case).
RESERVED = frozenset(
    (*REQUIRED, *OPTIONAL, "weekday", "share", "level", "p_click", "p_conversion",
     "p_click_sd_log", "p_conversion_sd_log", "expected_clicks", "expected_conversions")
)  # fmt: skip
MAX_LEVELS = 50  # a text column with more distinct values is not used as a breakdown
_MAX_NUMERIC_LEVELS = 24  # a whole-number column with more is a measure (hour: 24)
# A column of whole numbers is a breakdown only when named as a category.
_CATEGORY_NAME = re.compile(
    r"(?i)\b(hours?|age|ages|age group|region|dma|zip|postal|postcode|segment|"
    r"cluster|bucket|tier)\b"
)
_NUMBER_DECOR = r"[%<>,\s]"  # "< 10%", "1,234": numbers as platforms print them
_DATE_SHAPE = (
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[ T].*)?|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
    r"|[A-Za-z]{3,9}\.? \d{1,2},? \d{4}|\d{1,2} [A-Za-z]{3,9}\.? \d{4}"
)


def _breakdowns(
    raw: pd.DataFrame, candidates: list[str], day_keys: list[str]
) -> tuple[list[str], list[str]]:
    """The candidate columns that are breakdowns, and a note per one that is not.

    A breakdown splits an ad set's day (``day_keys``: the date and ad set
    columns) into rows by a label: age, device, placement, region. Not
    breakdowns: an empty column; numbers (with or without %, "--" blank), which
    are measures the plan does not use (landing page views, post-click
    conversions, impression share) unless the column is named as a category
    (``_CATEGORY_NAME``: hour, age, region ...) and holds at most
    ``_MAX_NUMERIC_LEVELS`` whole numbers; dates; a column with one value per ad
    set and day (status, ids, day of week: the ad set and date carry it); text
    with more than ``MAX_LEVELS`` values (ad names)."""
    kept, notes = [], []
    for col in candidates:
        text = raw[col].dropna().astype(str).str.strip()
        text = text[(text != "") & (text != "--")]
        numbers = pd.to_numeric(
            text.str.replace(_NUMBER_DECOR, "", regex=True), "coerce"
        )
        levels = text.nunique()
        why = None
        if not len(text):
            why = "is empty"
        elif numbers.notna().all():
            whole = bool(np.all(numbers == np.round(numbers)))
            category = (
                _CATEGORY_NAME.search(col) and whole and levels <= _MAX_NUMERIC_LEVELS
            )
            if not category:
                why = "holds numbers (a measure the plan does not use)"
        elif _dates(text):
            why = "holds dates (the report's day is its date column)"
        if (
            why is None
            and not raw.groupby(day_keys)[col].nunique(dropna=False).gt(1).any()
        ):
            why = "has one value per ad set and day (the ad set and date carry it)"
        elif why is None and levels > MAX_LEVELS:
            why = f"has {levels:,} different values (at most {MAX_LEVELS} are learned)"
        if why:
            notes.append(f"column '{col}' {why}: not used as a breakdown.")
        else:
            kept.append(col)
    return kept, notes


def _dates(text: pd.Series) -> bool:
    """Whether every value of a text column is a calendar date (a time of day or
    a bucket such as "1-2" is not)."""
    if not text.str.fullmatch(_DATE_SHAPE).all():
        return False
    with warnings.catch_warnings():  # pandas warns when it guesses each format
        warnings.simplefilter("ignore", UserWarning)
        return bool(pd.to_datetime(text, errors="coerce").notna().all())


def _labels(values: pd.Series) -> pd.Series:
    """A breakdown column as text, whole numbers without decimals ('25', not
    '25.0', however the file stored them), missing values kept missing."""
    numbers = pd.to_numeric(values, errors="coerce")
    whole = (numbers.notna() & (numbers == numbers.round())).to_numpy()
    text = values.astype(str).str.strip().astype(object)
    text[whole] = numbers[whole].round().astype("int64").astype(str)
    return text.where(values.notna())


def _match(preset: dict[str, str], headers: list[str]) -> tuple[dict, str | None]:
    """canonical -> header for the preset's columns found, and the header's currency."""
    found, currency = {}, None
    for canonical, pattern in preset.items():
        for header in headers:
            hit = re.fullmatch(pattern, header)
            if hit and canonical not in found:
                found[canonical] = header
                if hit.groups() and hit.group(1):
                    currency = hit.group(1)
    return found, currency


def read_mapping(path: Path) -> tuple[dict[str, str], str | None]:
    """A mapping file: ``[columns]`` canonical = "export header"; optional ``currency``."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"mapping {path}: could not be read as TOML ({exc}).") from exc
    columns = data.get("columns")
    unknown = sorted(set(data) - {"columns", "currency"})
    if not isinstance(columns, dict) or unknown:
        raise InputError(
            f'mapping {path}: needs a [columns] table (e.g. spend = "Cost") and at '
            f"most a currency key{'; unknown: ' + ', '.join(unknown) if unknown else ''}."
        )
    bad = sorted(set(columns) - set(REQUIRED) - set(OPTIONAL))
    if bad or not all(isinstance(v, str) for v in columns.values()):
        raise InputError(
            f"mapping {path}: [columns] keys must be among {', '.join(REQUIRED + OPTIONAL)} "
            f"with text values{'; unknown: ' + ', '.join(bad) if bad else ''}."
        )
    currency = data.get("currency")
    return dict(columns), str(currency) if currency is not None else None


def looks_daily(headers: list[str]) -> bool:
    """Whether a header row is a daily report (some preset matches it whole)."""
    return any(
        all(c in _match(p, headers)[0] for c in REQUIRED) for p in PRESETS.values()
    )


def _choose(
    headers: list[str], path: Path, preset: str | None, mapping: Path | None
) -> tuple[str, dict[str, str], str | None]:
    """(preset used, canonical -> header, currency from the header or mapping)."""
    if mapping is not None:
        columns, currency = read_mapping(mapping)
        return f"mapping {Path(mapping).name}", columns, currency
    if preset is not None and preset not in PRESETS:
        raise InputError(
            f"--preset {preset!r}: use one of {', '.join(PRESETS)}, or --mapping FILE.toml."
        )
    names = [preset] if preset else list(PRESETS)
    best = None
    for name in names:
        found, currency = _match(PRESETS[name], headers)
        if all(c in found for c in REQUIRED):
            return name, found, currency
        if best is None or len(found) > len(best[1]):
            best = (name, found)
    name, found = best
    missing = [c for c in REQUIRED if c not in found]
    raise InputError(
        f"daily report {path}: no preset fits its header (closest: {name}, missing "
        f"{', '.join(missing)}). Name the columns {', '.join(REQUIRED)}, force one "
        f"with --preset ({', '.join(PRESETS)}) or map them with --mapping FILE.toml."
    )


def _sum_over(
    frame: pd.DataFrame, others: pd.DataFrame, keys: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Rows that differ only in columns that are not breakdowns (``others``, the
    file's, row for row) summed per ``keys``, and a note; unchanged when rows
    repeat even with those columns (the duplicate check names them)."""
    finer = pd.concat(
        [frame[keys], others.set_axis(range(others.shape[1]), axis=1)], axis=1
    )
    if finer.duplicated().any():
        return frame, []
    summed = _sum_rows(frame, keys, sort=False)
    names = ", ".join(f"'{c}'" for c in others.columns)
    note = (
        f"{len(frame):,} rows summed to {len(summed):,}, over column(s) {names} that "
        "are not breakdowns."
    )
    return summed[list(frame.columns)], [note]


def _refuse_reserved(breakdowns: list[str], path: Path) -> None:
    """A breakdown may not carry a name adplan gives a column of its own."""
    clash = [c for c in breakdowns if c.strip().lower() in RESERVED]
    if clash:
        why = (
            "adplan derives the weekday from the date"
            if clash[0].strip().lower() == "weekday"
            else "adplan names a column of its own so"
        )
        raise InputError(
            f"daily report {path}: column '{clash[0]}' is a breakdown (it splits ad "
            f"sets' days into rows), but {why}. Rename it (e.g. "
            f"'report_{clash[0].strip()}') or drop it."
        )


def read_daily_report(
    path: str | Path,
    preset: str | None = None,
    mapping: Path | None = None,
    breakdowns: list[str] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """A validated daily report in canonical columns, and what was read
    (``breakdowns``: take these columns as the breakdowns, a model's, instead of
    telling them from the file).

    Returns:
        (frame, info): frame has ``date`` (datetime64, day), ``audience`` (str),
        float64 ``spend``, ``impressions``, ``clicks``, ``conversions`` (and
        ``value``, ``reach``, ``daily_budget`` when given) plus breakdown
        columns; info holds ``preset``, ``currency``, ``breakdowns``, ``notes``.
    """
    path = Path(path)
    raw = read_table(path, "daily report")
    used, columns, currency = _choose(list(raw.columns), path, preset, mapping)
    missing = [c for c in REQUIRED if columns.get(c) not in raw.columns]
    if missing:
        raise InputError(
            f"daily report {path}: column(s) {', '.join(repr(columns.get(c, c)) for c in missing)} "
            f"for {', '.join(missing)} not in the file ({used}). Fix the header or the mapping."
        )
    taken = set(columns.values())
    candidates = [c for c in raw.columns if c not in taken and not _IGNORED.match(c)]
    if breakdowns is None:
        breakdowns, dropped = _breakdowns(
            raw, candidates, [columns["date"], columns["audience"]]
        )
        _refuse_reserved(breakdowns, path)
    else:  # the model's: whatever this file's columns look like
        missing = [c for c in breakdowns if c not in candidates]
        if missing:
            raise InputError(
                f"daily report {path}: column(s) {', '.join(missing)} missing; the "
                f"model was trained with breakdowns {', '.join(breakdowns)}. Export "
                "the report with the same breakdowns."
            )
        dropped = []
    frame = raw.rename(columns={v: k for k, v in columns.items()})
    for col in breakdowns:
        frame[col] = _labels(frame[col])
    frame = frame[[c for c in (*REQUIRED, *OPTIONAL) if c in frame] + breakdowns]
    dates = pd.to_datetime(frame["date"].astype(str).str.strip(), errors="coerce")
    _fail(path, columns["date"], frame["date"].isna(), "is empty",
          "Fill in the day of every row.")  # fmt: skip
    _fail(path, columns["date"], dates.isna(), "is not a date",
          "Use dates such as 2026-03-01.")  # fmt: skip
    frame["date"] = dates.dt.normalize()
    name = frame["audience"]
    _fail(path, columns["audience"], name.isna() | (name.astype(str).str.strip() == ""),
          "is empty", "Name the ad set on every row.")  # fmt: skip
    frame["audience"] = name.astype(str).str.strip()
    for col in [c for c in COUNTS if c in frame]:
        named = frame.rename(columns={col: columns[col]})
        values = _Rules(named, path, 0, None).numeric(columns[col])
        _fail(path, columns[col], values < 0, "is negative",
              "Spend and counts are 0 or more; drop refund/adjustment rows.")  # fmt: skip
        frame[col] = values
    keys = ["date", "audience", *breakdowns]
    others = [c for c in candidates if c not in breakdowns] if dropped else []
    if others and frame.duplicated(keys).any():
        frame, summed = _sum_over(frame, raw[others], keys)
        dropped = dropped + summed
    dup = frame.duplicated(keys, keep="first").to_numpy()
    _fail(path, "date, audience" + "".join(f", {b}" for b in breakdowns), dup,
          "repeats an earlier row's (date, audience, breakdown)",
          "Export one row per day and ad set (and breakdown), or sum the repeats.")  # fmt: skip
    totals = frame.groupby("audience")["spend"].sum()
    notes = dropped + [
        f"'{a}' never spent in the report: it is left out of the plan."
        for a in totals.index[totals.to_numpy() <= 0]
    ]
    over = int((frame["conversions"] > frame["clicks"]).sum())
    if over:
        notes.append(
            f"{over} row(s) count more conversions than clicks (view-through "
            "conversions): accepted, conversions are modelled per impression."
        )
    info = {"preset": used, "currency": currency, "breakdowns": breakdowns}
    return frame.reset_index(drop=True), {**info, "notes": notes}


def breakdown_labels(values: pd.Series) -> pd.Series:
    """A breakdown column as text labels, a missing value as "(blank)"."""
    text = values.astype(object).where(values.notna(), "(blank)")
    return text.astype(str)


def weekday_names(dates: pd.Series) -> pd.Series:
    """The ``WEEKDAYS`` name of each date (Mon ... Sun)."""
    return dates.dt.day_of_week.map(WEEKDAYS.__getitem__)


def _sum_rows(frame: pd.DataFrame, keys: list[str], sort: bool) -> pd.DataFrame:
    """One row per ``keys``: spend and counts summed, ``daily_budget`` the largest."""
    how = {c: "sum" for c in COUNTS if c in frame and c != "daily_budget"}
    if "daily_budget" in frame:
        how["daily_budget"] = "max"
    return frame.groupby(keys, sort=sort, dropna=False).agg(how).reset_index()


def daily_totals(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (audience, date): the breakdown rows summed."""
    return _sum_rows(frame, ["audience", "date"], sort=True)


def fail_if_empty(frame: pd.DataFrame, path: Path) -> None:
    """A report with no spend at all cannot be planned from."""
    if not len(frame) or float(np.nansum(frame["spend"])) <= 0:
        raise InputError(
            f"daily report {path}: no ad set spent anything. Export days with delivery."
        )
