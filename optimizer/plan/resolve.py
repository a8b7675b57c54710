"""From a fitted market, a scenario and audience settings to a solved plan.

This is the orchestration between the files a planner gives and the pure JAX
allocator: it resolves settings and what-if modifiers into a
:class:`~optimizer.allocate.problem.Problem`, checks feasibility with messages a planner
can act on, handles CPA/ROAS targets and goal seeking by searching the budget
frontier, and returns the allocation with the current plan for comparison.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh

from optimizer import devices
from optimizer.allocate.allocator import Allocation
from optimizer.allocate.buckets import allocate_many, allocate_one
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import Problem, make_problem
from optimizer.allocate.sharded import allocate_sharded
from optimizer.errors import InfeasibleError, InputError
from optimizer.market.fit import FittedMarket
from optimizer.market.params import (
    Outcomes,
    expected_outcomes,
    with_rule,
)
from optimizer.plan.min_budget import enforce_min_budget
from optimizer.plan.scenario import Scenario
from optimizer.plan.settings import (
    apply_market_settings,
    capacity_of,
    check_bid_unit,
    check_feasible,
    currency_of,
    groups_of,
    index_of,
    setting,
)

_SEARCH_POINTS = 16  # budgets per batched solve when searching for targets (a bucket)
# Default min_budget: this share of the total budget over the horizon (the same
# share of the daily budget each day).
DEFAULT_MIN_SHARE = 0.01


@dataclasses.dataclass(frozen=True)
class PlanInputs:
    """A resolved planning problem with the names and notes behind it."""

    names: list[str]
    problem: Problem
    config: SolveConfig  # objective, auction type, spend_all
    removed: np.ndarray  # (A,) bool
    groups: list[str]
    notes: list[str]
    # (A,) smallest useful budget per audience over the horizon (currency); below
    # it the audience is paused (None: never pause).
    min_budget: np.ndarray | None = None
    currency: str = "currency units"


@dataclasses.dataclass(frozen=True)
class SolvedPlan:
    """A plan and what it is compared with."""

    inputs: PlanInputs
    allocation: Allocation
    outcomes: Outcomes  # expected outcomes at the plan's bids and caps
    current: Outcomes  # expected outcomes of the log's recent bids, same horizon
    budget_used: float  # the budget the plan was solved for (targets may lower it)
    # The problem the allocation solves: inputs.problem with the min_budget
    # choices fixed (paused audiences capped at 0, raised ones floored at it).
    solved_problem: Problem | None = None
    paused: np.ndarray | None = None  # (A,) bool, paused for being below min_budget
    raised: np.ndarray | None = None  # (A,) bool, raised to min_budget
    notes: tuple[str, ...] = ()  # how the budget was chosen (targets, goal seeking)
    # With spend_all, the most the audiences can absorb when that is below the
    # budget (the plan is then solved for it); None otherwise.
    spendable: float | None = None


def resolve(
    market: FittedMarket,
    scenario: Scenario,
    settings: pd.DataFrame | None = None,
    budget: float | None = None,
) -> PlanInputs:
    """Build the Problem for ``scenario`` and check that it can be solved.

    Raises:
        InputError: unknown audiences or groups, value objective without values.
        InfeasibleError: minimum spends above the budget, a group cap or an
            audience's capacity.
    """
    names = market.names
    budget = scenario.effective_budget if budget is None else budget
    if budget is None:
        raise InputError(
            "no budget given: pass --budget AMOUNT or set 'budget' in the scenario file."
        )
    if (
        scenario.objective == "value"
        and not market.has_value
        and (settings is None or "value_per_conversion" not in settings.columns)
    ):
        raise InputError(
            "objective 'value' needs conversion values: the event log has no 'revenue' column, so add 'value_per_conversion' to the audience settings (--audiences FILE)."
        )
    params = apply_market_settings(market.params, settings, names, scenario)
    lower = setting(settings, names, "min_spend", 0.0)
    upper = setting(settings, names, "max_spend", np.inf)
    for audience, bound in scenario.bounds.items():
        i = index_of(names, [audience], "scenario [bounds]")[0]
        lower[i] = bound.get("min_spend", lower[i])
        upper[i] = bound.get("max_spend", upper[i])
    removed = np.zeros(len(names), bool)
    if scenario.remove_audiences:
        removed[
            index_of(names, scenario.remove_audiences, "scenario remove_audiences")
        ] = True
    lower, upper = np.where(removed, 0.0, lower), np.where(removed, 0.0, upper)
    bad = np.flatnonzero(lower > upper)
    if bad.size:
        raise InputError(
            f"audience '{names[bad[0]]}': min_spend {lower[bad[0]]:,.2f} is above max_spend {upper[bad[0]]:,.2f} once the scenario's bounds are applied."
        )
    # The planner's max bids win; otherwise bids stay near what the log has seen.
    max_bid = setting(settings, names, "max_bid", np.nan)
    check_bid_unit(max_bid, scenario.max_bid, market.bid_ceiling)
    if scenario.max_bid is not None:
        max_bid = np.fmin(max_bid, scenario.max_bid)
    max_bid = np.where(np.isnan(max_bid), market.bid_ceiling, max_bid)
    group, group_cap, groups = groups_of(settings, names, scenario)
    problem = make_problem(
        params,
        scenario.days,
        budget,
        lower,
        upper,
        max_bid,
        group,
        group_cap if groups else None,
    )
    first_price = (
        market.first_price
        if scenario.auction_type is None
        else scenario.auction_type == "first_price"
    )
    config = SolveConfig(scenario.objective, first_price, scenario.spend_all)
    check_feasible(problem, names, config, groups)
    default_min = 0.0 if not math.isfinite(budget) else DEFAULT_MIN_SHARE * budget
    if scenario.min_budget is not None:
        default_min = scenario.min_budget
    min_budget = setting(settings, names, "min_budget", default_min)
    return PlanInputs(
        names,
        problem,
        config,
        removed,
        groups,
        [],
        min_budget,
        currency_of(settings, scenario),
    )


def _solve(
    inputs: PlanInputs, budget: jax.Array, mesh: Mesh | None = None
) -> Allocation:
    """Allocate at ``budget``; audiences sharded over ``mesh`` when one is given."""
    problem = dataclasses.replace(
        inputs.problem, budget=jnp.asarray(budget, jnp.float64)
    )
    return _solve_problem(problem, inputs.config, mesh)


def _solve_problem(
    problem: Problem, config: SolveConfig, mesh: Mesh | None = None
) -> Allocation:
    if mesh is not None:
        return allocate_sharded(problem, mesh, config)
    return allocate_one(problem, config)


# Expected outcomes compiled as one program (per audience count and auction type).
_outcomes = devices.Stage(expected_outcomes, ("first_price",))


def outcomes_of(inputs: PlanInputs, allocation: Allocation) -> Outcomes:
    """Expected outcomes over the horizon at the allocation's bids and caps."""
    p = inputs.problem
    return _outcomes(
        p.params, allocation.bid, p.days, allocation.budget, inputs.config.first_price
    )


