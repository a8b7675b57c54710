"""A plan and its certificate, and the checks every solver's plan shares."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from optimizer import devices


@devices.exportable
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Allocation:
    """A plan and its certificate. Arrays are (A,) unless noted; money in currency.

    Attributes:
        bid: max bid per impression.
        budget: budget cap over the horizon (expected spend; throttles if needed).
        spend: expected spend over the horizon (<= budget).
        gain: expected objective over the horizon (conversions or value).
        marginal: extra objective per extra currency unit in this audience.
        dual_price: () extra objective per extra unit of total budget.
        objective: () total expected objective.
        kkt_residual: () largest relative violation of the optimality conditions.
        duality_gap: () upper bound on (optimum - objective), in objective units.
        group_price: (G,) extra objective per extra currency unit of each group cap.
    """

    bid: jax.Array
    budget: jax.Array
    spend: jax.Array
    gain: jax.Array
    marginal: jax.Array
    dual_price: jax.Array
    objective: jax.Array
    kkt_residual: jax.Array
    duality_gap: jax.Array
    group_price: jax.Array


def masked(valid: jax.Array | None, x: jax.Array, fill: float) -> jax.Array:
    """``x`` on real audiences, ``fill`` on padding (``valid`` None: no padding)."""
    return x if valid is None else jnp.where(valid, x, fill)


def within_budget(cap: jax.Array, lower: jax.Array, budget: jax.Array) -> jax.Array:
    """Caps (A,) over ``budget`` (bids that overshoot) cut above each audience's
    lower bound in proportion, so no bound breaks."""
    floor = jnp.minimum(lower, cap)
    room = jnp.sum(cap - floor)
    cut = jnp.clip((budget - jnp.sum(floor)) / jnp.maximum(room, 1e-300), 0.0, 1.0)
    return jnp.where(jnp.sum(cap) > budget, floor + (cap - floor) * cut, cap)


def kkt_residual(
    m: jax.Array,
    cap: jax.Array,
    lower: jax.Array,
    upper: jax.Array,
    price: jax.Array,
    share: jax.Array,
    valid: jax.Array | None,
) -> jax.Array:
    """() largest violation of the optimality conditions relative to the price:
    marginal returns (A,) equal to each audience's price (A,) unless a bound
    binds; ``share`` is an even share of the budget (the bounds' tolerance)."""
    tol = 1e-6 * share
    violation = jnp.where(
        cap <= lower + tol,
        jnp.maximum(m - price, 0.0),
        jnp.where(cap >= upper - tol, jnp.maximum(price - m, 0.0), jnp.abs(m - price)),
    )
    return jnp.max(masked(valid, violation, 0.0)) / jnp.maximum(
        jnp.max(masked(valid, price, -jnp.inf)), jnp.max(m) * 1e-12
    )
