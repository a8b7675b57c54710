"""A solved plan as planner-facing files: plan.csv, plan.json and a printed summary.

Money is rounded to cents here and only here, by largest remainder, so the
rounded budgets add up to the planned total (floored to the cent, never above
the budget).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from optimizer.allocate import response
from optimizer.io.columns import PLAN_COLUMNS
from optimizer.plan.resolve import SolvedPlan


def round_cents(values: np.ndarray) -> np.ndarray:
    """Round to cents keeping the total: floor(total) in cents, largest remainders up.

    >>> round_cents(np.array([0.333, 0.333, 0.334])).tolist()
    [0.33, 0.33, 0.34]
    """
    cents = np.asarray(values, float) * 100.0
    total = int(np.floor(cents.sum() + 1e-6))
    base = np.floor(cents + 1e-9)
    short = total - int(base.sum())
    order = np.argsort(-(cents - base), kind="stable")
    base[order[: max(short, 0)]] += 1
    return base / 100.0


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, float), np.asarray(den, float)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _marginal_cpa(plan: SolvedPlan) -> np.ndarray:
    """(A,) currency per extra conversion at the planned bid (NaN for removed)."""
    p = plan.inputs.problem
    config = dataclasses.replace(plan.inputs.config, objective="conversions")
    log_m = jax.vmap(response.log_marginal, in_axes=(0, 0, None))(
        p.params, jnp.log(plan.allocation.bid), config
    )
    return np.where(plan.inputs.removed, np.nan, np.exp(-np.asarray(log_m)))


def plan_frame(plan: SolvedPlan) -> pd.DataFrame:
    """One row per audience with the plan.csv columns (money rounded to cents)."""
    out, cur = plan.outcomes, plan.current
    days = float(plan.inputs.problem.days)
    budget = round_cents(np.asarray(plan.allocation.budget))
    frame = pd.DataFrame(
        {
            "audience": plan.inputs.names,
            "budget": budget,
            "daily_budget": np.round(budget / days, 2),
            "bid": np.where(
                budget > 0, np.round(np.asarray(plan.allocation.bid), 6), 0.0
            ),
            "expected_spend": np.minimum(np.round(np.asarray(out.spend), 2), budget),
            "expected_impressions": np.round(np.asarray(out.impressions), 1),
            "expected_clicks": np.round(np.asarray(out.clicks), 2),
            "expected_conversions": np.round(np.asarray(out.conversions), 3),
            "expected_value": np.round(np.asarray(out.value), 2),
            "cpa": np.round(_ratio(out.spend, out.conversions), 2),
            "roas": np.round(_ratio(out.value, out.spend), 3),
            "marginal_cpa": np.round(_marginal_cpa(plan), 2),
            "current_spend": np.round(np.asarray(cur.spend), 2),
            "current_conversions": np.round(np.asarray(cur.conversions), 3),
        }
    )
    frame["bid_cpm"] = np.round(frame["bid"] * 1000, 4)
    return frame[[*PLAN_COLUMNS, "bid_cpm"]]


def _sensitivities(plan: SolvedPlan) -> dict:
    """Envelope-theorem derivatives of the optimal objective (decisions held fixed)."""
    inputs, alloc = plan.inputs, plan.allocation
    p = inputs.problem
    a = len(inputs.names)
    u = jnp.log(alloc.bid)
    share = jnp.where(alloc.spend > 0, 1.0, 0.0)

    def lagrangian(price_shift, rate_shift):
        from optimizer.allocate.problem import gain_at, spend_at
        from optimizer.market.params import shift_market

        shocked = dataclasses.replace(
            p, params=shift_market(p.params, price_shift, rate_shift)
        )
        gains = gain_at(shocked, u, inputs.config) * share
        spends = spend_at(shocked, u, inputs.config) * share
        return jnp.sum(gains) - alloc.dual_price * (jnp.sum(spends) - p.budget)

    d_price, d_rate = jax.grad(lagrangian, argnums=(0, 1))(jnp.zeros(a), jnp.zeros(a))
    return {
        "d_objective_d_budget": float(alloc.dual_price),
        "d_objective_d_price_level": float(jnp.sum(d_price)),
        "per_audience": {
            name: {
                "d_objective_d_price_shift": float(d_price[i]),
                "d_objective_d_rate_shift": float(d_rate[i]),
            }
            for i, name in enumerate(inputs.names)
        },
        "meaning": "Change in the optimal objective per unit change: per extra currency unit of budget; per +100% of market prices (all audiences, or one); per +100% of one audience's conversion rate. Multiply by 0.1 for a 10% change.",
    }


def response_curves(plan: SolvedPlan, points: int = 40) -> dict:
    """Per audience: expected spend, conversions and value over the horizon along a
    bid grid (the spend-to-outcome curve a chart draws), uncapped."""
    from optimizer.allocate.problem import gain_at, log_bid_bounds, spend_at

    p = plan.inputs.problem
    config = plan.inputs.config
    by_conv = dataclasses.replace(config, objective="conversions")
    by_value = dataclasses.replace(config, objective="value")
    low, high = log_bid_bounds(p)
    grid = (
        low[:, None] + (high - low)[:, None] * jnp.linspace(0.35, 1.0, points)[None, :]
    )
    spend = jax.vmap(lambda u: spend_at(p, u, config), in_axes=1, out_axes=1)(grid)
    conv = jax.vmap(lambda u: gain_at(p, u, by_conv), in_axes=1, out_axes=1)(grid)
    value = jax.vmap(lambda u: gain_at(p, u, by_value), in_axes=1, out_axes=1)(grid)
    return {
        name: {
            "bid": np.round(np.exp(np.asarray(grid[i])), 6).tolist(),
            "spend": np.round(np.asarray(spend[i]), 2).tolist(),
            "conversions": np.round(np.asarray(conv[i]), 4).tolist(),
            "value": np.round(np.asarray(value[i]), 2).tolist(),
        }
        for i, name in enumerate(plan.inputs.names)
    }


def totals(frame: pd.DataFrame) -> dict:
    """Plan and current totals from the plan table."""
    spend, conv, value = (
        frame[c].sum()
        for c in ("expected_spend", "expected_conversions", "expected_value")
    )
    cur_spend, cur_conv = (
        frame["current_spend"].sum(),
        frame["current_conversions"].sum(),
    )
    return {
        "budget": round(float(frame["budget"].sum()), 2),
        "expected_spend": round(float(spend), 2),
        "expected_impressions": round(float(frame["expected_impressions"].sum()), 1),
        "expected_clicks": round(float(frame["expected_clicks"].sum()), 2),
        "expected_conversions": round(float(conv), 3),
        "expected_value": round(float(value), 2),
        "cpa": round(float(spend / conv), 2) if conv > 0 else None,
        "roas": round(float(value / spend), 3) if spend > 0 else None,
        "current_spend": round(float(cur_spend), 2),
        "current_conversions": round(float(cur_conv), 3),
        "current_cpa": round(float(cur_spend / cur_conv), 2) if cur_conv > 0 else None,
    }


def _warnings(plan: SolvedPlan, frame: pd.DataFrame, market_metrics: dict) -> list[str]:
    notes = []
    inputs = plan.inputs
    lower, upper = np.asarray(inputs.problem.lower), np.asarray(inputs.problem.upper)
    max_bid = np.exp(np.asarray(inputs.problem.max_log_bid))
    budget = frame["budget"].to_numpy()
    for i, name in enumerate(inputs.names):
        if inputs.removed[i]:
            continue
        if lower[i] > 0 and budget[i] <= lower[i] + 0.01:
            notes.append(
                f"'{name}': held at its min_spend {lower[i]:,.2f}; the optimizer would spend less here."
            )
        if np.isfinite(upper[i]) and budget[i] >= upper[i] - 0.01:
            notes.append(
                f"'{name}': capped at its max_spend {upper[i]:,.2f}; it would take more budget."
            )
        if budget[i] > 0 and frame["bid"].iloc[i] >= max_bid[i] * (1 - 1e-4):
            notes.append(
                f"'{name}': bid held at its max bid {max_bid[i]:.4f} (by default 3x the highest bids in the log); set max_bid in the audience settings to allow more."
            )
    for entry in market_metrics.get("landscapes", []):
        if entry["auctions"] < 1000:
            notes.append(
                f"'{entry['audience']}': only {entry['auctions']} auctions in the log; its forecast is uncertain."
            )
        elif entry["max_abs_win_rate_error"] > 0.05:
            notes.append(
                f"'{entry['audience']}': the bid landscape fits the log loosely (win rate off by up to {entry['max_abs_win_rate_error']:.0%})."
            )
        table = entry.get("win_rate_by_bid") or []
        i = (
            inputs.names.index(entry["audience"])
            if entry["audience"] in inputs.names
            else None
        )
        if (
            table
            and i is not None
            and budget[i] > 0
            and frame["bid"].iloc[i] > 1.5 * table[-1]["bid"]
        ):
            notes.append(
                f"'{entry['audience']}': planned bid {frame['bid'].iloc[i]:.4f} is well above the bids in the log (up to about {table[-1]['bid']:.4f}); the forecast extrapolates."
            )
    if plan.budget_used < float(inputs.problem.budget) * (1 - 1e-6):
        notes.append(
            f"Targets limit spend to {plan.budget_used:,.2f} of the {float(inputs.problem.budget):,.2f} budget."
        )
    if float(plan.allocation.duality_gap) > 1e-3 * max(
        float(plan.allocation.objective), 1e-9
    ):
        notes.append(
            "The optimizer's certificate shows a gap above 0.1%: the plan may be slightly improvable."
        )
    return notes


def plan_document(
    plan: SolvedPlan,
    frame: pd.DataFrame,
    scenario: dict,
    provenance: dict,
    market_metrics: dict,
) -> dict:
    """Everything plan.json holds."""
    alloc = plan.allocation
    config = plan.inputs.config
    objective = float(alloc.objective)
    tot = totals(frame)
    key = (
        "expected_conversions"
        if config.objective == "conversions"
        else "expected_value"
    )
    current_obj = (
        float(frame["current_conversions"].sum())
        if key == "expected_conversions"
        else float(np.sum(np.asarray(plan.current.value)))
    )
    return {
        "format": "adplan-plan/1",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "objective": config.objective,
        "auction_type": "first_price" if config.first_price else "second_price",
        "days": float(plan.inputs.problem.days),
        "budget": float(plan.inputs.problem.budget),
        "budget_used": plan.budget_used,
        "totals": tot,
        "uplift_vs_current": (tot[key] / current_obj - 1) if current_obj > 0 else None,
        "audiences": frame.replace({np.nan: None}).to_dict(orient="records"),
        "certificate": {
            "dual_price": float(alloc.dual_price),
            "dual_price_meaning": f"extra {config.objective} per extra currency unit of budget",
            "marginal_cpa_at_optimum": (1.0 / float(alloc.dual_price))
            if config.objective == "conversions" and float(alloc.dual_price) > 0
            else None,
            "kkt_residual": float(alloc.kkt_residual),
            "duality_gap": float(alloc.duality_gap),
            "relative_gap": float(alloc.duality_gap) / objective
            if objective > 0
            else 0.0,
        },
        "sensitivities": _sensitivities(plan),
        "warnings": _warnings(plan, frame, market_metrics),
        "scenario": scenario,
        "provenance": provenance,
    }


def band_note(band: dict | None) -> list[str]:
    """A warning when the backtest stored by ``adplan train`` (band.json) found the
    forecast's P10-P90 too narrow (it held under 70% of the held-out outcomes)."""
    if not band or not band.get("outcomes") or band["coverage"] >= 0.7:
        return []
    wider = {m: f for m, f in band["widening_by_metric"].items() if f > 1.0}
    parts = ", ".join(f"{m} {f:.2f}x" for m, f in wider.items())
    return [
        f"forecast check: on the log's last {band['holdout_days']} day(s) the "
        f"forecast's P10-P90 held only {band['coverage']:.0%} of the audiences' "
        f"outcomes (about 80% expected); 'adplan simulate' widens its ranges ({parts})."
    ]