def _totals(
    problem: Problem, alloc: Allocation, first_price: bool
) -> tuple[jax.Array, jax.Array, jax.Array]:
    t = expected_outcomes(
        problem.params, alloc.bid, problem.days, alloc.budget, first_price
    ).totals()
    return t["spend"], t["conversions"], t["value"]


@devices.stage(("first_price",))
def _stacked_totals(
    stacked: Problem, alloc: Allocation, first_price: bool
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(S,) total spend, conversions and value of S stacked plans, one program."""
    return jax.vmap(lambda p, a: _totals(p, a, first_price))(stacked, alloc)


def _batch(
    inputs: PlanInputs, budgets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Total spend, conversions and value of optimal plans at each budget (one vmap)."""
    problem, config = inputs.problem, inputs.config
    stacked = jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(x, (len(budgets), *jnp.shape(x))), problem
    )
    stacked = dataclasses.replace(stacked, budget=jnp.asarray(budgets, jnp.float64))
    alloc = allocate_many(stacked, config)
    spend, conv, value = _stacked_totals(stacked, alloc, first_price=config.first_price)
    return np.asarray(spend), np.asarray(conv), np.asarray(value)


def _largest_ok(inputs: PlanInputs, low: float, high: float, ok) -> float | None:
    """Largest budget in [low, high] whose optimal plan satisfies ``ok`` (monotone)."""
    for _ in range(4):
        grid = np.linspace(low, high, _SEARCH_POINTS)
        good = ok(*_batch(inputs, grid))
        if not good.any():
            return None
        last = int(np.flatnonzero(good)[-1])
        if last == len(grid) - 1:
            return float(grid[-1])
        low, high = grid[last], grid[last + 1]
    return float(low)


