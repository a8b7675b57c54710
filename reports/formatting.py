"""Report stage: numbers as planners read them (thousands separators, fixed
decimals, signed percentages, a dash for missing values).

Every formatter accepts None or NaN (JSON ``null`` and empty CSV cells) and
returns :data:`reports.text.NOT_AVAILABLE` for them.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from reports import text


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, NaN, inf or not a number).

    >>> number("3"), number(None), number(float("nan")), number(2)
    (None, None, None, 2.0)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def decimal(value: Any, digits: int = 2) -> str:
    """Fixed decimals with thousands separators.

    >>> decimal(4000), decimal(751.059, 1), decimal(None)
    ('4,000.00', '751.1', '–')
    """
    value = number(value)
    return text.NOT_AVAILABLE if value is None else f"{value:,.{digits}f}"


def significant(value: Any, digits: int = 4) -> str:
    """Small metrics (log loss, ECE) to ``digits`` significant figures.

    >>> significant(0.012226570), significant(0.0825349)
    ('0.01223', '0.08253')
    """
    value = number(value)
    return text.NOT_AVAILABLE if value is None else f"{value:.{digits}g}"


def signed(value: Any, digits: int = 2) -> str:
    """Like :func:`decimal` with an explicit sign.

    >>> signed(242.35), signed(-17.4, 1)
    ('+242.35', '-17.4')
    """
    value = number(value)
    return text.NOT_AVAILABLE if value is None else f"{value:+,.{digits}f}"


def percent(value: Any, digits: int = 1, sign: bool = False) -> str:
    """A fraction as a percentage.

    >>> percent(0.46669, sign=True), percent(0.05), percent(None)
    ('+46.7%', '5.0%', '–')
    """
    value = number(value)
    if value is None:
        return text.NOT_AVAILABLE
    return f"{100 * value:{'+' if sign else ''},.{digits}f}%"


def plain(value: Any) -> str:
    """A hash, path or other identifier as text; None and "" read "none".

    >>> plain(0), plain(None)
    ('0', 'none')
    """
    return text.PROV_NONE if value is None or value == "" else str(value)


def timestamp(value: Any) -> str:
    """An ISO 8601 time to the minute, in UTC when it carries a zone.

    >>> timestamp("2026-11-25T18:08:57+00:00"), timestamp("soon")
    ('2026-11-25 18:08 UTC', 'soon')
    """
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return plain(value)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
