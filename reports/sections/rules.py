"""The report's bid-rule section: per audience its bid multipliers, largest first,
in plain words ("desktop impressions get 1.8x the bid: they convert 2.1x as often")."""

from __future__ import annotations

from typing import Any

from optimizer.market.rules import Rule
from optimizer.plan.bid_rules import explain


def bid_rules(inputs: Any, top: int = 5) -> dict | None:
    """None without a rule section in plan.json; else the reason and, when the
    plan bids by the rule, one entry per audience (its largest effects)."""
    info = (inputs.plan or {}).get("bid_rules")
    if not info:
        return None
    out = {"used": bool(info.get("used")), "reason": info.get("reason", ""), "rows": []}
    if not out["used"] or "rule" not in info:
        return out
    rule = Rule.from_json(info["rule"])
    objective = (inputs.plan.get("scenario") or {}).get("objective") or "conversions"
    lines = explain(rule.table(), objective, top)
    for name in rule.names:
        flat = rule.flat.get(name)
        out["rows"].append(
            {
                "audience": name,
                "lines": [] if flat else lines.get(name, []),
                "flat": f"flat bid: {flat}" if flat else "",
            }
        )
    low, high = rule.factor_range
    out["range"] = f"{low:g}x to {high:g}x"
    return out
