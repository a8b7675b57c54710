"""How the optimal plan responds to its inputs, for plan.json's "sensitivities"."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from optimizer import devices
from optimizer.allocate.sensitivity import budget_sensitivity
from optimizer.plan.resolve import SolvedPlan


@devices.stage(("config",))
def _envelope_gradients(p, alloc, config) -> tuple[jax.Array, jax.Array]:
    """(A,) d Lagrangian / d price shift and d rate shift at the plan, decisions fixed."""
    from optimizer.allocate.problem import gain_at, spend_at
    from optimizer.market.params import shift_market

    a = alloc.bid.shape[0]
    u = jnp.log(alloc.bid)
    # The share of its auctions each audience joins (below 1 where throttled).
    uncapped = spend_at(p, u, config)
    share = jnp.where(uncapped > 0, alloc.spend / jnp.maximum(uncapped, 1e-300), 0.0)

    def lagrangian(price_shift, rate_shift):
        shocked = dataclasses.replace(
            p, params=shift_market(p.params, price_shift, rate_shift)
        )
        gains = gain_at(shocked, u, config) * share
        spends = spend_at(shocked, u, config) * share
        return jnp.sum(gains) - alloc.dual_price * (jnp.sum(spends) - p.budget)

    return jax.grad(lagrangian, argnums=(0, 1))(jnp.zeros(a), jnp.zeros(a))


_budget_sensitivity = devices.stage(("config",))(budget_sensitivity)


def sensitivities(plan: SolvedPlan) -> dict:
    """Envelope-theorem derivatives of the optimal objective (decisions held
    fixed) and, by implicit differentiation at the optimum, where the next unit
    of budget goes."""
    inputs, alloc = plan.inputs, plan.allocation
    d_price, d_rate = (
        np.asarray(x) for x in _envelope_gradients(inputs.problem, alloc, inputs.config)
    )
    solved = plan.solved_problem or inputs.problem
    d_spend, d_bid = (
        np.asarray(x) for x in _budget_sensitivity(solved, alloc, inputs.config)
    )
    return {
        "d_objective_d_budget": float(alloc.dual_price),
        "d_objective_d_price_level": float(np.sum(d_price)),
        "per_audience": {
            name: {
                "d_objective_d_price_shift": float(d_price[i]),
                "d_objective_d_rate_shift": float(d_rate[i]),
                "d_spend_d_budget": round(float(d_spend[i]), 6),
                "d_bid_d_budget": float(d_bid[i]),
            }
            for i, name in enumerate(inputs.names)
        },
        "meaning": "Change in the optimal objective per unit change: per extra currency unit of budget; per +100% of market prices (all audiences, or one); per +100% of one audience's conversion rate. Multiply by 0.1 for a 10% change. d_spend_d_budget: the share of the next currency unit of budget this audience's optimal spend takes (the shares add up to 1 where the budget binds; 0 where a bound holds the audience); d_bid_d_budget: how its optimal max bid moves per extra currency unit of budget.",
    }
