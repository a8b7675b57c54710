"""Exact reference solver: Lagrangian dual on the budget price, per-audience search.

For a budget price lam (objective per currency unit), each audience maximizes
gain - lam * spend over its bid within its spend bounds. That inner problem is
solved globally: a 128-point grid over log bids plus the two bound-hitting bids,
then bisection on the marginal return around the best grid point. The total
spend falls as lam rises, so an outer bisection on log(lam) finds the price that
spends the budget (taking the side that does not overspend).

For concave responses (marginal return falling with spend) this is the exact
optimum to bisection precision. Where a response is not concave, the dual value
D(lam) = lam * budget + sum_a max(gain_a - lam * spend_a) is still an exact
upper bound on the optimum, which the allocator's certificate uses.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from optimizer.allocate.config import DEFAULT_CONFIG, SolveConfig
from optimizer.allocate.problem import (
    Problem,
    bid_for_spend,
    bisect,
    capacity,
    gain_at,
    log_bid_bounds,
    log_marginal_at,
    spend_at,
)

_GRID = 128
_PEAKS = 3


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ExactSolution:
    """Optimum of a Problem. Arrays are (A,) unless noted."""

    log_bid: jax.Array
    spend: jax.Array
    gain: jax.Array
    dual_price: jax.Array  # () objective per extra currency unit of budget
    objective: jax.Array  # () total objective


def bound_bids(
    problem: Problem, config: SolveConfig, steps: int = 60
) -> tuple[jax.Array, jax.Array]:
    """(A,) log bids that spend each audience's min and max spend (its lowest
    and highest bids where it has no such bound): the ends of its bid range."""
    low, high = log_bid_bounds(problem)
    upper = jnp.minimum(problem.upper, capacity(problem, config))
    lower = jnp.minimum(problem.lower, upper)
    # A bound-hitting bid costs a bisection each: skip it when no audience has one.
    u_lo = jax.lax.cond(
        jnp.any(lower > 0),
        lambda: jnp.where(lower > 0, bid_for_spend(problem, lower, config, steps), low),
        lambda: low,
    )
    u_hi = jax.lax.cond(
        jnp.any(jnp.isfinite(problem.upper)),
        lambda: jnp.where(
            jnp.isfinite(problem.upper),
            bid_for_spend(problem, upper, config, steps),
            high,
        ),
        lambda: high,
    )
    return u_lo, u_hi


def inner_solution(
    problem: Problem,
    price: jax.Array,
    config: SolveConfig,
    steps: int = 60,
    grid_points: int = _GRID,
    peaks: int = _PEAKS,
    bounds: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """(A,) log bid maximizing gain - price * spend per audience within spend bounds.

    ``price`` is () or (A,), objective per currency unit; ``bounds``: the
    :func:`bound_bids` of ``problem`` when already known.
    """
    u_lo, u_hi = bound_bids(problem, config, steps) if bounds is None else bounds
    frac = jnp.linspace(0.0, 1.0, grid_points)
    grid = u_lo[:, None] + (u_hi - u_lo)[:, None] * frac[None, :]  # (A, G)
    price = jnp.broadcast_to(price, u_lo.shape)

    def lagrangian(u):
        return gain_at(problem, u, config) - price * spend_at(problem, u, config)

    values = jax.vmap(lagrangian, in_axes=1, out_axes=1)(grid)
    # Refine the best few local maxima of the grid, then keep the best refined one,
    # so that near a tie between two basins the choice follows the true values.
    pad = jnp.full((values.shape[0], 1), -jnp.inf)
    left_v = jnp.concatenate([pad, values[:, :-1]], axis=1)
    right_v = jnp.concatenate([values[:, 1:], pad], axis=1)
    local_max = jnp.where((values >= left_v) & (values >= right_v), values, -jnp.inf)
    # (A, P); a stable sort rather than top_k, which GSPMD would all-gather when
    # the audiences are sharded over devices.
    top = jnp.argsort(-local_max, axis=-1, stable=True)[..., :peaks]
    step = ((u_hi - u_lo) / (grid_points - 1))[:, None]
    centre = jnp.take_along_axis(grid, top, axis=1)
    left = jnp.maximum(centre - step, u_lo[:, None])
    right = jnp.minimum(centre + step, u_hi[:, None])
    log_price = jnp.log(jnp.maximum(price, 1e-300))[:, None]

    def refine(lo_u, hi_u):
        return bisect(
            lambda u: log_price[:, 0] - log_marginal_at(problem, u, config),
            lo_u,
            hi_u,
            steps,
        )

    refined = jax.vmap(refine, in_axes=1, out_axes=1)(left, right)
    candidates = jnp.concatenate([refined, centre], axis=1)
    scores = jax.vmap(lagrangian, in_axes=1, out_axes=1)(candidates)
    return jnp.take_along_axis(candidates, jnp.argmax(scores, axis=1)[:, None], axis=1)[
        :, 0
    ]


def audience_terms(
    problem: Problem,
    price: jax.Array,
    config: SolveConfig,
    grid_points: int = _GRID,
    steps: int = 40,
    peaks: int = _PEAKS,
    bounds: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """(A,) each audience's best gain - price x spend within its spend bounds
    (price () or (A,), objective per currency unit), and the (A,) log bids
    attaining it: each audience's globally best bid at ``price``. ``bounds``:
    as in :func:`inner_solution`."""
    u = inner_solution(problem, price, config, steps, grid_points, peaks, bounds)
    price = jnp.broadcast_to(price, u.shape)
    return gain_at(problem, u, config) - price * spend_at(problem, u, config), u


@jax.jit(static_argnames=("config", "grid_points", "steps", "peaks"))
def dual_terms(
    problem: Problem,
    price: jax.Array,
    config: SolveConfig,
    grid_points: int = _GRID,
    steps: int = 40,
    peaks: int = _PEAKS,
) -> tuple[jax.Array, jax.Array]:
    """D(price) - price x budget >= optimum - price x budget for any price >= 0
    (weak duality), and the (A,) log bids attaining it (see :func:`audience_terms`)."""
    terms, u = audience_terms(problem, price, config, grid_points, steps, peaks)
    return jnp.sum(terms), u


@jax.jit(static_argnames=("config", "steps"))
def solve_exact(
    problem: Problem, config: SolveConfig = DEFAULT_CONFIG, steps: int = 60
) -> ExactSolution:
    """Optimal plan of ``problem`` (assumes it is feasible: sum(lower) <= budget).

    ``config.spend_all`` is not read: this plan spends the budget, or every
    audience's capacity where that is less.
    """
    low, high = log_bid_bounds(problem)
    lo_price = jnp.min(log_marginal_at(problem, high, config)) - 1.0
    hi_price = jnp.max(log_marginal_at(problem, low, config)) + 1.0

    bounds = bound_bids(problem, config, steps)

    def total(log_price: jax.Array) -> jax.Array:
        u = inner_solution(problem, jnp.exp(log_price), config, steps, bounds=bounds)
        return jnp.sum(spend_at(problem, u, config))

    def under(log_price: jax.Array) -> jax.Array:
        return problem.budget - total(log_price)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        ok = under(mid) >= 0
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    over_price, log_price = jax.lax.fori_loop(0, steps, body, (lo_price, hi_price))
    upper = jnp.minimum(problem.upper, capacity(problem, config))
    binding = jnp.sum(upper) > problem.budget
    spend = _recover_primal(
        problem, jnp.exp(log_price), jnp.exp(over_price), config, steps
    )
    spend = jnp.where(binding, spend, upper)
    u = bid_for_spend(problem, spend, config, steps)
    gains = gain_at(problem, u, config)
    return ExactSolution(
        u,
        spend_at(problem, u, config),
        gains,
        jnp.where(binding, jnp.exp(log_price), 0.0),
        jnp.sum(gains),
    )


def _recover_primal(
    problem: Problem,
    price: jax.Array,
    over_price: jax.Array,
    config: SolveConfig,
    steps: int,
) -> jax.Array:
    """(A,) spends at the budget price, with any budget left by a jump in a
    non-concave response given to the audiences that jump (exact when one does)."""
    under = spend_at(problem, inner_solution(problem, price, config, steps), config)
    over = spend_at(problem, inner_solution(problem, over_price, config, steps), config)
    gap = jnp.maximum(over - under, 0.0)
    left = jnp.maximum(problem.budget - jnp.sum(under), 0.0)
    return under + gap * jnp.minimum(1.0, left / jnp.maximum(jnp.sum(gap), 1e-300))