def summary_lines(doc: dict) -> list[str]:
    """The printed summary a planner reads after `adplan plan`."""
    t = doc["totals"]
    gap = doc["certificate"]["relative_gap"]
    lines = [
        f"Plan for {doc['days']:g} days, budget {doc['budget']:,.2f} (objective: {doc['objective']}).",
        f"  planned spend        {t['budget']:,.2f}",
        f"  expected conversions {t['expected_conversions']:,.1f}"
        + (f"  (CPA {t['cpa']:,.2f})" if t["cpa"] else ""),
        f"  expected value       {t['expected_value']:,.2f}"
        + (f"  (ROAS {t['roas']:.2f})" if t["roas"] else ""),
        f"  current plan         {t['current_spend']:,.2f} spend, {t['current_conversions']:,.1f} conversions",
    ]
    if doc["uplift_vs_current"] is not None:
        lines.append(
            f"  uplift vs current    {doc['uplift_vs_current']:+.1%} {doc['objective']}"
        )
    lines.append(f"  optimality gap       at most {gap:.4%} of the optimum (certified)")
    lines += [f"  note: {w}" for w in doc["warnings"][:8]]
    if len(doc["warnings"]) > 8:
        lines.append(f"  ... and {len(doc['warnings']) - 8} more notes in plan.json")
    return lines
