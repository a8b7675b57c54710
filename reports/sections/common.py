"""Shared pieces of the report sections: audience order, simulation look-ups."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

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


def ordered_rows(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Plan audiences, largest budget first (name breaks ties)."""
    return sorted(
        plan["audiences"], key=lambda r: (-(number(r["budget"]) or 0.0), r["audience"])
    )


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
