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

from optimizer.allocate.allocator import Allocation, allocate
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import Problem, capacity, make_problem
from optimizer.allocate.sharded import allocate_sharded
from optimizer.errors import InfeasibleError, InputError
from optimizer.market.fit import FittedMarket
from optimizer.market.params import (
    MarketParams,
    Outcomes,
    expected_outcomes,
    shift_market,
)
from optimizer.plan.min_budget import enforce_min_budget
from optimizer.plan.scenario import Scenario

_SEARCH_POINTS = 33  # budgets per batched solve when searching for targets
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


def _index(names: list[str], audiences, where: str) -> np.ndarray:
    lookup = {n: i for i, n in enumerate(names)}
    unknown = [a for a in audiences if a not in lookup]
    if unknown:
        raise InputError(
            f"{where}: unknown audience(s) {', '.join(repr(u) for u in unknown[:5])}. Use names exactly as in the event log: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}."
        )
    return np.array([lookup[a] for a in audiences], dtype=int)


def _setting(
    settings: pd.DataFrame | None, names: list[str], column: str, default: float
) -> np.ndarray:
    values = np.full(len(names), default, dtype=float)
    if settings is not None and column in settings.columns:
        idx = _index(names, settings["audience"], "audience settings")
        given = settings[column].to_numpy(dtype=float)
        values[idx] = np.where(np.isnan(given), default, given)
    return values


def _apply_market_settings(
    params: MarketParams,
    settings: pd.DataFrame | None,
    names: list[str],
    scenario: Scenario,
) -> MarketParams:
    volume = _setting(settings, names, "volume_per_day", np.nan)
    value = _setting(settings, names, "value_per_conversion", np.nan)
    params = dataclasses.replace(
        params,
        volume_per_day=jnp.where(jnp.isnan(volume), params.volume_per_day, volume),
        value=jnp.where(jnp.isnan(value)[:, None], params.value, value[:, None]),
    )
    rate = np.zeros(len(names))
    if scenario.rate_shift:
        rate[_index(names, list(scenario.rate_shift), "scenario [rate_shift]")] = list(
            scenario.rate_shift.values()
        )
    return shift_market(params, scenario.price_shift, jnp.asarray(rate))


