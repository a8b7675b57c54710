"""Response tables: spend and gain on a log-bid grid, integrated from slopes.

On a second-price market without a bid rule the slopes d spend / du and
d gain / du need only the price density: one exponential per (stratum, price
component) cell, against a normal CDF per cell for spend and gain themselves.
Gauss-Legendre quadrature (3 nodes per grid cell) integrates them from the
grid's first bid. Accurate where every price component is wider than a grid
cell; a narrow component (a price atom) needs the curves themselves.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from optimizer.allocate import response
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import Problem, gain_at, market, spend_at

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(3)


def _density_slopes(p, points: jax.Array, config: SolveConfig):
    """One audience's (P,) d spend / du and d gain / du per auction at (P,) log
    bids on a second-price market without a bid rule, underflowing to 0 far in
    the tails."""
    m = p.price_loc[:, None] + p.mix_loc[None, :]  # (K, J)
    s = p.mix_scale[None, :]
    d = (points[:, None, None] - m[None]) / s[None]  # (P, K, J)
    w = p.weight[:, None] * p.mix_weight[None, :] / (s * jnp.sqrt(2 * jnp.pi))
    dens = jnp.sum(w[None] * jnp.exp(-0.5 * d**2), axis=2)  # (P, K) d win / du
    rate = response.per_unit_gain(p, config)[None, :]
    if p.rate_slope is not None:
        rate = rate * jnp.exp(p.rate_slope * (points[:, None] - p.rate_ref))
    return jnp.exp(points) * jnp.sum(dens, axis=1), jnp.sum(rate * dens, axis=1)


def slopes(problem: Problem, u: jax.Array, config: SolveConfig):
    """(A, P) d spend / du and d gain / du over the horizon at log bids (A, P)."""
    if not config.first_price and problem.params.log_bid_factor is None:
        ds, dv = jax.vmap(_density_slopes, in_axes=(0, 0, None))(
            problem.params, u, config
        )
        return problem.auctions[:, None] * ds, problem.auctions[:, None] * dv

    def one(p, points):
        lss = jax.vmap(response.log_spend_slope, in_axes=(None, 0, None))(
            p, points, config
        )
        lm = jax.vmap(response.log_marginal, in_axes=(None, 0, None))(p, points, config)
        return jnp.exp(lss), jnp.exp(lss + lm)

    ds, dv = jax.vmap(one)(market(problem), u)
    return problem.auctions[:, None] * ds, problem.auctions[:, None] * dv


def tabulate(
    problem: Problem, edges: jax.Array, config: SolveConfig
) -> tuple[jax.Array, jax.Array]:
    """(A, C + 1) spend and gain over the horizon at ``edges`` (A, C + 1), log
    bids evenly spaced per audience."""
    a, cells = edges.shape[0], edges.shape[1] - 1
    half = 0.5 * (edges[:, 1:2] - edges[:, :1])[..., None]  # (A, 1, 1)
    mid = 0.5 * (edges[:, :-1] + edges[:, 1:])
    points = (mid[..., None] + half * _NODES[None, None, :]).reshape(a, -1)
    ds, dv = (x.reshape(a, cells, -1) for x in slopes(problem, points, config))

    def integral(slope, start):
        steps = jnp.sum(slope * _WEIGHTS[None, None, :], axis=-1) * half[..., 0]
        return jnp.concatenate(
            [start[:, None], start[:, None] + jnp.cumsum(steps, axis=1)], axis=1
        )

    return (
        integral(ds, spend_at(problem, edges[:, 0], config)),
        integral(dv, gain_at(problem, edges[:, 0], config)),
    )
