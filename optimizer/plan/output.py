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

from optimizer import devices
from optimizer.allocate import response
from optimizer.io.columns import PLAN_COLUMNS
from optimizer.market.price_rates import price_rate_summary
from optimizer.plan.pacing import pacing, pacing_notes
from optimizer.plan.resolve import SolvedPlan
from optimizer.plan.sensitivities import sensitivities


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


@devices.stage(("config",))
def _log_marginals(params, bid: jax.Array, config) -> jax.Array:
    """(A,) log objective per extra currency unit at bids ``bid``."""
    return jax.vmap(response.log_marginal, in_axes=(0, 0, None))(
        params, jnp.log(bid), config
    )


def _marginal_cpa(plan: SolvedPlan) -> np.ndarray:
    """(A,) currency per extra conversion at the planned bid (NaN for removed)."""
    config = dataclasses.replace(plan.inputs.config, objective="conversions")
    log_m = _log_marginals(plan.inputs.problem.params, plan.allocation.bid, config)
    return np.where(plan.inputs.removed, np.nan, np.exp(-np.asarray(log_m)))


def round_bids(bids: np.ndarray, digits: int = 4) -> np.ndarray:
    """Round bids (currency per impression) to ``digits`` significant figures,
    never to fewer than 6 decimals, so a bid of 4.2e-7 stays 4.2e-7, not 0.

    >>> round_bids(np.array([0.0123456, 4.23456e-7, 0.0])).tolist()
    [0.012346, 4.235e-07, 0.0]
    """
    bids = np.asarray(bids, float)
    scale = np.floor(np.log10(np.where(bids > 0, bids, 1.0)))
    decimals = np.maximum(6, digits - 1 - scale)
    factor = 10.0**decimals
    return np.round(bids * factor) / factor


def plan_frame(plan: SolvedPlan) -> pd.DataFrame:
    """One row per audience with the plan.csv columns (money rounded to cents).

    An audience whose budget rounds to 0 cents is paused: bid 0 and no expected
    outcomes, so no row promises results without money (see :func:`paused`).
    """
    out, cur = plan.outcomes, plan.current
    days = float(plan.inputs.problem.days)
    budget = round_cents(np.asarray(plan.allocation.budget))
    live = budget > 0
    # Paused by rounding: the optimizer gave money that rounds to 0 cents.
    rounded_away = ~live & (np.asarray(plan.allocation.budget) > 0)

    def kept(values, decimals):
        return np.where(live, np.round(np.asarray(values), decimals), 0.0)

    daily = budget / days
    bid = np.where(live, round_bids(np.asarray(plan.allocation.bid)), 0.0)
    frame = pd.DataFrame(
        {
            "audience": plan.inputs.names,
            "budget": budget,
            "daily_budget": np.where(
                daily >= 0.01, np.round(daily, 2), round_bids(daily)
            ),
            "bid": bid,
            "expected_spend": np.minimum(kept(out.spend, 2), budget),
            "expected_impressions": kept(out.impressions, 1),
            "expected_clicks": kept(out.clicks, 2),
            "expected_conversions": kept(out.conversions, 3),
            "expected_value": kept(out.value, 2),
            "cpa": np.where(
                rounded_away, np.nan, np.round(_ratio(out.spend, out.conversions), 2)
            ),
            "roas": np.where(
                rounded_away, np.nan, np.round(_ratio(out.value, out.spend), 3)
            ),
            "marginal_cpa": np.round(_marginal_cpa(plan), 2),
            "current_spend": np.round(np.asarray(cur.spend), 2),
            "current_conversions": np.round(np.asarray(cur.conversions), 3),
        }
    )
    frame["bid_cpm"] = round_bids(bid * 1000)
    return frame[[*PLAN_COLUMNS, "bid_cpm"]]


def paused(plan: SolvedPlan, frame: pd.DataFrame) -> list[str]:
    """Audiences paused by rounding whose expected outcomes would have shown: the
    optimizer gave them money that rounds to 0 cents but visible clicks or conversions."""
    out = plan.outcomes
    visible = (np.round(np.asarray(out.conversions), 3) > 0) | (
        np.round(np.asarray(out.clicks), 2) > 0
    )
    gone = visible & (frame["budget"].to_numpy() == 0)
    return [n for n, g in zip(plan.inputs.names, gone, strict=True) if g]


