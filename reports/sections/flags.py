"""Row-level flags of the plan table: what to check about one audience.

Read from what the result files already say: the plan's warnings (bounds that
hold), the market fit (the highest bid the log explored, auctions seen) and the
rate anchoring (conversions the log holds per audience).
"""

from __future__ import annotations

from typing import Any

from reports import text
from reports.formatting import decimal, number
from reports.inputs import ReportInputs
from reports.sections.common import is_paused

# Below these counts an audience's forecast rests on thin evidence.
THIN_AUCTIONS = 1000
FEW_CONVERSIONS = 10
# Phrases of plan.json's warnings -> the bound they report.
BOUND_WARNINGS = {
    "held at its min_spend": text.FLAG_MIN_SPEND,
    "capped at its max_spend": text.FLAG_MAX_SPEND,
    "bid held at its max bid": text.FLAG_MAX_BID,
}


def row_flags(inputs: ReportInputs) -> dict[str, list[str]]:
    """Audience -> short flags, in the order bid, bounds, data, conversions."""
    market = inputs.metrics.get("market") or {}
    fits = {
        str(f.get("audience")): f
        for f in market.get("landscapes") or []
        if isinstance(f, dict)
    }
    anchoring = market.get("rate_anchoring") or {}
    warnings = [str(w) for w in inputs.plan.get("warnings") or []]
    flags = {}
    for row in inputs.plan["audiences"]:
        name = str(row["audience"])
        found = [] if is_paused(row) else _bid_flag(row, fits.get(name))
        prefix = f"'{name}':"
        found += [
            flag
            for phrase, flag in BOUND_WARNINGS.items()
            if any(w.startswith(prefix) and phrase in w for w in warnings)
        ]
        auctions = number((fits.get(name) or {}).get("auctions"))
        if auctions is not None and auctions < THIN_AUCTIONS:
            found.append(text.FLAG_THIN.format(auctions=decimal(auctions, 0)))
        seen = number((anchoring.get(name) or {}).get("conversions_observed"))
        if seen is not None and seen < FEW_CONVERSIONS:
            found.append(text.FLAG_FEW_CONVERSIONS.format(count=decimal(seen, 0)))
        flags[name] = found
    return flags


def _bid_flag(row: dict[str, Any], fit: dict[str, Any] | None) -> list[str]:
    """The bid beyond the highest bid in the log, as a multiple of it."""
    points = (fit or {}).get("win_rate_by_bid") or []
    top = max(
        (number(p.get("bid")) or 0.0 for p in points if isinstance(p, dict)),
        default=0.0,
    )
    bid = number(row.get("bid"))
    if bid is None or top <= 0 or bid <= top * (1 + 1e-6):
        return []
    return [text.FLAG_BID.format(ratio=decimal(bid / top, 1))]
