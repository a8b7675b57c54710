"""Throttled plans: a higher bid on a uniform random share of the auctions.

An audience capped at spend c may bid any b whose uncapped spend S(b) >= c and
join a random share c / S(b) of its auctions; it then earns c x avg(b), where
avg = gain / spend is the objective per currency unit at bid b. Where a bound
(min or max spend, a group cap, the budget) holds an audience's spend below
what a better-converting higher bid would buy, that higher bid throttled to the
same spend earns more than the bid that just spends c: this happens when outcome
rates rise with the price faster than the price itself.

The full action space of an audience is every (bid, cap) pair with
lower <= cap <= min(S(bid), upper); its Lagrangian term at price lam is
max over bids of the unthrottled term, lower x (avg - lam) and upper x (avg - lam)
(the last two over bids spending at least the bound). :func:`throttled_terms`
gives the two bound terms, so the certificate covers that whole space.

:func:`with_throttling` runs after the allocator, as its own program, where a
plan has spend bounds or a loose certificate (elsewhere throttling cannot beat
the plan: without bounds the dual bound is the same over the whole space).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from optimizer.allocate.allocation import Allocation, kkt_residual, masked
from optimizer.allocate.allocator import without_padding_volume
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.exact import audience_terms, bound_bids
from optimizer.allocate.problem import (
    Problem,
    bisect,
    capacity,
    gain_at,
    log_bid_bounds,
    log_marginal_at,
    spend_at,
)


def log_average(problem: Problem, u: jax.Array, config: SolveConfig) -> jax.Array:
    """(A,) log objective per currency unit spent at log bids ``u``."""
    gain = jnp.maximum(gain_at(problem, u, config), 1e-300)
    return jnp.log(gain) - jnp.log(jnp.maximum(spend_at(problem, u, config), 1e-300))


def best_average(
    problem: Problem,
    u_from: jax.Array,
    config: SolveConfig,
    grid_points: int = 8,
    steps: int = 16,
) -> jax.Array:
    """(A,) log bid in [u_from, highest bid] with the most objective per currency.

    A grid of ``grid_points`` log bids, the best one refined by bisection on
    d avg / du, whose sign is that of marginal - average.
    """
    _, high = log_bid_bounds(problem)
    high = jnp.maximum(high, u_from)
    width = high - u_from
    frac = jnp.linspace(0.0, 1.0, grid_points)
    grid = u_from[:, None] + width[:, None] * frac[None, :]
    values = jax.vmap(lambda u: log_average(problem, u, config), in_axes=1, out_axes=1)(
        grid
    )
    centre = jnp.take_along_axis(grid, jnp.argmax(values, axis=1)[:, None], 1)[:, 0]
    step = width / (grid_points - 1)
    refined = bisect(
        lambda u: log_average(problem, u, config) - log_marginal_at(problem, u, config),
        jnp.maximum(centre - step, u_from),
        jnp.minimum(centre + step, high),
        steps,
    )
    keep = log_average(problem, refined, config) > log_average(problem, centre, config)
    return jnp.where(keep, refined, centre)


def throttle(
    problem: Problem, u: jax.Array, cap: jax.Array, config: SolveConfig
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The best bid for each audience's ``cap`` (A,), at ``u`` or above, throttled.

    Returns (log bid, gain over the horizon, objective per extra currency unit):
    at ``u`` itself where no higher bid earns more per currency unit (the
    marginal there then stays the caller's); a throttled audience's extra spend
    earns its average.
    """
    better = best_average(problem, u, config)
    log_avg = log_average(problem, better, config)
    gain = cap * jnp.exp(log_avg)
    here = cap * jnp.exp(log_average(problem, u, config))
    use = (cap > 0) & (gain > here * (1 + 1e-12))
    return jnp.where(use, better, u), jnp.where(use, gain, here), use


