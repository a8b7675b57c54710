"""Where the next unit of budget goes: implicit derivatives against re-solves."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.allocate.allocator import allocate
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import capacity, make_problem
from optimizer.allocate.sensitivity import budget_sensitivity
from tests.markets import random_market

DAYS = 7.0


@pytest.mark.parametrize("first_price", [False, True])
def test_budget_derivatives_match_re_solves(first_price):
    """Concave markets, one audience held at a max spend and one at a min spend:
    d spend / d budget and d bid / d budget match central differences of two
    re-solves, add up to 1 and are 0 for the held audiences."""
    config = SolveConfig(first_price=first_price)
    params = random_market(4, audiences=6, components=1)
    cap = np.asarray(capacity(make_problem(params, DAYS, 1.0), config))
    budget = 0.3 * cap.sum()
    upper = np.full(6, np.inf)
    upper[0] = 0.02 * cap[0]
    lower = np.zeros(6)
    lower[1] = 0.9 * cap[1]

    def solve(b):
        return allocate(make_problem(params, DAYS, b, lower, upper), config)

    alloc = solve(budget)
    problem = make_problem(params, DAYS, budget, lower, upper)
    d_spend, d_bid = (np.asarray(x) for x in budget_sensitivity(problem, alloc, config))
    h = 1e-4 * budget
    up, down = solve(budget + h), solve(budget - h)
    fd_spend = (np.asarray(up.spend) - np.asarray(down.spend)) / (2 * h)
    fd_bid = (np.asarray(up.bid) - np.asarray(down.bid)) / (2 * h)
    assert d_spend.sum() == pytest.approx(1.0, abs=1e-9)
    assert d_spend[0] == 0.0 and d_spend[1] == 0.0
    np.testing.assert_allclose(d_spend, fd_spend, atol=1e-5)
    np.testing.assert_allclose(d_bid, fd_bid, rtol=1e-4, atol=1e-12)


def test_nothing_moves_when_the_budget_does_not_bind():
    params = random_market(4, audiences=6, components=1)
    config = SolveConfig()
    cap = np.asarray(capacity(make_problem(params, DAYS, 1.0), config))
    problem = make_problem(params, DAYS, 2.0 * cap.sum())
    d_spend, d_bid = budget_sensitivity(problem, allocate(problem, config), config)
    assert np.all(np.asarray(d_spend) == 0.0) and np.all(np.asarray(d_bid) == 0.0)
