"""The planning problem as arrays: market, horizon, bounds and budget.

Everything that may vary between what-if scenarios (budget, bounds, max bids,
market shocks) is an array, so problems batch with ``jax.vmap``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from optimizer import devices
from optimizer.allocate import response
from optimizer.allocate.config import SolveConfig
from optimizer.market.params import MarketParams


@devices.exportable
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Problem:
    """Maximize sum_a gain_a(bid_a) s.t. sum_a spend_a <= budget, lower <= spend <= upper.

    Attributes:
        params: market of A audiences.
        days: () horizon in days.
        budget: () total budget over the horizon, currency.
        lower: (A,) minimum spend over the horizon, currency.
        upper: (A,) maximum spend over the horizon, currency (inf = none).
        max_log_bid: (A,) log of the highest bid allowed, currency per impression.
        group: (A,) int32 index of each audience's group in ``group_cap``.
        group_cap: (G,) maximum spend per group, currency (G = 0: no group caps).
    """

    params: MarketParams
    days: jax.Array
    budget: jax.Array
    lower: jax.Array
    upper: jax.Array
    max_log_bid: jax.Array
    group: jax.Array
    group_cap: jax.Array

    @property
    def auctions(self) -> jax.Array:
        """(A,) auctions over the horizon."""
        return self.params.volume_per_day * self.days


def make_problem(
    params: MarketParams,
    days: float,
    budget: float,
    lower: jax.Array | None = None,
    upper: jax.Array | None = None,
    max_bid: jax.Array | None = None,
    group: jax.Array | None = None,
    group_cap: jax.Array | None = None,
) -> Problem:
    """A Problem with defaults: no bounds, no max bid, no group caps (float64 money)."""
    a = params.n_audiences
    f64 = jnp.float64
    if params.log_bid_factor is not None:
        cap = None if max_bid is None else jnp.log(jnp.asarray(max_bid, f64))
        params = dataclasses.replace(params, log_bid_cap=cap)
    return Problem(
        params=params,
        days=jnp.asarray(days, f64),
        budget=jnp.asarray(budget, f64),
        lower=jnp.zeros(a, f64) if lower is None else jnp.asarray(lower, f64),
        upper=jnp.full(a, jnp.inf, f64) if upper is None else jnp.asarray(upper, f64),
        max_log_bid=jnp.full(a, jnp.inf, f64)
        if max_bid is None
        else jnp.log(jnp.asarray(max_bid, f64)),
        group=jnp.zeros(a, jnp.int32)
        if group is None
        else jnp.asarray(group, jnp.int32),
        group_cap=jnp.zeros(0, f64)
        if group_cap is None
        else jnp.asarray(group_cap, f64),
    )


def market(problem: Problem) -> MarketParams:
    """The problem's market; under a bid rule each stratum's bid is capped at the
    problem's max bid (so base x factor never exceeds it)."""
    p = problem.params
    if p.log_bid_factor is None:
        return p
    return dataclasses.replace(p, log_bid_cap=problem.max_log_bid)


def log_bid_bounds(problem: Problem) -> tuple[jax.Array, jax.Array]:
    """(A,) lowest and highest log (base) bid worth considering.

    Under a bid rule the base may rise until the lowest-factor stratum meets the
    max bid; every stratum's own bid is capped there."""
    p = problem.params
    low, high = jax.vmap(response.bid_range)(p)
    top = problem.max_log_bid
    if p.log_bid_factor is not None:
        live = p.weight > 0
        least = jnp.min(jnp.where(live, p.log_bid_factor, jnp.inf), axis=1)
        top = top - least - 1e-9
    return low, jnp.maximum(jnp.minimum(high, top), low)


@jax.jit(static_argnames="config")
def capacity(problem: Problem, config: SolveConfig) -> jax.Array:
    """(A,) the most each audience can spend over the horizon at its highest bid."""
    _, high = log_bid_bounds(problem)
    return problem.auctions * jax.vmap(response.spend, in_axes=(0, 0, None))(
        market(problem), high, config
    )


@jax.jit(static_argnames="config")
def spend_at(problem: Problem, u: jax.Array, config: SolveConfig) -> jax.Array:
    """(A,) spend over the horizon at log bids ``u``."""
    return problem.auctions * jax.vmap(response.spend, in_axes=(0, 0, None))(
        market(problem), u, config
    )


@jax.jit(static_argnames="config")
def gain_at(problem: Problem, u: jax.Array, config: SolveConfig) -> jax.Array:
    """(A,) objective over the horizon at log bids ``u``."""
    return problem.auctions * jax.vmap(response.gain, in_axes=(0, 0, None))(
        market(problem), u, config
    )


@jax.jit(static_argnames="config")
def log_marginal_at(problem: Problem, u: jax.Array, config: SolveConfig) -> jax.Array:
    """(A,) log marginal objective per currency at log bids ``u``."""
    return jax.vmap(response.log_marginal, in_axes=(0, 0, None))(
        market(problem), u, config
    )


def marginal_slopes(
    problem: Problem, u: jax.Array, config: SolveConfig
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(A,) at log bids ``u``: log marginal return, its derivative in u, and
    d spend / du over the horizon (currency per unit of log bid)."""

    def one(p, ui):
        return jax.value_and_grad(lambda v: response.log_marginal(p, v, config))(ui)

    log_m, d_log_m = jax.vmap(one)(market(problem), u)
    slope = problem.auctions * jnp.exp(
        jax.vmap(response.log_spend_slope, in_axes=(0, 0, None))(
            market(problem), u, config
        )
    )
    return log_m, d_log_m, slope


def bisect(fn, low: jax.Array, high: jax.Array, steps: int = 60) -> jax.Array:
    """Root of an increasing elementwise ``fn`` in [low, high] by bisection (arrays)."""

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = fn(mid) > 0
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, steps, body, (low, high))
    return 0.5 * (lo + hi)


def bid_for_spend(
    problem: Problem, target: jax.Array, config: SolveConfig, steps: int = 60
) -> jax.Array:
    """(A,) log bid whose expected spend over the horizon is ``target`` (clipped to range)."""
    low, high = log_bid_bounds(problem)
    return bisect(lambda u: spend_at(problem, u, config) - target, low, high, steps)
