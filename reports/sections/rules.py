"""The report's bid-rule section: per audience its bid multipliers, largest first,
in plain words ("desktop impressions get 1.8x the bid: they convert 2.1x as often"),
as plan.json's "bid_rules" section holds them."""

from __future__ import annotations

from typing import Any


def bid_rules(inputs: Any) -> dict | None:
    """None without a rule section in plan.json; else the reason and, when the
    plan bids by the rule, one entry per audience (its largest effects)."""
    info = (inputs.plan or {}).get("bid_rules")
    if not info:
        return None
    out = {"used": bool(info.get("used")), "reason": info.get("reason", ""), "rows": []}
    if not out["used"] or "rule" not in info:
        return out
    flat = info.get("flat_audiences") or {}
    lines = info.get("explanations") or {}
    for name in info["rule"]["names"]:
        out["rows"].append(
            {
                "audience": name,
                "lines": [] if name in flat else lines.get(name, []),
                "flat": f"flat bid: {flat[name]}" if name in flat else "",
            }
        )
    low, high = info.get("factor_range", (0.1, 10.0))
    out["range"] = f"{low:g}x to {high:g}x"
    return out
