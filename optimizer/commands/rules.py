"""Bid rules for ``adplan plan``: fit, solve with and without, keep the better plan."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from optimizer.market.fit import FittedMarket
from optimizer.market.params import as_flat_rule
from optimizer.market.rules import Rule
from optimizer.market.store import load_rule_rows
from optimizer.plan.bid_rules import (
    MIN_RULE_GAIN,
    market_for_plan,
    parse_factor_range,
    rule_market_for,
    rule_section,
)
from optimizer.plan.resolve import SolvedPlan


def solve_with_rules(
    model_dir: Path,
    market: FittedMarket,
    objective: str,
    rules: tuple[bool, str, int],
    solve: Callable[[FittedMarket], SolvedPlan],
) -> tuple[SolvedPlan, Rule | None, dict]:
    """The plan (by rule when it adds over flat bids), its rule, plan.json's section.

    ``rules``: (bid by a rule, --factor-range text, --max-levels)."""
    use, range_text, max_levels = rules
    factor_range = parse_factor_range(range_text)
    rows = load_rule_rows(model_dir) if use else None
    rule = ruled_market = None
    if rows is not None:
        rule, ruled_market = rule_market_for(
            market, rows, objective, max_levels, factor_range
        )
    flat_market = market
    if rule is not None and not rule.is_flat:
        # The flat plan solved in the rule market's shape (extra strata of weight 0,
        # factors 1): both solves then run the same compiled programs.
        strata = ruled_market.params.weight.shape[1]
        if market.params.weight.shape[1] <= strata:
            params = as_flat_rule(market.params, strata)
            flat_market = dataclasses.replace(market, params=params)
    flat = solve(flat_market)
    flat_obj = float(flat.allocation.objective)

    def keep_flat(rule, reason):
        return (
            flat,
            rule,
            rule_section(rule, False, reason, None, flat_obj, max_levels, objective),
        )

    if not use:
        return keep_flat(None, "flat bids were asked for (--flat-bids)")
    if rows is None:
        return keep_flat(
            None,
            "the model was trained before bid rules (no rule_rows.parquet); "
            "retrain with adplan train to bid by rules",
        )
    if rule.is_flat:
        return keep_flat(
            rule,
            "the network's predicted rates barely differ across the log's features "
            "in every audience, so a rule would only add noise",
        )
    ruled = solve(ruled_market)
    ruled_obj = float(ruled.allocation.objective)
    gain = ruled_obj / max(flat_obj, 1e-300) - 1.0
    if gain < MIN_RULE_GAIN:
        return keep_flat(
            rule,
            f"a bid rule would change expected {objective} by {gain:+.2%} over flat "
            "bids, within the model's precision",
        )
    reason = f"bidding by the rule adds {gain:+.1%} expected {objective} over the best flat bids"
    section = rule_section(
        rule, True, reason, ruled_obj, flat_obj, max_levels, objective
    )
    section["max_bid"] = np.exp(np.asarray(ruled.inputs.problem.max_log_bid)).tolist()
    return ruled, rule, section


def plan_market(
    model_dir: Path, market: FittedMarket, doc: dict | None
) -> FittedMarket:
    """The market the plan (plan.json ``doc``) bids in: by its rule when it has one,
    each stratum's bid capped at the plan's max bids; else ``market``."""
    if not doc or not (doc.get("bid_rules") or {}).get("used"):
        return market
    ruled, _ = market_for_plan(market, load_rule_rows(model_dir), doc)
    return ruled


def rule_lines(section: dict) -> list[str]:
    """Summary lines about the plan's bids: by rule or flat, and why."""
    if not section["used"]:
        return [f"Bids: flat per audience ({section['reason']})."]
    flat = section.get("flat_audiences", {})
    names = section["rule"]["names"]
    low, high = section["factor_range"]
    return [
        f"Bids: base bid x rule multipliers ({low:g}x to {high:g}x) in "
        f"{len(names) - len(flat)} of {len(names)} audiences; {section['reason']}. "
        "Multipliers per feature level: bid_rules.csv (the bid column is the base bid)."
    ]


def truth_params_for(truth, doc: dict | None, names: list[str]):
    """The true market (audiences ``names``) bidding as the plan does: by the
    plan's rule on every true impression kind, capped at the plan's max bids."""
    import jax.numpy as jnp

    from optimizer.errors import InputError
    from optimizer.market.params import with_rule
    from simulations.synthetic.oracle import truth_rule_market

    index = jnp.asarray([truth.audiences.index(n) for n in names])
    info = (doc or {}).get("bid_rules") or {}
    if not info.get("used"):
        return truth.market_params().take(index)
    if truth.is_real:
        raise InputError(
            "a --realism real truth has no impression features to apply the plan's "
            "bid rule to; plan with --flat-bids to compare on this truth."
        )
    params = truth_rule_market(truth, Rule.from_json(info["rule"])).take(index)
    cap = info.get("max_bid")
    return with_rule(
        params, params.log_bid_factor, None if cap is None else np.asarray(cap)
    )
