"""Per-audience response in log-bid space: spend, objective and marginal return.

These are the pieces the allocator and the exact solver share. For one audience
(MarketParams without the A axis), u = log(bid) and a SolveConfig (objective
and auction type):
  spend(u)     expected spend per auction (currency),
  gain(u)      expected objective per auction (conversions, value or clicks),
  log_marginal log of d gain / d spend along the bid: the extra conversions (or
               value) per extra currency unit when this audience's budget grows.
Marginals are computed in log space (log-sum-exp over strata) so they stay finite
where win rates underflow.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, logsumexp

from optimizer.allocate.config import SolveConfig
from optimizer.market.params import MarketParams, price_cells, stratum_log_bids

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log_w(w: jax.Array) -> jax.Array:
    return jnp.log(jnp.maximum(w, 1e-300))


def per_unit_gain(p: MarketParams, config: SolveConfig) -> jax.Array:
    """(K,) objective per won impression: conversions, conversions x value, or clicks."""
    if config.objective == "clicks":
        return p.p_click
    return p.p_conv if config.objective == "conversions" else p.p_conv * p.value


def spend(p: MarketParams, u: jax.Array, config: SolveConfig) -> jax.Array:
    """Expected spend per auction at bid exp(u)."""
    d, m, s, w = price_cells(p, u)
    if config.first_price and p.log_bid_factor is not None:
        ub = stratum_log_bids(p, u)[0][:, None]
        return jnp.sum(w * jnp.exp(ub + log_ndtr(d)))
    if config.first_price:
        return jnp.exp(u) * jnp.sum(w * jnp.exp(log_ndtr(d)))
    return jnp.sum(w * jnp.exp(m + 0.5 * s**2 + log_ndtr(d - s)))


def _log_rated_share(
    p: MarketParams, d: jax.Array, m: jax.Array, s: jax.Array
) -> jax.Array:
    """(K, J) log of :func:`~optimizer.market.params.rated_share`."""
    if p.rate_slope is None:
        return log_ndtr(d)
    g = p.rate_slope
    return g * (m - p.rate_ref) + 0.5 * (g * s) ** 2 + log_ndtr(d - g * s)


def gain(p: MarketParams, u: jax.Array, config: SolveConfig) -> jax.Array:
    """Expected objective per auction at bid exp(u)."""
    d, m, s, w = price_cells(p, u)
    rated = jnp.exp(_log_rated_share(p, d, m, s))
    return jnp.sum(w * per_unit_gain(p, config)[:, None] * rated)


def log_spend_slope(p: MarketParams, u: jax.Array, config: SolveConfig) -> jax.Array:
    """log of d spend / d u (spend per auction per unit of log bid)."""
    d, _, s, w = price_cells(p, u)
    if p.log_bid_factor is not None:
        ub, live = stratum_log_bids(p, u)
        log_wl = _log_w(w * live[:, None]) + ub[:, None]
        log_density = logsumexp(log_wl - jnp.log(s) - 0.5 * d**2) - _LOG_SQRT_2PI
        if config.first_price:
            return jnp.logaddexp(logsumexp(log_wl + log_ndtr(d)), log_density)
        return log_density
    log_density = (
        logsumexp(_log_w(w) - jnp.log(s) - 0.5 * d**2) - _LOG_SQRT_2PI
    )  # d win / d u
    if config.first_price:
        return u + jnp.logaddexp(logsumexp(_log_w(w) + log_ndtr(d)), log_density)
    return u + log_density


def log_marginal(p: MarketParams, u: jax.Array, config: SolveConfig) -> jax.Array:
    """log of d gain / d spend at bid exp(u) (objective per extra currency unit)."""
    d, _, s, w = price_cells(p, u)
    g = per_unit_gain(p, config)[:, None]
    if p.log_bid_factor is not None:
        g = g * stratum_log_bids(p, u)[1][:, None]
    log_g = _log_w(w * g)
    if p.rate_slope is not None:  # the marginal impression is priced at the bid
        log_g = log_g + p.rate_slope * (stratum_log_bids(p, u)[0] - p.rate_ref)[:, None]
    log_gain_slope = logsumexp(log_g - jnp.log(s) - 0.5 * d**2) - _LOG_SQRT_2PI
    return log_gain_slope - log_spend_slope(p, u, config)


def bid_range(p: MarketParams) -> tuple[jax.Array, jax.Array]:
    """(low, high) log (base) bids: spend ~ 0 below, win rate > 99.5% above."""
    m = p.price_loc[:, None] + p.mix_loc[None, :]
    if p.log_bid_factor is not None:
        m = m - p.log_bid_factor[:, None]
    live = (p.weight[:, None] * p.mix_weight[None, :]) > 0
    s = p.mix_scale[None, :]
    low = jnp.min(jnp.where(live, m - 7.0 * s, jnp.inf))
    high = jnp.max(jnp.where(live, m + 2.6 * s, -jnp.inf))
    return low, high
