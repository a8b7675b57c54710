"""What a whole event log adds up to, and the auction type its costs show.

:class:`LogTotals` holds exact per-audience totals (auctions, auctions per UTC
hour, clicks, conversions, revenue in currency) that add up across chunks and
processes, so a streamed log's market fit keeps them exact while the landscapes
are fitted on a sample.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd


@dataclasses.dataclass(frozen=True)
class LogTotals:
    """Exact totals of a whole log that add up across chunks and processes.

    A streamed log fits the market on a per-audience sample of its rows; these
    totals keep volumes, hour profiles, observed clicks and conversions and value
    exact. Per-audience dicts are keyed by audience name.

    Attributes:
        auctions: auctions per audience.
        hours: (24,) auctions per UTC hour of day, per audience.
        clicks, conversions: on won auctions, per audience.
        revenue: revenue of converting auctions, per audience (currency).
        revenue_total: revenue over all rows, None when the log has no revenue column.
        daily: auctions per audience and UTC date (ISO), for the volume forecast.
        days: distinct UTC dates (ISO) in the log.
        first, last: earliest and latest timestamps (ISO 8601, UTC).
    """

    auctions: dict[str, int]
    hours: dict[str, list[int]]
    clicks: dict[str, int]
    conversions: dict[str, int]
    revenue: dict[str, float]
    revenue_total: float | None
    daily: dict[str, dict[str, int]]
    days: list[str]
    first: str
    last: str


def log_totals(events: pd.DataFrame) -> LogTotals:
    """Totals of a validated event log (or one chunk of it)."""
    frame = pd.DataFrame(
        {
            "audience": events["audience"].astype(str).to_numpy(),
            "hour": events["timestamp"].dt.hour.to_numpy(),
            "day": events["timestamp"].dt.strftime("%Y-%m-%d").to_numpy(),
            "click": events["click"].to_numpy() * (events["won"].to_numpy() == 1),
            "conversion": events["conversion"].to_numpy()
            * (events["won"].to_numpy() == 1),
            "revenue": (
                events["revenue"].to_numpy() * events["conversion"].to_numpy()
                if "revenue" in events.columns
                else np.zeros(len(events))
            ),
        }
    )
    grouped = frame.groupby("audience", sort=True)
    sums = grouped[["click", "conversion", "revenue"]].sum()
    hours = (
        frame.groupby(["audience", "hour"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=range(24), fill_value=0)
    )
    daily: dict[str, dict[str, int]] = {}
    for (name, day), n in frame.groupby(["audience", "day"]).size().items():
        daily.setdefault(name, {})[day] = int(n)
    return LogTotals(
        auctions={k: int(v) for k, v in grouped.size().items()},
        hours={k: [int(x) for x in row] for k, row in hours.iterrows()},
        clicks={k: int(v) for k, v in sums["click"].items()},
        conversions={k: int(v) for k, v in sums["conversion"].items()},
        revenue={k: float(v) for k, v in sums["revenue"].items()},
        revenue_total=(
            float(events["revenue"].sum()) if "revenue" in events.columns else None
        ),
        daily=daily,
        days=sorted(frame["day"].unique().tolist()),
        first=events["timestamp"].min().isoformat(),
        last=events["timestamp"].max().isoformat(),
    )


def merge_totals(parts: list[LogTotals]) -> LogTotals:
    """Totals of the union of the logs (chunks) of ``parts``."""

    def add(field: str, zero):
        out: dict = {}
        for part in parts:
            for k, v in getattr(part, field).items():
                out[k] = np.add(out.get(k, zero), v)
        return out

    revenue_totals = [p.revenue_total for p in parts if p.revenue_total is not None]
    daily: dict[str, dict[str, int]] = {}
    for part in parts:
        for name, days in part.daily.items():
            mine = daily.setdefault(name, {})
            for day, n in days.items():
                mine[day] = mine.get(day, 0) + int(n)
    return LogTotals(
        auctions={k: int(v) for k, v in add("auctions", 0).items()},
        hours={k: [int(x) for x in v] for k, v in add("hours", np.zeros(24)).items()},
        clicks={k: int(v) for k, v in add("clicks", 0).items()},
        conversions={k: int(v) for k, v in add("conversions", 0).items()},
        revenue={k: float(v) for k, v in add("revenue", 0.0).items()},
        revenue_total=sum(revenue_totals) if revenue_totals else None,
        daily=daily,
        days=sorted(set().union(*(p.days for p in parts))),
        first=min(pd.Timestamp(p.first) for p in parts).isoformat(),
        last=max(pd.Timestamp(p.last) for p in parts).isoformat(),
    )


def detect_auction_type(events: pd.DataFrame) -> str:
    """'first_price' when won auctions cost exactly the bid, else 'second_price'."""
    won = events["won"].to_numpy() == 1
    if not won.any():
        return "second_price"
    bid, cost = events["bid"].to_numpy()[won], events["cost"].to_numpy()[won]
    paid_bid = np.isclose(cost, bid, rtol=1e-6, atol=1e-9)
    return "first_price" if paid_bid.mean() > 0.99 else "second_price"
