"""Shadow prices of a plan's constraints, read off the allocator's certificate.

At the optimum each audience's marginal return m_a equals its price: the budget
price plus its group's cap price, except where a bound holds it. The gap
between the two is what that bound costs: m_a - price for a binding max spend
(or max bid), price - m_a for a binding min spend. A max bid that holds an
audience at its capacity costs (m_a - price) x d spend / d bid.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from optimizer.allocate import response
from optimizer.allocate.allocator import Allocation
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import Problem, market


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BoundPrices:
    """Extra objective per unit of relaxing each per-audience constraint, (A,).

    Zero where the constraint does not bind.

    Attributes:
        max_spend: per extra currency unit of max spend.
        min_spend: per currency unit less of min spend.
        max_bid: per extra currency unit of max bid per impression.
    """

    max_spend: jax.Array
    min_spend: jax.Array
    max_bid: jax.Array


@jax.jit(static_argnames=("config",))
def bound_prices(
    problem: Problem, alloc: Allocation, config: SolveConfig
) -> BoundPrices:
    """Shadow prices of the spend bounds and max bids of ``alloc`` on ``problem``."""
    price = alloc.dual_price
    if problem.group_cap.shape[0]:
        price = price + alloc.group_price[problem.group]
    gap = alloc.marginal - price
    tol = 1e-6 * problem.budget / problem.lower.shape[0] + 1e-9
    spend = alloc.spend
    at_upper = jnp.isfinite(problem.upper) & (spend >= problem.upper - tol)
    at_lower = (problem.lower > 0) & (spend <= problem.lower + tol)
    u = jnp.log(alloc.bid)
    at_bid = (spend > tol) & (u >= problem.max_log_bid - 1e-4) & ~at_upper
    slope = problem.auctions * jnp.exp(
        jax.vmap(response.log_spend_slope, in_axes=(0, 0, None))(
            market(problem), u, config
        )
    )  # d spend / d log bid
    return BoundPrices(
        max_spend=jnp.where(at_upper, jnp.maximum(gap, 0.0), 0.0),
        min_spend=jnp.where(at_lower, jnp.maximum(-gap, 0.0), 0.0),
        max_bid=jnp.where(at_bid, jnp.maximum(gap, 0.0) * slope / alloc.bid, 0.0),
    )
