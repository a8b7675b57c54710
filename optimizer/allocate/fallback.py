"""The exact dual solver's plan as an Allocation, for markets where the projected
steps stall.

Price atoms make a response step-like: the allocator's curvature-scaled steps
can settle far from the optimum there, and its certificate says so (a loose
duality gap). :func:`~optimizer.allocate.exact.solve_exact` searches each
audience's bids globally at every budget price and does not stall;
:func:`~optimizer.allocate.buckets.allocate_one` keeps its plan when better.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optimizer.allocate.allocation import Allocation, kkt_residual, within_budget
from optimizer.allocate.config import DEFAULT_CONFIG, SolveConfig
from optimizer.allocate.exact import dual_terms, solve_exact
from optimizer.allocate.problem import (
    Problem,
    capacity,
    gain_at,
    log_marginal_at,
    spend_at,
)


@jax.jit(static_argnames=("config",))
def exact_allocation(
    problem: Problem, config: SolveConfig = DEFAULT_CONFIG
) -> Allocation:
    """The exact dual solver's plan (:func:`~optimizer.allocate.exact.solve_exact`)
    as an Allocation with its certificate: the global per-audience search does
    not stall where price atoms make a response step-like, as the projected steps
    can. No group caps (the exact solver does not know them); no padding."""
    upper = jnp.minimum(problem.upper, capacity(problem, config))
    lower = jnp.minimum(problem.lower, upper)
    solution = solve_exact(problem, config)
    u = solution.log_bid
    s = spend_at(problem, u, config)
    cap = within_budget(jnp.minimum(s, upper), lower, problem.budget)
    gains = gain_at(problem, u, config) * jnp.where(
        s > 0, cap / jnp.maximum(s, 1e-300), 0.0
    )
    m = jnp.exp(log_marginal_at(problem, u, config))
    price = solution.dual_price
    dual_rest, _ = dual_terms(problem, price, config)
    total = jnp.sum(gains)
    a = problem.lower.shape[0]
    return Allocation(
        bid=jnp.exp(u),
        budget=cap,
        spend=cap,
        gain=gains,
        marginal=m,
        dual_price=price,
        objective=total,
        kkt_residual=kkt_residual(
            m,
            cap,
            lower,
            upper,
            jnp.broadcast_to(price, m.shape),
            problem.budget / a,
            None,
        ),
        duality_gap=jnp.maximum(price * problem.budget + dual_rest - total, 0.0),
        group_price=jnp.zeros(problem.group_cap.shape[0]),
    )
