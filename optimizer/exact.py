"""Exact reference solver: Lagrangian dual on the budget price, bisection per audience.

For a budget price lam (objective per currency unit), each audience spends where
its marginal return equals lam, clipped to its bounds; the total spend falls as
lam rises, so an outer bisection on log(lam) finds the price that spends the
budget. Exact to bisection precision for concave responses (marginal return
falling with spend). The tests check the gradient allocator against it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from optimizer.problem import (
    Problem,
    bid_for_spend,
    bisect,
    capacity,
    gain_at,
    log_bid_bounds,
    log_marginal_at,
    spend_at,
)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ExactSolution:
    """Optimum of a Problem. Arrays are (A,) unless noted."""

    log_bid: jax.Array
    spend: jax.Array
    gain: jax.Array
    dual_price: jax.Array  # () objective per extra currency unit of budget
    objective: jax.Array  # () total objective


def inner_spend(
    problem: Problem,
    log_price: jax.Array,
    objective: str,
    first_price: bool,
    steps: int = 60,
) -> jax.Array:
    """(A,) spend that maximizes gain - price * spend per audience, within bounds."""
    low, high = log_bid_bounds(problem)
    u = bisect(
        lambda u: log_price - log_marginal_at(problem, u, objective, first_price),
        low,
        high,
        steps,
    )
    upper = jnp.minimum(problem.upper, capacity(problem, first_price))
    return jnp.clip(spend_at(problem, u, first_price), problem.lower, upper)


@jax.jit(static_argnames=("objective", "first_price", "steps"))
def solve_exact(
    problem: Problem,
    objective: str = "conversions",
    first_price: bool = False,
    steps: int = 60,
) -> ExactSolution:
    """Optimal plan of ``problem`` (assumes it is feasible: sum(lower) <= budget)."""
    low, high = log_bid_bounds(problem)
    m_low = log_marginal_at(problem, low, objective, first_price)
    m_high = log_marginal_at(problem, high, objective, first_price)
    lo_price = jnp.min(m_high) - 1.0
    hi_price = jnp.max(m_low) + 1.0

    def excess(log_price: jax.Array) -> jax.Array:
        return problem.budget - jnp.sum(
            inner_spend(problem, log_price, objective, first_price, steps)
        )

    upper = jnp.minimum(problem.upper, capacity(problem, first_price))
    binding = jnp.sum(upper) > problem.budget
    log_price = bisect(excess, lo_price, hi_price, steps)
    spend = jnp.where(
        binding, inner_spend(problem, log_price, objective, first_price, steps), upper
    )
    u = bid_for_spend(problem, spend, first_price, steps)
    gains = gain_at(problem, u, objective)
    return ExactSolution(
        u, spend, gains, jnp.where(binding, jnp.exp(log_price), 0.0), jnp.sum(gains)
    )
