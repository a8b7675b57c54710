"""What each binding planner constraint costs the plan, per unit and per round step.

Per unit comes from the allocator's shadow prices (budget, group caps, spend
bounds and max bids; for CPA/ROAS targets, the budget price times how far the
target moves the budget). Per round step (about a tenth of the limit, rounded
to 1, 2 or 5 x a power of ten) is an actual re-solve with only that constraint
relaxed, all of them in one vmapped batch: exact, not extrapolated. Every
re-solve keeps the plan's min_budget choices (paused audiences stay paused).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from optimizer import devices
from optimizer.allocate.buckets import allocate_many
from optimizer.allocate.duals import bound_prices
from optimizer.allocate.problem import Problem
from optimizer.plan.resolve import SolvedPlan, target_budget
from optimizer.plan.scenario import Scenario

_BUDGET_UNIT = 1e-6  # relative: the budget binds when the plan spends it all


def round_step(x: float) -> float:
    """The largest of 1, 2 or 5 x 10^k that is at most ``x`` (1 for x <= 0).

    >>> round_step(0.1 * 1234.0), round_step(0.1 * 300.0), round_step(0.7)
    (100.0, 20.0, 0.5)
    """
    if not (x > 0 and math.isfinite(x)):
        return 1.0
    power = 10.0 ** math.floor(math.log10(x))
    return next(m * power for m in (5.0, 2.0, 1.0) if m * power <= x * (1 + 1e-12))


def _gain_words(objective: str, gain: float) -> str:
    if objective == "conversions":
        return f"{gain:,.1f} more conversions"
    return f"{gain:,.2f} more conversion value"


def _entry(kind, audience, group, limit, unit, per_unit, step, gain, sentence):
    return {
        "constraint": kind,
        "audience": audience,
        "group": group,
        "limit": round(float(limit), 6),
        "unit": unit,
        "per_unit": float(per_unit),
        "step": float(step),
        "gain_at_step": float(gain),
        "sentence": sentence,
    }


def _bound_relaxations(plan: SolvedPlan, problem: Problem) -> list[tuple]:
    """(kind, audience, group, limit, unit, per_unit, step, relaxed Problem, verb)."""
    inputs, alloc = plan.inputs, plan.allocation
    a = len(inputs.names)
    skip = inputs.removed | (
        np.zeros(a, bool) if plan.paused is None else plan.paused | plan.raised
    )
    prices = jax.tree_util.tree_map(
        np.asarray, bound_prices(problem, alloc, inputs.config)
    )
    lower, upper = np.asarray(problem.lower), np.asarray(problem.upper)
    max_log_bid = np.asarray(problem.max_log_bid)
    out = []
    for i in np.flatnonzero((prices.max_spend > 0) & ~skip):
        step = round_step(0.1 * upper[i])
        relaxed = dataclasses.replace(problem, upper=problem.upper.at[i].add(step))
        out.append(("max_spend", i, None, upper[i], prices.max_spend[i], step, relaxed))
    for i in np.flatnonzero((prices.min_spend > 0) & ~skip):
        step = min(round_step(0.1 * lower[i]), lower[i])
        relaxed = dataclasses.replace(problem, lower=problem.lower.at[i].add(-step))
        out.append(("min_spend", i, None, lower[i], prices.min_spend[i], step, relaxed))
    for i in np.flatnonzero((prices.max_bid > 0) & ~skip):
        cpm = 1000.0 * math.exp(max_log_bid[i])
        step = round_step(0.1 * cpm)
        relaxed = dataclasses.replace(
            problem,
            max_log_bid=problem.max_log_bid.at[i].set(math.log((cpm + step) / 1000)),
        )
        out.append(("max_bid", i, None, cpm, prices.max_bid[i] / 1000, step, relaxed))
    caps = np.asarray(problem.group_cap)
    spent = np.bincount(
        np.asarray(problem.group), weights=np.asarray(alloc.spend), minlength=len(caps)
    )
    group_price = np.asarray(alloc.group_price)
    for g in np.flatnonzero(np.isfinite(caps) & (spent >= caps * (1 - 1e-6) - 1e-6)):
        step = round_step(0.1 * caps[g])
        relaxed = dataclasses.replace(
            problem, group_cap=problem.group_cap.at[g].add(step)
        )
        out.append(("group_cap", None, g, caps[g], group_price[g], step, relaxed))
    budget = float(problem.budget)
    full = plan.budget_used >= float(inputs.problem.budget) * (1 - _BUDGET_UNIT)
    if float(alloc.dual_price) > 0 and full:
        step = round_step(0.1 * budget)
        relaxed = dataclasses.replace(problem, budget=problem.budget + step)
        out.append(
            ("budget", None, None, budget, float(alloc.dual_price), step, relaxed)
        )
    return out


def _target_relaxations(plan: SolvedPlan, scenario: Scenario, problem: Problem):
    """(kind, limit, per_unit, step, relaxed budget) for a binding CPA/ROAS target."""
    inputs, alloc = plan.inputs, plan.allocation
    full = float(inputs.problem.budget)
    if plan.budget_used >= full * (1 - _BUDGET_UNIT):
        return []
    price, objective = float(alloc.dual_price), float(alloc.objective)
    spend = float(np.sum(np.asarray(alloc.spend)))
    out = []
    if scenario.max_cpa is not None:
        cpa = scenario.max_cpa
        step = round_step(0.1 * cpa)
        # Spend = cpa x conversions(B): dB/dcpa = N / (1 - cpa N').
        per_unit = (
            price * objective / max(1.0 - cpa * price, 1e-12)
            if inputs.config.objective == "conversions"
            else None
        )
        looser = dataclasses.replace(scenario, max_cpa=cpa + step)
        out.append(
            ("max_cpa", cpa, per_unit, step, target_budget(inputs, looser, full))
        )
    if scenario.min_roas is not None:
        roas = scenario.min_roas
        step = min(round_step(0.1 * roas), 0.5 * roas)
        # Value = roas x B: dB/d(-roas) = B / (roas - V').
        per_unit = (
            price * spend / max(roas - price, 1e-12)
            if inputs.config.objective == "value"
            else None
        )
        looser = dataclasses.replace(scenario, min_roas=roas - step)
        out.append(
            ("min_roas", roas, per_unit, step, target_budget(inputs, looser, full))
        )
    return out


def _sentence(kind, name, limit, step, gain, objective, currency) -> str:
    what = _gain_words(objective, gain)
    money = f"{step:,g} {currency}"
    return {
        "max_spend": f"raising '{name}' max spend by {money} would buy {what}",
        "min_spend": f"lowering '{name}' min spend by {money} would buy {what}",
        "max_bid": f"raising '{name}' max bid by CPM {step:g} (to CPM {limit + step:,.4g} {currency}) would buy {what}",
        "group_cap": f"raising group '{name}' cap by {money} would buy {what}",
        "budget": f"raising the budget by {money} would buy {what}",
        "max_cpa": f"allowing a CPA of {limit + step:,g} {currency} instead of {limit:,g} would buy {what}",
        "min_roas": f"accepting a ROAS of {limit - step:g} instead of {limit:g} would buy {what}",
    }[kind]


def constraint_costs(plan: SolvedPlan, scenario: Scenario) -> list[dict]:
    """Every binding constraint with its price per unit and the gain of a round step.

    A target whose objective is not the plan's (a CPA target on a value plan)
    has no budget-price formula: its per unit is the step's gain / step.

    Units: currency for spend bounds, group caps, the budget and max CPA; CPM
    (currency per 1,000 impressions) for max bids; ROAS points for min ROAS.
    Sorted by gain at the step, largest first.
    """
    inputs = plan.inputs
    problem = plan.solved_problem or dataclasses.replace(
        inputs.problem, budget=jnp.asarray(plan.budget_used, jnp.float64)
    )
    bounds = _bound_relaxations(plan, problem)
    targets = _target_relaxations(plan, scenario, problem)
    batch = [problem, *(r[-1] for r in bounds)]
    batch += [dataclasses.replace(problem, budget=jnp.asarray(t[-1])) for t in targets]
    if len(batch) == 1:
        return []
    stacked = devices.stack(batch)
    # Only compared with each other (the base plan is the first), so no
    # throttled bids: the differences are what relaxing each constraint buys.
    objective = np.asarray(
        allocate_many(stacked, inputs.config, throttle=False).objective
    )
    gains = np.maximum(objective[1:] - objective[0], 0.0)
    units = {"max_bid": "CPM", "min_roas": "ROAS"}
    cur, obj = inputs.currency, inputs.config.objective
    entries = []
    for (kind, i, g, limit, per_unit, step, _), gain in zip(
        bounds, gains[: len(bounds)], strict=True
    ):
        name = inputs.names[i] if i is not None else None
        name = inputs.groups[g] if g is not None else name
        entries.append(
            _entry(
                kind,
                inputs.names[i] if i is not None else None,
                inputs.groups[g] if g is not None else None,
                limit,
                units.get(kind, "currency"),
                per_unit,
                step,
                gain,
                _sentence(kind, name, limit, step, gain, obj, cur),
            )
        )
    for (kind, limit, per_unit, step, _), gain in zip(
        targets, gains[len(bounds) :], strict=True
    ):
        entries.append(
            _entry(
                kind,
                None,
                None,
                limit,
                units.get(kind, "currency"),
                gain / step if per_unit is None else per_unit,
                step,
                gain,
                _sentence(kind, None, limit, step, gain, obj, cur),
            )
        )
    return sorted(entries, key=lambda e: -e["gain_at_step"])
