"""Shared pieces of the report sections: audience order, simulation look-ups."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from reports import text
from reports.formatting import (
    decimal,
    number,
)
from reports.inputs import TOTAL_KEY, Simulation

TOTAL = TOTAL_KEY  # total rows' key in a read summary (never an audience name)

# Small multiples beyond a dozen panels get unreadable and heavy at 50 audiences.
MAX_PANELS = 12
# Relative duality gap under which the plan is called proven optimal (1e-4 %).
STATS = ("mean", "p10", "p50", "p90")
TRUTH_STATS = ("mean", "p10", "p90")


# Budgets below half a cent over the horizon are paused audiences.
PAUSED_BELOW = 0.005


def is_paused(row: dict[str, Any]) -> bool:
    """True when the plan gives the audience no budget (it buys nothing)."""
    return (number(row["budget"]) or 0.0) < PAUSED_BELOW


def ordered_rows(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Plan audiences, largest budget first, paused ones last (name breaks ties)."""
    return sorted(
        plan["audiences"],
        key=lambda r: (is_paused(r), -(number(r["budget"]) or 0.0), r["audience"]),
    )


def chart_name(row: dict[str, Any]) -> str:
    """An audience's chart label; paused ones say so."""
    name = str(row["audience"])
    return f"{name} ({text.PAUSED})" if is_paused(row) else name


# Bids in plan.json's warnings are per impression, with 4 decimals.
_WARNING_BID = re.compile(r"(max bid|planned bid|up to about) (\d+\.\d{4})\b")


def warning_text(warning: Any, currency: str) -> str:
    """A plan warning with its per-impression bids shown as CPM in ``currency``.

    >>> warning_text("'a': planned bid 0.0234 is above the log (up to about 0.0100).", "EUR")
    "'a': planned bid 23.40 EUR CPM is above the log (up to about 10.00 EUR CPM)."
    """

    def cpm(match: re.Match) -> str:
        return text.BID_IN_WARNING.format(
            words=match.group(1),
            cpm=decimal(1000 * float(match.group(2))),
            currency=currency,
        )

    return _WARNING_BID.sub(cpm, str(warning))


def sim_value(
    frame: pd.DataFrame | None, audience: str, metric: str, stat: str
) -> float | None:
    """One statistic from a simulation summary, or None when absent."""
    if frame is None:
        return None
    hit = frame[(frame["audience"] == audience) & (frame["metric"] == metric)]
    return number(hit[stat].iloc[0]) if len(hit) else None


def sim_range(sim: Simulation | None, audience: str, metric: str) -> str | None:
    """'low – high' P10-P90 display for one audience and metric, or None."""
    if sim is None:
        return None
    low = sim_value(sim.summary, audience, metric, "p10")
    high = sim_value(sim.summary, audience, metric, "p90")
    digits = 1 if metric == "conversions" else 0
    return f"{decimal(low, digits)} – {decimal(high, digits)}"


def nan_list(values: list[float | None]) -> list[float]:
    """None as NaN, which matplotlib leaves out."""
    return [np.nan if v is None else v for v in values]