@devices.stage(("config", "points"))
def _curves(p, config, points: int) -> tuple[jax.Array, ...]:
    """(A, points) log-bid grid and the spend, conversions and value along it."""
    from optimizer.allocate.problem import gain_at, log_bid_bounds, spend_at

    by_conv = dataclasses.replace(config, objective="conversions")
    by_value = dataclasses.replace(config, objective="value")
    low, high = log_bid_bounds(p)
    grid = (
        low[:, None] + (high - low)[:, None] * jnp.linspace(0.35, 1.0, points)[None, :]
    )
    spend = jax.vmap(lambda u: spend_at(p, u, config), in_axes=1, out_axes=1)(grid)
    conv = jax.vmap(lambda u: gain_at(p, u, by_conv), in_axes=1, out_axes=1)(grid)
    value = jax.vmap(lambda u: gain_at(p, u, by_value), in_axes=1, out_axes=1)(grid)
    return grid, spend, conv, value


def response_curves(plan: SolvedPlan, points: int = 40) -> dict:
    """Per audience: expected spend, conversions and value over the horizon along a
    bid grid (the spend-to-outcome curve a chart draws), uncapped."""
    grid, spend, conv, value = (
        np.asarray(x) for x in _curves(plan.inputs.problem, plan.inputs.config, points)
    )
    return {
        name: {
            "bid": np.round(np.exp(grid[i]), 6).tolist(),
            "spend": np.round(spend[i], 2).tolist(),
            "conversions": np.round(conv[i], 4).tolist(),
            "value": np.round(value[i], 2).tolist(),
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


def _bound_notes(plan: SolvedPlan, frame: pd.DataFrame) -> list[str]:
    """One note per audience held by a bound, min_budget or max bid."""
    notes = []
    inputs = plan.inputs
    lower, upper = np.asarray(inputs.problem.lower), np.asarray(inputs.problem.upper)
    max_bid = np.exp(np.asarray(inputs.problem.max_log_bid))
    budget = frame["budget"].to_numpy()
    cur = inputs.currency
    a = len(inputs.names)
    paused = np.zeros(a, bool) if plan.paused is None else plan.paused
    raised = np.zeros(a, bool) if plan.raised is None else plan.raised
    mins = np.zeros(a) if inputs.min_budget is None else inputs.min_budget
    for i, name in enumerate(inputs.names):
        if inputs.removed[i]:
            continue
        if paused[i]:
            notes.append(
                f"'{name}': paused: the best plan left it less than its min_budget {mins[i]:,.2f} {cur}, too little to run; that money went to other audiences."
            )
        elif raised[i]:
            notes.append(
                f"'{name}': raised to its min_budget {budget[i]:,.2f} {cur} (pausing it instead would buy less)."
            )
        elif lower[i] > 0 and lower[i] >= upper[i] - 0.01:
            notes.append(
                f"'{name}': frozen at {lower[i]:,.2f} {cur} (min_spend = max_spend); the optimizer does not move it."
            )
        elif lower[i] > 0 and budget[i] <= lower[i] + 0.01:
            notes.append(
                f"'{name}': held at its min_spend {lower[i]:,.2f} {cur}; the optimizer would spend less here."
            )
        elif np.isfinite(upper[i]) and budget[i] >= upper[i] - 0.01:
            notes.append(
                f"'{name}': capped at its max_spend {upper[i]:,.2f} {cur}; it would take more budget."
            )
        if budget[i] > 0 and frame["bid"].iloc[i] >= max_bid[i] * (1 - 1e-4):
            notes.append(
                f"'{name}': bid held at its max bid, CPM {1000 * max_bid[i]:,.2f} {cur} (by default 3x the highest bids in the log); set max_bid in the audience settings to allow more."
            )
    caps = np.asarray(inputs.problem.group_cap)
    if caps.shape[0]:
        spent = np.bincount(
            np.asarray(inputs.problem.group), weights=budget, minlength=len(caps)
        )
        for g in np.flatnonzero(np.isfinite(caps) & (spent >= caps - 0.01)):
            notes.append(
                f"group '{inputs.groups[g]}': at its cap of {caps[g]:,.2f} {cur}; its audiences would take more budget."
            )
    return notes


def _warnings(plan: SolvedPlan, frame: pd.DataFrame, market_metrics: dict) -> list[str]:
    inputs = plan.inputs
    budget = frame["budget"].to_numpy()
    notes = [*plan.notes, *_bound_notes(plan, frame)]
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
                f"'{entry['audience']}': planned bid CPM {1000 * frame['bid'].iloc[i]:,.2f} is well above the bids in the log (up to about CPM {1000 * table[-1]['bid']:,.2f}); the forecast extrapolates."
            )
    if plan.spendable is not None:
        notes.insert(
            0,
            f"The budget {float(inputs.problem.budget):,.2f} cannot be spent (spend_all): at their highest allowed bids, within max_spend and group caps, the audiences absorb at most {plan.spendable:,.2f} in {float(inputs.problem.days):g} days, so the plan spends that. Raise max bids or max_spend, add audiences or plan a longer horizon to spend more.",
        )
    elif plan.budget_used < float(inputs.problem.budget) * (1 - 1e-6):
        notes.append(
            f"Targets limit spend to {plan.budget_used:,.2f} of the {float(inputs.problem.budget):,.2f} budget."
        )
    if plan.paused is not None and (plan.paused.any() or plan.raised.any()):
        notes.append(
            "The optimality certificate is for the plan with the paused audiences kept at 0 and the raised ones at their min_budget (each choice was compared by re-solving)."
        )
    tiny = paused(plan, frame)
    if tiny:
        notes.append(
            f"{len(tiny)} audience(s) given less than one cent are paused (bid 0, no expected outcomes; their clicks and conversions are left out of the totals): {', '.join(repr(n) for n in tiny[:5])}{', ...' if len(tiny) > 5 else ''}."
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
    constraint_costs: list[dict] | None = None,
    model_notes: list[str] | None = None,
) -> dict:
    """Everything plan.json holds.

    ``constraint_costs``: from :func:`optimizer.plan.costs.constraint_costs`;
    ``model_notes``: model-health warnings put first among the notes.
    """
    alloc = plan.allocation
    config = plan.inputs.config
    objective = float(alloc.objective)
    tot = totals(frame)
    key = f"expected_{config.objective}"
    current_obj = (
        float(frame["current_conversions"].sum())
        if config.objective == "conversions"
        else float(np.sum(np.asarray(getattr(plan.current, config.objective))))
    )
    pace = pacing(plan, frame)
    return {
        "format": "adplan-plan/1",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "objective": config.objective,
        "auction_type": "first_price" if config.first_price else "second_price",
        "days": float(plan.inputs.problem.days),
        "budget": float(plan.inputs.problem.budget),
        "budget_used": plan.budget_used,
        **({"spendable_budget": plan.spendable} if plan.spendable is not None else {}),
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
        "sensitivities": sensitivities(plan),
        "currency": plan.inputs.currency,
        "min_budget": None
        if plan.inputs.min_budget is None
        else dict(zip(plan.inputs.names, plan.inputs.min_budget.tolist(), strict=True)),
        "paused": []
        if plan.paused is None
        else [n for n, p in zip(plan.inputs.names, plan.paused, strict=True) if p],
        "constraint_costs": constraint_costs or [],
        "pacing": pace,
        "price_rates": price_rate_summary(
            market_metrics.get("price_rates"), list(plan.inputs.names)
        ),
        "warnings": [
            *(model_notes or []),
            *_warnings(plan, frame, market_metrics),
            *pacing_notes(pace),
        ],
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
        f"Plan for {doc['days']:g} days, budget {doc['budget']:,.2f} {doc.get('currency', '')} (objective: {doc['objective']}).",
        f"  planned spend        {t['budget']:,.2f}",
        f"  expected conversions {t['expected_conversions']:,.1f}"
        + (f"  (CPA {t['cpa']:,.2f})" if t["cpa"] else ""),
        f"  expected value       {t['expected_value']:,.2f}"
        + (f"  (ROAS {t['roas']:.2f})" if t["roas"] else ""),
        f"  current plan         {t['current_spend']:,.2f} spend, {t['current_conversions']:,.1f} conversions",
    ]
    if doc["objective"] == "clicks":
        lines.insert(2, f"  expected clicks      {t['expected_clicks']:,.1f}")
    if doc["uplift_vs_current"] is not None:
        lines.append(
            f"  uplift vs current    {doc['uplift_vs_current']:+.1%} {doc['objective']}"
        )
    lines.append(f"  optimality gap       at most {gap:.4%} of the optimum (certified)")
    costs = doc.get("constraint_costs") or []
    if costs:
        lines.append("  what the constraints cost:")
        lines += [f"    {c['sentence']}" for c in costs[:3]]
    lines += [f"  note: {w}" for w in doc["warnings"][:8]]
    if len(doc["warnings"]) > 8:
        lines.append(f"  ... and {len(doc['warnings']) - 8} more notes in plan.json")
    return lines