def throttled_terms(
    problem: Problem,
    price: jax.Array,
    lower: jax.Array,
    upper: jax.Array,
    bounds: tuple[jax.Array, jax.Array],
    config: SolveConfig,
) -> jax.Array:
    """(A,) best Lagrangian term gain - price x cap of a plan throttled to a
    spend bound: lower x (avg - price) over bids spending at least ``lower``, and
    upper x (avg - price) over bids spending at least an ``upper`` below
    capacity; -inf where an audience has neither bound. ``bounds``: the
    (A,) log bids that spend ``lower`` and ``upper``
    (:func:`~optimizer.allocate.exact.bound_bids`)."""
    _, high = log_bid_bounds(problem)

    def at(bound, has, u_from):
        def value():
            best = best_average(problem, jnp.where(has, u_from, high), config)
            avg = jnp.exp(log_average(problem, best, config))
            return jnp.where(has, bound * (avg - price), -jnp.inf)

        return jax.lax.cond(
            jnp.any(has), value, lambda: jnp.full(high.shape, -jnp.inf, high.dtype)
        )

    capacity = spend_at(problem, high, config)
    return jnp.maximum(
        at(lower, lower > 0, bounds[0]),
        at(upper, (upper > 0) & (upper < capacity), bounds[1]),
    )


def throttled_plan(
    problem: Problem,
    alloc: Allocation,
    lower: jax.Array,
    upper: jax.Array,
    config: SolveConfig,
    n: jax.Array | int,
    valid: jax.Array | None,
) -> Allocation:
    """``alloc`` with each audience bidding higher on a random share of its
    auctions where that earns more for the same cap (its extra spend then earns
    its average return); the dual bound is unchanged."""
    u, gains, throttled = throttle(problem, jnp.log(alloc.bid), alloc.budget, config)
    gains = masked(valid, gains, 0.0)
    m = jnp.where(throttled, gains / jnp.maximum(alloc.budget, 1e-300), alloc.marginal)
    price = alloc.dual_price
    if problem.group_cap.shape[0]:
        price = price + alloc.group_price[problem.group]
    total = jnp.sum(gains)
    dual = alloc.objective + alloc.duality_gap
    return dataclasses.replace(
        alloc,
        bid=jnp.exp(u),
        gain=gains,
        marginal=m,
        objective=total,
        kkt_residual=kkt_residual(
            m,
            alloc.budget,
            lower,
            upper,
            jnp.broadcast_to(price, m.shape),
            problem.budget / n,
            valid,
        ),
        duality_gap=jnp.maximum(dual - total, 0.0),
    )


# Certificate room (share of the objective) above which throttled bids are tried.
ROOM = 1e-6


def with_throttling(
    problem: Problem,
    alloc: Allocation,
    config: SolveConfig,
    audiences: jax.Array | int | None = None,
) -> Allocation:
    """``alloc`` (from :func:`~optimizer.allocate.allocator.allocate` on
    ``problem``) with its certificate extended to throttled plans and, where the
    certificate then leaves room, each audience on its throttled bid where that
    earns more. ``audiences``: as in ``allocate``."""
    a = problem.lower.shape[0]
    valid = None if audiences is None else jnp.arange(a) < audiences
    n = a if audiences is None else jnp.asarray(audiences, problem.budget.dtype)
    problem = without_padding_volume(problem, valid)
    upper = jnp.minimum(problem.upper, capacity(problem, config))
    lower = jnp.minimum(problem.lower, upper)
    price = alloc.dual_price
    if problem.group_cap.shape[0]:
        price = price + alloc.group_price[problem.group]
    price = jnp.broadcast_to(price, lower.shape)
    bounds = bound_bids(problem, config, 32)
    terms, _ = audience_terms(
        problem, price, config, grid_points=24, steps=32, peaks=2, bounds=bounds
    )
    extra = jnp.maximum(
        throttled_terms(problem, price, lower, upper, bounds, config) - terms, 0.0
    )
    alloc = dataclasses.replace(
        alloc, duality_gap=alloc.duality_gap + jnp.sum(masked(valid, extra, 0.0))
    )
    return jax.lax.cond(
        alloc.duality_gap > ROOM * jnp.maximum(alloc.objective, 1e-300),
        lambda: throttled_plan(problem, alloc, lower, upper, config, n, valid),
        lambda: alloc,
    )