def spendable(inputs: PlanInputs) -> float:
    """The most the audiences can spend over the horizon (currency): each at its
    highest allowed bid, within its max_spend and its group's cap."""
    p = inputs.problem
    each = np.minimum(np.asarray(p.upper), np.asarray(capacity_of(p, inputs.config)))
    caps = np.asarray(p.group_cap)
    if caps.size == 0:
        return float(np.sum(each, dtype=np.float64))
    by_group = np.bincount(np.asarray(p.group), weights=each, minlength=len(caps))
    return float(np.sum(np.minimum(by_group, caps), dtype=np.float64))


def current_outcomes(market: FittedMarket, inputs: PlanInputs) -> Outcomes:
    """Expected outcomes of the log's recent bids over the plan's horizon, uncapped."""
    p = inputs.problem
    return _outcomes(
        with_rule(p.params, None),  # the log's bids were flat
        jax.device_put(np.asarray(market.current_bid, np.float64)),
        p.days,
        None,
        inputs.config.first_price,
    )


def _within_targets(scenario: Scenario, spend, conv, value, rtol: float):
    """Whether totals (scalars or arrays) meet max_cpa and min_roas, to ``rtol``."""
    good = np.ones_like(np.asarray(spend), bool)
    if scenario.max_cpa is not None:
        good &= spend <= scenario.max_cpa * conv * (1 + rtol)
    if scenario.min_roas is not None:
        good &= value >= scenario.min_roas * spend * (1 - rtol)
    return good


def meets_targets(scenario: Scenario, outcomes: Outcomes) -> bool:
    """Whether a plan's expected totals meet the scenario's max_cpa and min_roas."""
    t = {k: float(v) for k, v in outcomes.totals().items()}
    return bool(
        _within_targets(scenario, t["spend"], t["conversions"], t["value"], 1e-6)
    )


def target_budget(inputs: PlanInputs, scenario: Scenario, budget: float) -> float:
    """Budget after CPA/ROAS targets: the largest that meets them (<= budget)."""
    if scenario.max_cpa is None and scenario.min_roas is None:
        return budget

    def ok(spend, conv, value):
        return _within_targets(scenario, spend, conv, value, 1e-9)

    floor = max(float(np.sum(np.asarray(inputs.problem.lower))), budget * 1e-4)
    found = _largest_ok(inputs, floor, budget, ok)
    if found is None:
        spend, conv, value = _batch(inputs, np.array([floor]))
        best = (
            f"CPA {spend[0] / max(conv[0], 1e-12):,.2f}"
            if scenario.max_cpa is not None
            else f"ROAS {value[0] / max(spend[0], 1e-12):.2f}"
        )
        raise InfeasibleError(
            f"no plan meets the target: even the smallest plan ({floor:,.2f}) reaches only {best}. Relax max_cpa/min_roas, lower min_spend values, or check the audiences' value settings."
        )
    if scenario.spend_all and found < budget * (1 - 1e-6):
        raise InfeasibleError(
            f"spend_all is set but the targets allow spending only {found:,.2f} of {budget:,.2f}. Drop spend_all or relax the targets."
        )
    return found


