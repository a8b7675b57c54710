"""min_budget: each audience is paused or gets at least its minimum, chosen exactly."""

from __future__ import annotations

import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from optimizer.allocate.allocator import allocate
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.exact import solve_exact
from optimizer.allocate.problem import capacity, make_problem
from optimizer.errors import InputError
from optimizer.plan.min_budget import enforce_min_budget
from optimizer.plan.scenario import Scenario, scenario_from_mapping
from tests.markets import random_market

CONFIG = SolveConfig()


def _solve(problem):
    return allocate(problem, CONFIG, iterations=200)


def _setup(seed: int, share: float):
    params = random_market(seed, audiences=5)
    problem = make_problem(params, 7.0, 1.0)
    budget = (
        float(
            np.sum(
                np.asarray(
                    _solve(dataclasses.replace(problem, budget=jnp.asarray(1e9))).spend
                )
            )
        )
        * 0.3
    )
    problem = dataclasses.replace(problem, budget=jnp.asarray(budget))
    alloc = _solve(problem)
    spend = np.asarray(alloc.spend)
    # A minimum above the two smallest audiences' budgets makes both marginal.
    mins = np.full(5, share * np.sort(spend)[2])
    return problem, alloc, spend, mins


@pytest.mark.parametrize("seed", [1, 4])
def test_paused_or_at_least_the_minimum_and_best_of_all_choices(seed):
    problem, alloc, spend, mins = _setup(seed, 0.9)
    assert np.sum((spend > 0.005) & (spend < mins)) >= 1
    restricted, plan, paused, raised = enforce_min_budget(
        problem, CONFIG, mins, alloc, _solve
    )
    out = np.asarray(plan.spend)
    # An audience that cannot spend its minimum needs only what it can spend.
    mins = np.minimum(mins, np.asarray(capacity(problem, CONFIG)))
    assert np.all((out <= 0.01) | (out >= mins - 0.01))  # semi-continuous
    assert np.all(out[paused] <= 0.01) and np.all(out[raised] >= mins[raised] - 0.01)
    assert out.sum() <= float(problem.budget) + 0.01
    # Brute force: every audience paused or floored at its minimum, exact solver.
    best = -np.inf
    for mask in itertools.product((0, 1, 2), repeat=5):  # 0 pause, 1 free, 2 floor
        m = np.array(mask)
        lower = np.where(m == 2, mins, 0.0)
        upper = np.where(m == 0, 0.0, np.inf)
        if lower.sum() > float(problem.budget):
            continue
        cand = dataclasses.replace(
            problem, lower=jnp.asarray(lower), upper=jnp.asarray(upper)
        )
        sol = solve_exact(cand, CONFIG)
        s = np.asarray(sol.spend)
        if np.all((s <= 0.01) | (s >= mins - 0.01)):
            best = max(best, float(sol.objective))
    assert float(plan.objective) >= best * (1 - 2e-3)
    # The certificate is for the restricted problem: its bounds hold the choices.
    assert np.all(np.asarray(restricted.upper)[paused] == 0)
    assert float(plan.duality_gap) <= 1e-3 * float(plan.objective)


def test_nothing_changes_when_every_budget_is_usable():
    problem, alloc, _, _ = _setup(1, 0.9)
    tiny = np.full(5, 0.001)
    restricted, plan, paused, raised = enforce_min_budget(
        problem, CONFIG, tiny, alloc, _solve
    )
    assert restricted is problem and plan is alloc
    assert not paused.any() and not raised.any()


def test_min_budget_scenario_key_is_checked():
    assert scenario_from_mapping({"min_budget": 50}).min_budget == 50.0
    with pytest.raises(InputError, match="min_budget"):
        Scenario(min_budget=-1.0)


@pytest.mark.parametrize("seed", [3, 5, 8])
def test_min_budget_never_breaks_a_cpa_target(seed):
    """Pausing or raising audiences below min_budget moves money at a worse CPA; with
    a CPA target the plan and the what-if re-optimization still meet the target."""
    from optimizer.plan.batch import run_whatif
    from optimizer.plan.resolve import solve_plan
    from tests.markets import fitted_market

    market = fitted_market(seed, audiences=6)
    base = Scenario(budget=600.0, days=7.0, min_budget=60.0)
    plain = solve_plan(market, base)
    free = plain.outcomes.totals()
    max_cpa = 0.8 * float(free["spend"]) / float(free["conversions"])  # binding
    targeted = dataclasses.replace(base, max_cpa=max_cpa)
    t = solve_plan(market, targeted).outcomes.totals()
    assert float(t["spend"]) <= max_cpa * float(t["conversions"]) * (1 + 1e-6)
    bid, cap = np.asarray(plain.allocation.bid), np.asarray(plain.allocation.budget)
    table, _ = run_whatif(market, base, [targeted], None, bid, cap)
    row = table[table["variant"] == "reoptimized"].iloc[0]
    assert row["expected_spend"] <= max_cpa * row["expected_conversions"] * 1.001
