"""Constraint costs against brute-force re-solves with the exact reference solver."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from optimizer.allocate.allocator import allocate
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.exact import solve_exact
from optimizer.allocate.problem import capacity, make_problem
from optimizer.market.params import expected_outcomes
from optimizer.plan.costs import constraint_costs, round_step
from optimizer.plan.resolve import PlanInputs, SolvedPlan
from optimizer.plan.scenario import Scenario
from tests.markets import random_market

CONFIG = SolveConfig()


def _plan(problem, groups=()):
    a = problem.lower.shape[0]
    inputs = PlanInputs(
        [f"aud{i}" for i in range(a)],
        problem,
        CONFIG,
        np.zeros(a, bool),
        list(groups),
        [],
        None,
        "EUR",
    )
    alloc = allocate(problem, CONFIG, iterations=200)
    out = expected_outcomes(problem.params, alloc.bid, problem.days, alloc.budget)
    return SolvedPlan(inputs, alloc, out, out, float(problem.budget))


def _exact(problem) -> float:
    return float(solve_exact(problem, CONFIG).objective)


def test_round_steps_are_round():
    assert round_step(123.0) == 100.0
    assert round_step(30.0) == 20.0
    assert round_step(7.0) == 5.0
    assert round_step(0.03) == pytest.approx(0.02)


def test_max_spend_and_budget_costs_match_brute_force_resolves():
    params = random_market(11, audiences=4)
    free = make_problem(params, 7.0, 1.0)
    cap = np.asarray(capacity(free, CONFIG))
    budget = 0.3 * cap.sum()
    plan0 = allocate(make_problem(params, 7.0, budget), CONFIG, iterations=200)
    best = int(np.argmax(np.asarray(plan0.spend)))
    upper = np.full(4, np.inf)
    upper[best] = 0.5 * float(plan0.spend[best])  # binds hard
    problem = make_problem(params, 7.0, budget, upper=jnp.asarray(upper))
    costs = constraint_costs(_plan(problem), Scenario(budget=budget, days=7.0))
    kinds = {(c["constraint"], c["audience"]) for c in costs}
    assert ("max_spend", f"aud{best}") in kinds and ("budget", None) in kinds
    base = _exact(problem)
    for c in costs:
        if c["constraint"] == "max_spend":
            i = int(c["audience"][3:])
            relaxed = dataclasses.replace(problem, upper=problem.upper.at[i].add(1.0))
            stepped = dataclasses.replace(
                problem, upper=problem.upper.at[i].add(c["step"])
            )
        else:
            relaxed = dataclasses.replace(problem, budget=problem.budget + 1.0)
            stepped = dataclasses.replace(problem, budget=problem.budget + c["step"])
        assert c["per_unit"] == pytest.approx(_exact(relaxed) - base, rel=0.05)
        assert c["gain_at_step"] == pytest.approx(_exact(stepped) - base, rel=0.02)
        assert c["gain_at_step"] > 0 and "EUR would buy" in c["sentence"]
        assert c["unit"] == "currency" and c["limit"] > 0
    assert costs == sorted(costs, key=lambda c: -c["gain_at_step"])


def test_min_spend_group_cap_and_max_bid_are_priced():
    params = random_market(5, audiences=4)
    free = make_problem(params, 7.0, 1.0)
    cap = np.asarray(capacity(free, CONFIG))
    budget = 0.4 * cap.sum()
    plan0 = allocate(make_problem(params, 7.0, budget), CONFIG, iterations=200)
    spend = np.asarray(plan0.spend)
    worst = 2 + int(np.argmin(spend[2:]))  # outside the capped group
    lower = np.zeros(4)
    lower[worst] = min(spend[worst] + 0.1 * budget, 0.9 * cap[worst])
    group = np.array([0, 0, 1, 1])
    group_cap = np.array([0.5 * spend[:2].sum(), np.inf])
    problem = make_problem(
        params, 7.0, budget, lower=jnp.asarray(lower), group=group, group_cap=group_cap
    )
    plan = _plan(problem, groups=["g0", "(no cap)"])
    costs = constraint_costs(plan, Scenario(budget=budget, days=7.0))
    by_kind = {c["constraint"]: c for c in costs}
    assert {"min_spend", "group_cap"} <= set(by_kind)
    assert by_kind["group_cap"]["group"] == "g0"
    for c in costs:  # each step's gain is a re-solve: check against one more
        assert c["gain_at_step"] >= 0
        assert c["per_unit"] * c["step"] == pytest.approx(
            c["gain_at_step"], rel=0.5, abs=1e-3
        )
    # A tight max bid on a busy audience binds and is priced per CPM.
    top = int(np.argmax(np.asarray(plan.allocation.spend)))
    max_bid = np.full(4, np.inf)
    max_bid[top] = 0.6 * float(plan0.bid[top])
    tight = make_problem(params, 7.0, budget, max_bid=jnp.asarray(max_bid))
    bid_costs = [
        c
        for c in constraint_costs(_plan(tight), Scenario(budget=budget, days=7.0))
        if c["constraint"] == "max_bid"
    ]
    assert bid_costs and bid_costs[0]["unit"] == "CPM"
    assert bid_costs[0]["per_unit"] > 0 and "CPM" in bid_costs[0]["sentence"]