def goal_seek(inputs: PlanInputs, target: float, metric: str = "conversions") -> float:
    """Smallest budget whose optimal plan reaches ``target`` conversions (or value)."""
    cap_total = float(
        np.sum(
            np.minimum(
                np.asarray(inputs.problem.upper),
                np.asarray(capacity_of(inputs.problem, inputs.config)),
            )
        )
    )
    floor = float(np.sum(np.asarray(inputs.problem.lower)))
    column = 1 if metric == "conversions" else 2
    best = _batch(inputs, np.array([cap_total]))[column][0]
    if best < target:
        raise InfeasibleError(
            f"no budget reaches {target:,.0f} {metric}: spending everything the audiences can absorb ({cap_total:,.2f}) gives about {best:,.1f}. Add audiences, raise max bids or lengthen the horizon."
        )
    # Smallest budget reaching the target = complement of the largest that misses it.
    below = _largest_ok(inputs, floor, cap_total, lambda *t: t[column] < target)
    return cap_total if below is None else min(below * (1 + 1e-9) + 0.01, cap_total)


def solve_plan(
    market: FittedMarket,
    scenario: Scenario,
    settings: pd.DataFrame | None = None,
    budget: float | None = None,
    target_conversions: float | None = None,
    mesh: Mesh | None = None,
) -> SolvedPlan:
    """Resolve, search targets, allocate, and evaluate the plan and the current one.

    ``mesh``: shard the final solve's audiences over these devices (same plan).
    """
    notes: list[str] = []
    given = scenario.effective_budget if budget is None else budget
    if target_conversions is not None:
        metric = "value" if scenario.objective == "value" else "conversions"
        probe = resolve(market, scenario, settings, math.inf)
        budget = goal_seek(probe, target_conversions, metric)
        if given is not None and budget > given * (1 + 1e-9):
            raise InfeasibleError(
                f"reaching {target_conversions:,.0f} {metric} needs a budget of about {budget:,.2f}, above the budget given ({given:,.2f}). Raise the budget to {budget:,.2f}, or leave it out so the target sets it."
            )
        notes.append(
            f"Budget {budget:,.2f} is the smallest that reaches the target of {target_conversions:,.0f} {metric}"
            + (f" (the budget given, {given:,.2f}, is a ceiling)." if given else ".")
        )
    inputs = resolve(market, scenario, settings, budget)
    used = target_budget(inputs, scenario, float(inputs.problem.budget))
    most = spendable(inputs) if inputs.config.spend_all else math.inf
    if used > most * (1 + 1e-9):
        used = most  # spend_all cannot be met: solve for what can be spent
    allocation = _solve(inputs, used, mesh)
    at_used = dataclasses.replace(inputs.problem, budget=jnp.asarray(used, jnp.float64))
    solved_problem, floored, paused, raised = enforce_min_budget(
        at_used,
        inputs.config,
        inputs.min_budget,
        allocation,
        lambda problem: _solve_problem(problem, inputs.config, mesh),
    )
    if meets_targets(scenario, outcomes_of(inputs, floored)):
        allocation = floored
    else:  # pausing/raising would break a CPA/ROAS target: keep the exact plan
        solved_problem, paused, raised = at_used, None, None
        notes.append(
            "min_budget is not applied: pausing or raising the audiences below it would break the CPA/ROAS target, so every audience keeps the budget the target allows."
        )
    current = current_outcomes(market, inputs)
    return SolvedPlan(
        inputs,
        allocation,
        outcomes_of(inputs, allocation),
        current,
        used,
        solved_problem,
        paused,
        raised,
        tuple(notes),
        most if math.isfinite(most) and used == most else None,
    )
