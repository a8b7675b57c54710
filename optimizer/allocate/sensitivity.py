"""How a plan moves with its budget: implicit differentiation at the optimum.

At the optimum every audience between its bounds has log marginal(u_a) = log
lam and the spends add up to the budget B. Differentiating both in B, with
c_a = d log marginal / du and s'_a = d spend / du at the plan:
  c_a du_a = d log lam,   sum_a s'_a du_a = dB,
so d log lam / dB = 1 / sum_a (s'_a / c_a) and du_a / dB = (d log lam / dB) / c_a:
a bordered-diagonal system solved in O(A). Audiences held by a bound (min or
max spend, capacity, the max bid), throttled ones and members of a binding
group cap keep their spend; where no budget binds nothing moves.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optimizer.allocate.allocation import Allocation
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import Problem, capacity, marginal_slopes, spend_at


def budget_sensitivity(
    problem: Problem, alloc: Allocation, config: SolveConfig
) -> tuple[jax.Array, jax.Array]:
    """(A,) d spend / d budget (currency per currency; sums to 1 where the budget
    binds) and (A,) d bid / d budget (bid currency per budget currency).

    Pure (jit it at the caller's stage boundary)."""
    u = jnp.log(alloc.bid)

    _, curve, slope = marginal_slopes(problem, u, config)
    spend = alloc.spend
    share = problem.budget / spend.shape[0]
    tol = 1e-6 * share + 1e-9
    upper = jnp.minimum(problem.upper, capacity(problem, config))
    uncapped = spend_at(problem, u, config)
    free = (
        (spend > problem.lower + tol)
        & (spend < upper - tol)
        & (spend > tol)
        & (uncapped <= spend * (1 + 1e-9) + tol)  # not throttled
        & (u < problem.max_log_bid - 1e-4)
        & (curve < 0)
    )
    if problem.group_cap.shape[0]:
        free = free & (alloc.group_price[problem.group] <= 0)
    weight = jnp.where(free, slope / jnp.where(free, curve, -1.0), 0.0)
    binds = (alloc.dual_price > 0) & (jnp.sum(weight) < 0)
    d_log_price = jnp.where(binds, 1.0 / jnp.minimum(jnp.sum(weight), -1e-300), 0.0)
    du = jnp.where(free, d_log_price / jnp.where(free, curve, -1.0), 0.0)
    return slope * du, alloc.bid * du
