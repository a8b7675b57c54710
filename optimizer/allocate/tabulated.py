"""Fast exact solver: tabulated response curves, a table search for the budget
price, then joint Newton steps on the optimality conditions.

1. Each audience's spend and gain are tabulated once on a log-bid grid of
   ``cells`` cells, integrated from their slopes d spend / du and d gain / du by
   Gauss-Legendre quadrature (3 nodes per cell). The slopes need only the price
   density (exponentials, no normal CDF) on second-price markets.
2. The budget price lam is bisected on the tables: at each lam every audience
   takes the table point (spend clipped to its bounds) maximizing
   gain - lam x spend, a global choice among the basins of a non-concave curve;
   each step is multiply-add and argmax.
3. A few Newton steps on the exact curves solve the optimality conditions
   jointly: log marginal(u_a) = log lam for audiences between their bounds,
   spend(u_a) = bound for the others, and total spend = budget. The system is
   a diagonal block bordered by one row and column, solved in O(A).

No group caps and no padding (like :func:`~optimizer.allocate.exact.solve_exact`,
whose plan it reproduces; tests hold the two together). The tables need price
components wider than a table cell: on a market with price atoms use the exact
solver.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optimizer.allocate.config import DEFAULT_CONFIG, SolveConfig
from optimizer.allocate.exact import ExactSolution
from optimizer.allocate.problem import (
    Problem,
    capacity,
    gain_at,
    log_bid_bounds,
    log_marginal_at,
    marginal_slopes,
    spend_at,
)
from optimizer.allocate.tables import tabulate


def _tables(problem: Problem, config: SolveConfig, cells: int):
    """(A, cells + 1) log-bid edges and the spend and gain at each."""
    low, high = log_bid_bounds(problem)
    frac = jnp.linspace(0.0, 1.0, cells + 1)
    edges = low[:, None] + (high - low)[:, None] * frac[None, :]
    return (edges, *tabulate(problem, edges, config))


def _newton(problem, config, u, fixed, bound, jump, log_price, budget_binds):
    """One joint Newton step on (u, log price).

    ``fixed`` audiences solve spend = ``bound``; the others log marginal = log
    price and, with the total spend = budget, the price too, unless some
    audience jumps between basins (``jump`` > 0): the price then stays and the
    jumpers' spends fill the budget, in proportion to ``jump``.
    """

    log_m, curve, slope = marginal_slopes(problem, u, config)
    curve = jnp.minimum(curve, -1e-9)  # concave locally, or a gentle step
    spend = spend_at(problem, u, config)
    f = log_m - log_price
    jumpers = jump > 0
    free = ~fixed & ~jumpers
    weight = jnp.where(free, slope / curve, 0.0)
    # Total spend after the step, the price held, fixed audiences at their bounds.
    held = jnp.sum(jnp.where(fixed, bound, spend - jnp.where(free, weight * f, 0.0)))
    need = problem.budget - held
    d_log_price = jnp.where(
        budget_binds & (jnp.sum(weight) < 0) & ~jnp.any(jumpers),
        need / jnp.minimum(jnp.sum(weight), -1e-300),
        0.0,
    )
    fill = spend + need * jump / jnp.maximum(jnp.sum(jump), 1e-300)
    du = jnp.where(
        fixed | jumpers,
        (jnp.where(fixed, bound, fill) - spend) / jnp.maximum(slope, 1e-300),
        (d_log_price - f) / curve,
    )
    return u + jnp.clip(du, -0.5, 0.5), log_price + d_log_price


@jax.jit(static_argnames=("config", "cells", "steps", "newton"))
def solve_tabulated(
    problem: Problem,
    config: SolveConfig = DEFAULT_CONFIG,
    cells: int = 128,
    steps: int = 30,
    newton: int = 6,
) -> ExactSolution:
    """Optimal plan of ``problem`` (assumed feasible: sum(lower) <= budget).

    Spends the budget, or every audience's capacity where that is less.
    ``cells``: table cells per audience; ``steps``: bisection steps on the
    price; ``newton``: joint Newton steps on the exact curves.
    """
    low, high = log_bid_bounds(problem)
    upper = jnp.minimum(problem.upper, capacity(problem, config))
    lower = jnp.minimum(problem.lower, upper)
    edges, spend, gain = _tables(problem, config, cells)
    # Table points with spends clipped to the bounds (gain interpolated).
    clipped = jnp.clip(spend, lower[:, None], upper[:, None])
    gain_c = jax.vmap(jnp.interp)(clipped, spend, gain)

    def choice(log_price):
        score = gain_c - jnp.exp(log_price) * clipped
        return jnp.argmax(score, axis=1)

    def total(log_price):
        pick = choice(log_price)[:, None]
        return jnp.sum(jnp.take_along_axis(clipped, pick, 1))

    slope_hi = jnp.max(
        jnp.diff(gain, axis=1) / jnp.maximum(jnp.diff(spend, axis=1), 1e-300)
    )
    lo, hi = jnp.log(1e-12 * slope_hi + 1e-300), jnp.log(slope_hi) + 1.0

    def body(_, bracket):
        a, b = bracket
        mid = 0.5 * (a + b)
        over = total(mid) > problem.budget
        return jnp.where(over, mid, a), jnp.where(over, b, mid)

    over_price, log_price = jax.lax.fori_loop(0, steps, body, (lo, hi))
    budget_binds = jnp.sum(upper) > problem.budget
    pick = choice(log_price)[:, None]
    s_pick = jnp.take_along_axis(clipped, pick, 1)[:, 0]
    # A non-concave audience may jump between basins as the price crosses the
    # bracket: the budget the others leave goes to the jumpers, in proportion to
    # their jumps (exact when one jumps, as in the exact solver).
    pick_over = choice(over_price)[:, None]
    s_over = jnp.take_along_axis(clipped, pick_over, 1)[:, 0]
    jump = jnp.where(
        (jnp.abs(pick_over - pick)[:, 0] > 2) & budget_binds, s_over - s_pick, 0.0
    )
    jump = jnp.maximum(jump, 0.0)
    left = jnp.maximum(problem.budget - jnp.sum(s_pick), 0.0)
    target = s_pick + jump * jnp.minimum(1.0, left / jnp.maximum(jnp.sum(jump), 1e-300))
    u = jax.vmap(jnp.interp)(target, spend, edges)
    tol = 1e-9 * (upper + problem.budget / upper.shape[0])
    at_lower = (target <= lower + tol) & budget_binds
    at_upper = (target >= upper - tol) | ~budget_binds
    fixed = at_lower | at_upper
    jump = jnp.where(fixed, 0.0, jump)
    bound = jnp.where(at_lower, lower, upper)
    u = jnp.where(~budget_binds, high, u)

    def solve(state, fixed, bound):
        def step(_, state):
            return _newton(
                problem, config, state[0], fixed, bound, jump, state[1], budget_binds
            )

        return jax.lax.fori_loop(0, newton, step, state)

    # The table sets which bounds bind to its resolution: solve, then free the
    # bound audiences whose marginal says they would move off their bound, bind
    # the free ones that crossed one, and solve again.
    u, log_price = solve((u, log_price), fixed, bound)
    marginal = log_marginal_at(problem, u, config) - log_price
    s = spend_at(problem, u, config)
    release = (at_lower & (marginal > 0)) | (at_upper & budget_binds & (marginal < 0))
    to_lower = ~fixed & (s < lower) & budget_binds
    to_upper = ~fixed & (s > upper)
    at_lower = (at_lower & ~release) | to_lower
    at_upper = (at_upper & ~release) | to_upper
    u, log_price = solve(
        (u, log_price), at_lower | at_upper, jnp.where(at_lower, lower, upper)
    )
    u = jnp.clip(u, low, high)
    gains = gain_at(problem, u, config)
    return ExactSolution(
        u,
        spend_at(problem, u, config),
        gains,
        jnp.where(budget_binds, jnp.exp(log_price), 0.0),
        jnp.sum(gains),
    )
