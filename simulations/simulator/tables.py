"""Lookup tables of one market and plan for the simulator's kernel.

:func:`lookup_tables` turns a :class:`~optimizer.market.params.MarketParams` and a
plan's bids and budgets (A,) into flat per-cell tables, C = A * K * J (audience,
stratum, price component; component fastest), with a Walker alias table per
audience of the cell a won auction falls in.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from optimizer.market.params import MONEY, MarketParams, per_auction, stratum_log_bids


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Tables:
    """Lookup tables for drawing won auctions; C = A * K * J cells, flat.

    Attributes:
        alias_prob: (C,) alias-table keep probability of each cell given a win.
        alias_cell: (C,) int, flat index of each cell's alias.
        log_loc: (C,) location of the cell's log price.
        log_scale: (C,) scale of the cell's log price.
        win_share: (C,) P(price < bid) in the cell.
        p_click: (C,) click probability of the cell's stratum.
        p_conv: (C,) conversion probability of the cell's stratum.
        value: (C,) value per conversion of the cell's stratum, currency.
        win_rate: (A,) P(win) per auction.
        hourly_spend: (A, 24) expected uncapped spend per hour of day, currency.
        rate: (A, 24) expected auctions per hour of day.
        bid: (A,) currency per impression (the base bid under a bid rule).
        budget: (A,) currency over the horizon.
        cell_bid: (C,) bid in the cell's stratum (base x rule factor, capped).
        rate_slope: (C,) how the click and conversion rates scale with the price
            paid: rate x (price / exp(rate_ref))^rate_slope (0: they do not).
        rate_ref: (C,) reference log price of ``rate_slope``.
    """

    alias_prob: jax.Array
    alias_cell: jax.Array
    log_loc: jax.Array
    log_scale: jax.Array
    win_share: jax.Array
    p_click: jax.Array
    p_conv: jax.Array
    value: jax.Array
    win_rate: jax.Array
    hourly_spend: jax.Array
    rate: jax.Array
    bid: jax.Array
    budget: jax.Array
    cell_bid: jax.Array
    rate_slope: jax.Array
    rate_ref: jax.Array


def _flat_cells(x: jax.Array, n_components: int) -> jax.Array:
    """(A, K) stratum table -> (A * K * J,) cell table (component varies fastest)."""
    return jnp.repeat(x, n_components, axis=1).reshape(-1)


def _alias_row(p: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Walker/Vose alias table of one categorical distribution ``p`` (n,).

    Returns ``prob`` (n,) float64 and ``alias`` (n,) int: draw i uniform in
    0..n-1 and keep it with probability ``prob[i]``, else take ``alias[i]``
    (exact in float64, O(1) per draw). Entries never paired keep ``prob = 1``.
    """
    n = p.shape[0]
    q = p * n
    is_large = q >= 1.0
    small = jnp.argsort(is_large, stable=True)  # stack of small cells at the front
    large = small[::-1]  # stack of large cells at the front
    n_large = jnp.sum(is_large)

    def pair(state, _):
        q, prob, alias, small, n_small, n_large = state
        go = (n_small > 0) & (n_large > 0)
        s = small[jnp.maximum(n_small - 1, 0)]
        big = large[jnp.maximum(n_large - 1, 0)]
        prob = prob.at[s].set(jnp.where(go, q[s], prob[s]))
        alias = alias.at[s].set(jnp.where(go, big, alias[s]))
        rest = q[big] + q[s] - 1.0
        q = q.at[big].set(jnp.where(go, rest, q[big]))
        demoted = go & (rest < 1.0)  # the large cell is now small: push it
        n_small = n_small - go
        small = small.at[n_small].set(jnp.where(demoted, big, small[n_small]))
        return (q, prob, alias, small, n_small + demoted, n_large - demoted), None

    init = (q, jnp.ones(n, MONEY), jnp.arange(n), small, n - n_large, n_large)
    (_, prob, alias, *_), _ = jax.lax.scan(pair, init, None, length=n)
    return prob, alias


def lookup_tables(
    params: MarketParams, bid: jax.Array, budget: jax.Array, first_price: bool
) -> Tables:
    """Everything the hour loop looks up, from the market and the plan (A,)."""
    n_components = params.mix_weight.shape[1]
    log_loc = params.price_loc[:, :, None] + params.mix_loc[:, None, :]  # (A, K, J)
    log_scale = jnp.broadcast_to(params.mix_scale[:, None, :], log_loc.shape)
    if params.log_bid_factor is None:
        log_bid = jnp.broadcast_to(jnp.log(bid)[:, None], params.weight.shape)
        stratum_bid = jnp.broadcast_to(bid[:, None], params.weight.shape)
    else:
        log_bid = jax.vmap(lambda p, u: stratum_log_bids(p, u)[0])(params, jnp.log(bid))
        stratum_bid = jnp.exp(log_bid)
    win_share = ndtr((log_bid[:, :, None] - log_loc) / log_scale)
    joint = params.weight[:, :, None] * params.mix_weight[:, None, :] * win_share
    joint = joint.reshape(joint.shape[0], -1)
    win_rate = jnp.sum(joint, axis=1)
    conditional = joint / jnp.maximum(win_rate, jnp.finfo(MONEY).tiny)[:, None]
    alias_prob, alias = jax.vmap(_alias_row)(conditional)
    row_start = jnp.arange(joint.shape[0])[:, None] * joint.shape[1]
    rate = params.volume_per_day[:, None] * params.hour_profile
    spend_per_auction = per_auction(params, bid, first_price)[:, 1]
    zeros = jnp.zeros_like(params.volume_per_day)
    slope = zeros if params.rate_slope is None else params.rate_slope
    ref = zeros if params.rate_ref is None else params.rate_ref
    per_cell = log_loc[0].size
    return Tables(
        alias_prob=alias_prob.reshape(-1),
        alias_cell=(alias + row_start).reshape(-1),
        log_loc=log_loc.reshape(-1),
        log_scale=log_scale.reshape(-1),
        win_share=win_share.reshape(-1),
        p_click=_flat_cells(params.p_click, n_components),
        p_conv=_flat_cells(params.p_conv, n_components),
        value=_flat_cells(params.value, n_components),
        win_rate=win_rate,
        hourly_spend=rate * spend_per_auction[:, None],
        rate=rate,
        bid=bid,
        budget=budget,
        cell_bid=_flat_cells(stratum_bid, n_components),
        rate_slope=jnp.repeat(slope, per_cell),
        rate_ref=jnp.repeat(ref, per_cell),
    )