def _groups(
    settings: pd.DataFrame | None, names: list[str], scenario: Scenario
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if not scenario.group_caps:
        return np.zeros(len(names), int), np.zeros(0), []
    if settings is None or "group" not in settings.columns:
        raise InputError(
            "scenario [group_caps] needs a 'group' column in the audience settings (--audiences FILE) saying which audiences belong to each group."
        )
    labels = np.array([""] * len(names), dtype=object)
    labels[_index(names, settings["audience"], "audience settings")] = settings[
        "group"
    ].to_numpy()
    unknown = [g for g in scenario.group_caps if g not in set(labels)]
    if unknown:
        raise InputError(
            f"scenario [group_caps]: no audience is in group(s) {unknown}; groups in the settings: {sorted(set(labels) - {''})}."
        )
    groups = list(scenario.group_caps)
    lookup = {g: i for i, g in enumerate(groups)}
    index = np.array([lookup.get(lbl, len(groups)) for lbl in labels])
    caps = np.array([*scenario.group_caps.values(), np.inf])
    return index, caps, [*groups, "(no cap)"]


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
    params = _apply_market_settings(market.params, settings, names, scenario)
    lower = _setting(settings, names, "min_spend", 0.0)
    upper = _setting(settings, names, "max_spend", np.inf)
    for audience, bound in scenario.bounds.items():
        i = _index(names, [audience], "scenario [bounds]")[0]
        lower[i] = bound.get("min_spend", lower[i])
        upper[i] = bound.get("max_spend", upper[i])
    removed = np.zeros(len(names), bool)
    if scenario.remove_audiences:
        removed[
            _index(names, scenario.remove_audiences, "scenario remove_audiences")
        ] = True
    lower, upper = np.where(removed, 0.0, lower), np.where(removed, 0.0, upper)
    bad = np.flatnonzero(lower > upper)
    if bad.size:
        raise InputError(
            f"audience '{names[bad[0]]}': min_spend {lower[bad[0]]:,.2f} is above max_spend {upper[bad[0]]:,.2f} once the scenario's bounds are applied."
        )
    # The planner's max bids win; otherwise bids stay near what the log has seen.
    max_bid = _setting(settings, names, "max_bid", np.nan)
    _check_bid_unit(max_bid, scenario.max_bid, market.bid_ceiling)
    if scenario.max_bid is not None:
        max_bid = np.fmin(max_bid, scenario.max_bid)
    max_bid = np.where(np.isnan(max_bid), market.bid_ceiling, max_bid)
    group, group_cap, groups = _groups(settings, names, scenario)
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
    _check_feasible(problem, names, config, groups)
    default_min = 0.0 if not math.isfinite(budget) else DEFAULT_MIN_SHARE * budget
    if scenario.min_budget is not None:
        default_min = scenario.min_budget
    min_budget = _setting(settings, names, "min_budget", default_min)
    return PlanInputs(
        names,
        problem,
        config,
        removed,
        groups,
        [],
        min_budget,
        _currency(settings, scenario),
    )


def _currency(settings: pd.DataFrame | None, scenario: Scenario) -> str:
    """The money unit: the scenario's, else the settings' 'currency' column."""
    if scenario.currency:
        return scenario.currency
    if settings is not None and "currency" in settings.columns:
        given = sorted({str(c).strip() for c in settings["currency"].dropna()} - {""})
        if len(given) > 1:
            raise InputError(
                f"audience settings: column 'currency' names {len(given)} currencies ({', '.join(given)}); one plan uses one currency."
            )
        if given:
            return given[0]
    return "currency units"


def _check_bid_unit(
    settings_bid: np.ndarray, scenario_bid: float | None, ceiling: np.ndarray
) -> None:
    """Refuse max bids 100x or more above the log's bids: a CPM taken per impression."""
    highest = float(np.max(ceiling)) / 3.0  # the ceiling is 3x the logged bids
    for where, bid in (
        ("max_bid (--max-bid or scenario)", scenario_bid),
        ("audience settings column 'max_bid'", np.nanmax(settings_bid, initial=0.0)),
    ):
        if bid is not None and bid >= 100 * highest:
            raise InputError(
                f"{where} = {bid:g} is a bid per impression, {bid / highest:,.0f}x the highest bids in the log (about {highest:.4g} per impression, CPM {1000 * highest:.4g}). If you meant CPM {bid:g}, use --max-bid-cpm {bid:g} (= --max-bid {bid / 1000:g}) or max_bid {bid / 1000:g}."
            )


# Compiled once per audience count (not op by op, as an eager call would).
_capacity = jax.jit(capacity, static_argnames=("config",))


def _check_feasible(
    problem: Problem, names: list[str], config: SolveConfig, groups: list[str]
) -> None:
    lower = np.asarray(problem.lower)
    budget = float(problem.budget)
    if lower.sum() > budget + 1e-9:
        raise InfeasibleError(
            f"the minimum spends add up to {lower.sum():,.2f} but the budget is {budget:,.2f}. Raise the budget to at least {lower.sum():,.2f} or lower some min_spend values."
        )
    cap = np.asarray(_capacity(problem, config))
    short = np.flatnonzero(lower > cap * (1 + 1e-9))
    if short.size:
        i = short[0]
        raise InfeasibleError(
            f"audience '{names[i]}' has min_spend {lower[i]:,.2f}, but at its highest allowed bid it can only spend about {cap[i]:,.2f} in {float(problem.days):g} days. Lower its min_spend, raise its max_bid or plan a longer horizon."
        )
    if groups:
        caps = np.asarray(problem.group_cap)
        floors = np.bincount(
            np.asarray(problem.group), weights=lower, minlength=len(caps)
        )
        over = np.flatnonzero(floors > caps + 1e-9)
        if over.size:
            g = over[0]
            raise InfeasibleError(
                f"group '{groups[g]}' has a cap of {caps[g]:,.2f} but its audiences' minimum spends add up to {floors[g]:,.2f}."
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
    return allocate(problem, config)


# Expected outcomes compiled as one program (per audience count and auction type).
_outcomes = jax.jit(expected_outcomes, static_argnames=("first_price",))


def outcomes_of(inputs: PlanInputs, allocation: Allocation) -> Outcomes:
    """Expected outcomes over the horizon at the allocation's bids and caps."""
    p = inputs.problem
    return _outcomes(
        p.params, allocation.bid, p.days, allocation.budget, inputs.config.first_price
    )


@jax.jit(static_argnames=("config",))
def _batch_totals(
    problem: Problem, budgets: jax.Array, config: SolveConfig
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(B,) total spend, conversions and value of the optimal plan at each budget."""

    def totals(b):
        alloc = allocate(dataclasses.replace(problem, budget=b), config)
        t = expected_outcomes(
            problem.params, alloc.bid, problem.days, alloc.budget, config.first_price
        ).totals()
        return t["spend"], t["conversions"], t["value"]

    return jax.vmap(totals)(budgets)


def _batch(
    inputs: PlanInputs, budgets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Total spend, conversions and value of optimal plans at each budget (one vmap)."""
    spend, conv, value = _batch_totals(
        inputs.problem, jnp.asarray(budgets, jnp.float64), inputs.config
    )
    return np.asarray(spend), np.asarray(conv), np.asarray(value)


def _largest_ok(inputs: PlanInputs, low: float, high: float, ok) -> float | None:
    """Largest budget in [low, high] whose optimal plan satisfies ``ok`` (monotone)."""
    for _ in range(3):
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
    each = np.minimum(np.asarray(p.upper), np.asarray(capacity(p, inputs.config)))
    caps = np.asarray(p.group_cap)
    if caps.size == 0:
        return float(np.sum(each, dtype=np.float64))
    by_group = np.bincount(np.asarray(p.group), weights=each, minlength=len(caps))
    return float(np.sum(np.minimum(by_group, caps), dtype=np.float64))


def target_budget(inputs: PlanInputs, scenario: Scenario, budget: float) -> float:
    """Budget after CPA/ROAS targets: the largest that meets them (<= budget)."""
    if scenario.max_cpa is None and scenario.min_roas is None:
        return budget

    def ok(spend, conv, value):
        good = np.ones_like(spend, bool)
        if scenario.max_cpa is not None:
            good &= spend <= scenario.max_cpa * conv * (1 + 1e-9)
        if scenario.min_roas is not None:
            good &= value >= scenario.min_roas * spend * (1 - 1e-9)
        return good

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
                np.asarray(capacity(inputs.problem, inputs.config)),
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
    solved_problem, allocation, paused, raised = enforce_min_budget(
        at_used,
        inputs.config,
        inputs.min_budget,
        allocation,
        lambda problem: _solve_problem(problem, inputs.config, mesh),
    )
    p = inputs.problem
    current = _outcomes(
        p.params,
        jnp.asarray(market.current_bid),
        p.days,
        None,
        inputs.config.first_price,
    )
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
