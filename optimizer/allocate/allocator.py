"""Differentiable bid-and-budget allocator: scaled projected gradient in spend space.

State: a log bid u_a per audience; its spend s_a = spend_a(u_a). Each step takes
the marginal return m_a = d gain / d spend (autodiff through the response model)
and its curvature h_a = dm_a / ds_a, and moves spend along m_a / |h_a| (a
gradient step scaled per audience by the curvature), projected onto the budget
polytope {sum s <= B, lower <= s <= upper} intersected with a trust box; the
projection's shift tau is the budget's dual price. The bid follows the spend by
a Newton step of the inverse spend curve. Unlike Adam plus projection, the
curvature scaling moves spend between audiences even when every gradient has the
same sign.

The plan carries a certificate: the dual price, each audience's marginal return,
the KKT residual and a duality gap D(price) - objective, where D is the
Lagrangian dual evaluated exactly per audience (an upper bound on the optimum
for concave responses).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from optimizer.allocate.allocation import (
    Allocation,
    kkt_residual,
    masked,
    within_budget,
)
from optimizer.allocate.config import DEFAULT_CONFIG, SolveConfig
from optimizer.allocate.exact import audience_terms, bound_bids
from optimizer.allocate.problem import (
    Problem,
    bid_for_spend,
    bisect,
    capacity,
    gain_at,
    log_bid_bounds,
    marginal_slopes,
    spend_at,
)

# A plan whose duality gap exceeds this share of its objective may sit in a worse
# local optimum: the allocator descends again with the audiences whose dual-best
# bid lies in another basin moved there, at most _ATTEMPTS descents in all.
_RESTART_GAP = 1e-6
_ATTEMPTS = 2
# A dual-best log bid this far from the plan's is another basin of the response.
_OTHER_BASIN = 0.05


def _curvature(
    problem: Problem,
    u: jax.Array,
    config: SolveConfig,
    n: jax.Array | int,
    valid: jax.Array | None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(m, |h|, dS/du): marginal return, its falling rate per currency, spend slope.

    ``n`` is the number of real audiences; padding (``valid`` False) gets the
    neutral m = 0, |h| = 1, dS/du = 1, so no division there can overflow.
    """

    log_m_val, dlogm_du, ds_du = marginal_slopes(problem, u, config)
    m = jnp.exp(log_m_val)
    h = m * dlogm_du / jnp.maximum(ds_du, 1e-300)
    s = spend_at(problem, u, config)
    # Where the response is not concave (h >= 0), fall back to a gentle step.
    floor = 1e-2 * m / jnp.maximum(s, 1e-12 * problem.budget / n + 1e-300)
    return (
        masked(valid, m, 0.0),
        masked(valid, jnp.maximum(-h, floor), 1.0),
        masked(valid, ds_du, 1.0),
    )


