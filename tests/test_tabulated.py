"""The fast tabulated solver against the exact dual solver."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.allocate.config import SolveConfig
from optimizer.allocate.exact import solve_exact
from optimizer.allocate.problem import capacity, make_problem
from optimizer.allocate.tabulated import solve_tabulated
from tests.markets import random_market

AUDIENCES = 8


@pytest.mark.parametrize("first_price", [False, True])
@pytest.mark.parametrize("objective", ["conversions", "value"])
@pytest.mark.parametrize("bounded", [False, True])
def test_matches_the_exact_solver(first_price, objective, bounded):
    """Random two-price-mode markets, budgets 5%-150% of capacity: the same
    objective within budget and bounds, to 1e-6 where no audience jumps between
    basins; where one does (its curve not concave), both solvers give it the
    budget the others leave at the price where its basins tie, which the
    tables locate to about 1e-5."""
    config = SolveConfig(objective, first_price)
    for seed in range(4):
        params = random_market(seed, audiences=AUDIENCES, strata=4)
        rng = np.random.default_rng(seed)
        cap = np.asarray(capacity(make_problem(params, 7.0, 1.0), config))
        share = [0.05, 0.3, 0.7, 1.5][seed]
        lower = upper = None
        if bounded:
            lower = np.where(rng.uniform(size=AUDIENCES) < 0.3, 0.1 * cap * share, 0.0)
            upper = np.where(rng.uniform(size=AUDIENCES) < 0.3, 0.5 * cap, np.inf)
            lower = np.minimum(lower, np.minimum(upper, cap))
        problem = make_problem(params, 7.0, share * cap.sum(), lower, upper)
        fast = solve_tabulated(problem, config)
        exact = solve_exact(problem, config)
        assert float(fast.objective) >= float(exact.objective) * (1 - 1e-5), seed
        spend = np.asarray(fast.spend)
        assert spend.sum() <= float(problem.budget) * (1 + 1e-9)
        assert np.all(spend >= np.asarray(problem.lower) * (1 - 1e-9) - 1e-9)
        assert np.all(spend <= np.asarray(problem.upper) * (1 + 1e-9))
