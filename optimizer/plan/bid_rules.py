"""Bid rules in planning: fit a rule for the plan's objective, re-stratify the market.

:func:`rule_market_for` turns a model's rule rows (rule_rows.parquet) into a
:class:`~optimizer.market.rules.Rule` and the market that bids by it; the plan
then chooses base bids and budgets exactly as for flat bids. :func:`market_for_plan`
rebuilds the same market from a plan.json, for simulate / what-if / frontier.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from optimizer.errors import InputError
from optimizer.market.fit import FittedMarket
from optimizer.market.params import with_rule
from optimizer.market.rules import (
    DEFAULT_MAX_LEVELS,
    DEFAULT_RANGE,
    ROW_FIELDS,
    Rule,
    fit_rule,
    rule_market,
    rule_strata,
)

# A rule must add at least this share of the objective over flat bids, in the
# model, to be used (below it the two plans are the same within solver precision).
MIN_RULE_GAIN = 1e-3


def parse_factor_range(text: str) -> tuple[float, float]:
    """'0.1:10' -> (0.1, 10.0); both positive, low <= 1 <= high."""
    try:
        low, high = (float(x) for x in str(text).split(":"))
    except ValueError:
        raise InputError(
            f"--factor-range {text!r}: give LOW:HIGH, e.g. 0.1:10 (bid multipliers)."
        ) from None
    if not (0 < low <= 1 <= high < np.inf):
        raise InputError(
            f"--factor-range {text!r}: need 0 < LOW <= 1 <= HIGH, e.g. 0.1:10."
        )
    return low, high


def _landscape(market: FittedMarket) -> tuple[np.ndarray, np.ndarray]:
    """(A,) log-price location mu and quality slope beta of each audience's fit."""
    fits = {f["audience"]: f for f in market.metrics["landscapes"]}
    mu = np.array([fits[n]["log_price_location"] for n in market.names], float)
    beta = np.array([fits[n]["quality_slope"] for n in market.names], float)
    return mu, beta


def _strata_market(market: FittedMarket, rows: pd.DataFrame, rule: Rule):
    codes = pd.Categorical(rows["audience"], categories=market.names).codes
    log_factor, _ = rule.row_log_factor(rows)
    keep = codes >= 0
    strata = rule_strata(
        codes[keep].astype(np.int64),
        log_factor[keep],
        *(rows[f].to_numpy(float)[keep] for f in ROW_FIELDS),
        len(market.names),
    )
    _fill_empty(strata, market)
    return rule_market(market.params, strata, *_landscape(market))


def _fill_empty(strata: dict[str, np.ndarray], market: FittedMarket) -> None:
    """Audiences without rule rows (no won impression in the model's sample) keep
    one stratum of the flat market's mean rates, bid 1x: they bid flat."""
    empty = strata["weight"].sum(1) == 0
    if not empty.any():
        return
    w = np.asarray(market.params.weight)
    for name in ("p_click", "p_conv"):
        mean = (w * np.asarray(getattr(market.params, name))).sum(1) / w.sum(1)
        strata[name][empty, 0] = mean[empty]
    strata["weight"][empty, 0] = 1.0


def rule_market_for(
    market: FittedMarket,
    rows: pd.DataFrame,
    objective: str,
    max_levels: int = DEFAULT_MAX_LEVELS,
    factor_range: tuple[float, float] = DEFAULT_RANGE,
) -> tuple[Rule, FittedMarket]:
    """A rule fitted for ``objective`` and ``market`` bidding by it.

    The target is the network's log conversion rate (click rate for the clicks
    objective; value per conversion is one number per audience, so the value
    objective has the conversion rule)."""
    if max_levels < 1:
        raise InputError(f"--max-levels {max_levels}: need at least 1 level.")
    features = [c for c in rows.columns if c not in ("audience", *ROW_FIELDS)]
    rate = rows["p_click" if objective == "clicks" else "p_conv"].to_numpy(float)
    rule = fit_rule(
        rows[["audience", *features]],
        np.log(np.clip(rate, 1e-12, 1.0)),
        market.names,
        features,
        max_levels,
        factor_range,
    )
    params = _strata_market(market, rows, rule)
    return rule, dataclasses.replace(market, params=params)


def market_for_plan(
    market: FittedMarket, rows: pd.DataFrame | None, doc: dict
) -> tuple[FittedMarket, Rule | None]:
    """The market a plan (plan.json ``doc``) bids in: with its rule when it has one."""
    info = doc.get("bid_rules") or {}
    if not info.get("used"):
        return market, None
    if rows is None:
        raise InputError(
            "the plan bids by a rule but the model folder has no rule_rows.parquet; "
            "use the model the plan was made with."
        )
    rule = Rule.from_json(info["rule"])
    if rule.names != market.names:
        raise InputError(
            "the plan's bid rule names other audiences than the model; use the model "
            "the plan was made with."
        )
    params = _strata_market(market, rows, rule)
    if info.get("max_bid") is not None:
        params = with_rule(params, params.log_bid_factor, np.asarray(info["max_bid"]))
    return dataclasses.replace(market, params=params), rule


def rule_section(
    rule: Rule | None,
    used: bool,
    reason: str,
    objective: float | None,
    flat_objective: float | None,
    max_levels: int,
    objective_name: str = "conversions",
) -> dict:
    """plan.json's "bid_rules": whether the plan bids by the rule, why, the rule,
    and per audience its largest multipliers in plain words ("explanations")."""
    out = {
        "used": bool(used),
        "reason": reason,
        "max_levels": int(max_levels),
        "objective": objective,
        "flat_objective": flat_objective,
    }
    if rule is not None:
        out["factor_range"] = list(rule.factor_range)
        out["flat_audiences"] = rule.flat
        out["rule"] = rule.to_json()
        out["explanations"] = explain(rule.table(), objective_name, top=5)
    return out


def explain(table: pd.DataFrame, objective: str, top: int = 3) -> dict[str, list[str]]:
    """Per audience, its largest bid multipliers in plain words, largest effect first:
    "desktop impressions get 1.8x the bid: they convert 2.1x as often"."""
    verb = "click" if objective == "clicks" else "convert"
    out = {}
    for audience, part in table.groupby("audience", sort=False):
        part = part[np.abs(np.log(part["factor"])) > np.log(1.05)]
        part = part.reindex(
            np.abs(np.log(part["factor"])).sort_values(ascending=False).index
        )
        lines = []
        for r in part.head(top).itertuples():
            what = (
                f"hour {r.level} UTC"
                if r.feature == "hour_of_day"
                else f"{r.feature} {r.level}"
            )
            lines.append(
                f"{what} impressions get {r.factor:.2g}x the bid: they {verb} "
                f"{r.rate_ratio:.2g}x as often ({r.share:.0%} of impressions)"
            )
        out[str(audience)] = lines
    return out