def _project(
    s: jax.Array,
    m: jax.Array,
    h: jax.Array,
    lo: jax.Array,
    hi: jax.Array,
    budget: jax.Array,
    spend_all: bool,
    group: jax.Array,
    group_cap: jax.Array,
    valid: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Maximize sum m d - h d^2 / 2 over lo <= s + d <= hi, sum(s + d) <= budget
    and per-group sums <= group_cap.

    Returns the new spend, the budget shift tau and the (G,) group shifts; the
    shifts are the budget's and groups' prices in this local model. Padding
    audiences (``valid`` False) must have lo = hi = 0: they then add nothing to
    any sum, and they are left out of the brackets of the price searches. With
    the audience axis sharded, every sum, min and max here is a cross-device
    reduction (inserted by GSPMD), so tau is the global budget price.
    """
    n_groups = group_cap.shape[0]

    def group_prices(tau):
        if n_groups == 0:
            return jnp.zeros(0)

        def over(mu):
            spent = jnp.clip(s + (m - tau - mu[group]) / h, lo, hi)
            return group_cap - jax.ops.segment_sum(spent, group, n_groups)

        top = jnp.max(masked(valid, m + h * (s - lo), -jnp.inf)) - tau
        mu = bisect(
            over,
            jnp.zeros(n_groups),
            jnp.full(n_groups, jnp.maximum(top, 0.0) + 1.0),
            80,
        )
        # A group whose cap does not bind at mu = 0 has price 0.
        return jnp.where(over(jnp.zeros(n_groups)) >= 0, 0.0, mu)

    def target(tau):
        mu = group_prices(tau)
        return jnp.clip(s + (m - tau - (mu[group] if n_groups else 0.0)) / h, lo, hi)

    tau_low = jnp.min(masked(valid, m + h * (s - hi), jnp.inf))
    tau_high = jnp.max(masked(valid, m + h * (s - lo), -jnp.inf))
    reachable = jnp.sum(target(tau_low)) >= budget
    tau = bisect(lambda t: budget - jnp.sum(target(t)), tau_low, tau_high, 80)
    tau = jnp.where(reachable, tau, tau_low if spend_all else 0.0)
    if not spend_all:
        tau = jnp.maximum(tau, 0.0)
    return target(tau), tau, group_prices(tau)


@jax.jit(static_argnames=("config", "iterations"))
def allocate(
    problem: Problem,
    config: SolveConfig = DEFAULT_CONFIG,
    iterations: int = 30,
    start_log_bid: jax.Array | None = None,
    audiences: jax.Array | int | None = None,
) -> Allocation:
    """Plan bids and budgets for ``problem`` (assumed feasible: sum(lower) <= budget).

    The audience axis may be sharded over devices (see
    :func:`~optimizer.allocate.sharded.shard_problem`); the result is the same
    as on one device, up to the order of the sums.

    Args:
        problem: market, horizon, budget and bounds.
        config: objective, auction type and spend_all.
        iterations: most projected steps (the loop stops earlier once spends settle).
        start_log_bid: (A,) log bids to start from (a nearby solution), or None
            for an even split of the budget.
        audiences: () int, the number n of real audiences when the last A - n
            entries of the audience axis are padding, or None (no padding).
            Padding gets zero volume, hence zero capacity, spend and gain, and
            stays out of the budget sum, group caps and the certificate.
    """
    a = problem.lower.shape[0]
    valid = None if audiences is None else jnp.arange(a) < audiences
    n = a if audiences is None else jnp.asarray(audiences, problem.budget.dtype)
    problem = without_padding_volume(problem, valid)
    u_low, u_high = log_bid_bounds(problem)
    upper = jnp.minimum(problem.upper, capacity(problem, config))
    lower = jnp.minimum(problem.lower, upper)
    budget = problem.budget
    # The bids that spend each audience's bounds: the ends of its dual search.
    bounds = bound_bids(problem, config, 32)
    start = jnp.clip(budget / n, lower, upper)
    grouping = (problem.group, problem.group_cap, valid)
    start, *_ = _project(
        start, jnp.zeros(a), jnp.ones(a), lower, upper, budget, True, *grouping
    )
    if start_log_bid is None:
        u0 = bid_for_spend(problem, start, config, 40)
    else:
        u0 = jnp.clip(start_log_bid, u_low, u_high)

    def step(u):
        s = spend_at(problem, u, config)
        m, h, ds_du = _curvature(problem, u, config, n, valid)
        radius = 0.5 * s + 0.1 * budget / n
        lo = jnp.maximum(lower, s - radius)
        hi = jnp.minimum(upper, s + radius)
        s_new, *_ = _project(s, m, h, lo, hi, budget, config.spend_all, *grouping)
        du = jnp.clip((s_new - s) / jnp.maximum(ds_du, 1e-300), -1.0, 1.0)
        return jnp.clip(u + du, u_low, u_high), jnp.max(jnp.abs(s_new - s))

    def body(carry):
        i, u, _ = carry
        u, moved = step(u)
        return i + 1, u, moved

    def descend(u_start):
        # Stop once no audience's spend moves by more than 1e-12 of an even share.
        tol = 1e-12 * budget / n
        _, u, _ = jax.lax.while_loop(
            lambda c: (c[0] < iterations) & (c[2] > tol), body, (0, u_start, jnp.inf)
        )
        return _certify(problem, u, lower, upper, bounds, config, n, valid)

    def attempt(carry):
        # A response with two price modes has more than one local optimum and
        # the steps may settle in the worse one. The certificate's dual names each
        # audience's globally best bid at the plan's prices: a plan whose duality
        # gap is loose descends again with each audience that would gain from
        # another basin started there (the best plan kept).
        k, u_start, best, _ = carry
        alloc, u_restart, moved = descend(u_start)
        better = alloc.objective > best.objective
        best = jax.tree_util.tree_map(lambda x, y: jnp.where(better, x, y), alloc, best)
        loose = alloc.duality_gap > _RESTART_GAP * jnp.maximum(alloc.objective, 1e-300)
        return k + 1, u_restart, best, loose & moved

    shapes = jax.eval_shape(descend, u0)[0]
    worst = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
    worst = dataclasses.replace(
        worst, objective=jnp.asarray(-jnp.inf, shapes.objective.dtype)
    )
    _, _, best, _ = jax.lax.while_loop(
        lambda c: (c[0] == 0) | ((c[0] < _ATTEMPTS) & c[3]),
        attempt,
        (0, u0, worst, jnp.asarray(True)),
    )
    return best


def without_padding_volume(problem: Problem, valid: jax.Array | None) -> Problem:
    """``problem`` with no auctions in the padding audiences (``valid`` False).

    Padding keeps its (finite) market parameters, so every per-audience formula
    stays finite there, but zero auctions make its capacity, spend and gain
    exactly 0.
    """
    if valid is None:
        return problem
    volume = jnp.where(valid, problem.params.volume_per_day, 0.0)
    params = dataclasses.replace(problem.params, volume_per_day=volume)
    return dataclasses.replace(problem, params=params)


def _certify(
    problem: Problem,
    u: jax.Array,
    lower: jax.Array,
    upper: jax.Array,
    bounds: tuple[jax.Array, jax.Array],
    config: SolveConfig,
    n: jax.Array | int,
    valid: jax.Array | None,
) -> tuple[Allocation, jax.Array, jax.Array]:
    """Final caps (never over budget, bounds or group caps), outcomes, certificate;
    the (A,) log bids to descend from again: the plan's, except where an
    audience's dual-best bid lies in a better basin; and whether any does.

    ``n`` real audiences; padding (``valid`` False, zero volume) has zero cap and
    gain and is left out of the KKT residual.
    """
    budget = problem.budget
    s = spend_at(problem, u, config)
    m, h, _ = _curvature(problem, u, config, n, valid)
    _, price, group_price = _project(
        s,
        m,
        h,
        lower,
        upper,
        budget,
        config.spend_all,
        problem.group,
        problem.group_cap,
        valid,
    )
    cap = jnp.minimum(s, upper)
    if problem.group_cap.shape[0]:
        spent = jax.ops.segment_sum(cap, problem.group, problem.group_cap.shape[0])
        cap = (
            cap
            * jnp.minimum(1.0, problem.group_cap / jnp.maximum(spent, 1e-300))[
                problem.group
            ]
        )
        audience_price = price + group_price[problem.group]
    else:
        audience_price = jnp.broadcast_to(price, m.shape)
    cap = within_budget(cap, lower, budget)
    share = jnp.where(s > 0, cap / jnp.maximum(s, 1e-300), 0.0)
    gains = gain_at(problem, u, config) * share
    total = jnp.sum(gains)
    kkt = kkt_residual(m, cap, lower, upper, audience_price, budget / n, valid)
    # Weak duality: D(price) >= optimum, evaluated globally per audience (a
    # 24-point bid grid, its two best local maxima refined by 32 bisection steps).
    terms, u_dual = audience_terms(
        problem,
        audience_price,
        config,
        grid_points=24,
        steps=32,
        peaks=2,
        bounds=bounds,
    )
    dual = price * budget + jnp.sum(masked(valid, terms, 0.0))
    # Audiences whose best bid at these prices lies in another basin, worth more
    # there than their share of the plan: where a further descent starts them.
    deficit = terms - (gains - audience_price * cap)
    other = (jnp.abs(u_dual - u) > _OTHER_BASIN) & (
        deficit > _RESTART_GAP * jnp.abs(total) / n
    )
    u_restart = jnp.where(other, u_dual, u)
    if problem.group_cap.shape[0]:
        dual = dual + jnp.sum(
            jnp.where(
                jnp.isfinite(problem.group_cap), group_price * problem.group_cap, 0.0
            )
        )
    return (
        Allocation(
            bid=jnp.exp(u),
            budget=cap,
            spend=cap,
            gain=gains,
            marginal=m,
            dual_price=price,
            objective=total,
            kkt_residual=kkt,
            duality_gap=jnp.maximum(dual - total, 0.0),
            group_price=group_price,
        ),
        u_restart,
        jnp.any(other),
    )


@jax.jit(static_argnames=("config",))
def allocate_path(
    problem: Problem,
    budgets: jax.Array,
    config: SolveConfig = DEFAULT_CONFIG,
    audiences: jax.Array | int | None = None,
) -> Allocation:
    """Plans for increasing ``budgets`` (B,), each started from the previous one.

    One compiled scan: neighbouring budgets have neighbouring optima, so each
    solve needs only a few steps (continuation). Returns an Allocation whose
    arrays have a leading budget axis. ``audiences``: as in :func:`allocate`.
    """
    first = allocate(
        dataclasses.replace(problem, budget=budgets[0]), config, audiences=audiences
    )

    def next_plan(u, budget):
        alloc = allocate(
            dataclasses.replace(problem, budget=budget),
            config,
            start_log_bid=u,
            audiences=audiences,
        )
        return jnp.log(alloc.bid), alloc

    _, rest = jax.lax.scan(next_plan, jnp.log(first.bid), budgets[1:])
    return jax.tree_util.tree_map(
        lambda x, y: jnp.concatenate([x[None], y]), first, rest
    )
