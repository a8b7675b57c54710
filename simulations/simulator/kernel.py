"""Simulator kernel: one replication of a plan, auction by auction, hour by hour.

The model is :mod:`optimizer.market.params`'s: in audience a and hour h, auctions arrive
as a Poisson process with rate ``volume_per_day[a] * hour_profile[a, h % 24]``;
each auction's impression stratum k is drawn from ``weight[a]`` and its competing
price from the stratum's log-normal mixture (``price_loc[k] + mix_loc[j]``,
``mix_scale[j]``, component j ~ ``mix_weight``). The campaign wins when the price
is below its bid and pays the price (second price) or its bid (first price); a won
impression is clicked with ``p_click[k]``, converts with ``p_conv[k]`` (always
after a click), both times (price / exp(rate_ref))^rate_slope where outcome rates
rise with the price, and a conversion is worth ``value[k]``.

Event-level and exact, without holding every auction. By Poisson thinning the
auctions the campaign joins *and wins* form a Poisson process with rate
``rate * participation * win_rate`` independent of the others, so a block of
hours draws the number of won auctions per audience and hour and of all other
auctions per audience (Poisson counts), and then draws every won auction
individually from its conditional law: its (stratum, component) cell from
``w_k pi_j Phi(d_kj) / win_rate`` (a Walker alias table, O(1) per draw), its
price from the log-normal truncated below the bid (inverse CDF), and one uniform
for click and conversion (two Threefry blocks per won auction). Lost auctions
cannot change any outcome, so they are only counted.

A block's won auctions are laid out audience after audience, each audience's in
time order, and processed in fixed-size chunks of ``chunk`` slots (a
``while_loop`` until the block's wins are done); an audience whose budget ran
out skips the rest of its run. Under pacing ``"stop"`` nothing about joining
changes until a budget runs out, so a block spans many hours (the whole horizon
for a few audiences, :func:`default_block_hours`) and chunks stay full; under
``"even"`` participation changes every hour, so a block is one hour. Memory is
O(replications x (chunk + audiences x block hours)) whatever the volume.

Budget (both pacings): within an hour the won auctions of an audience arrive in
random order; the campaign takes them while the running spend including the next
one stays within the budget. The first won auction that does not fit ends the
audience's campaign (it is not bought): spend never exceeds the budget, and the
hour is recorded in ``out_hour``. Pacing ``"stop"`` joins every auction until
then. Pacing ``"even"`` joins each auction of hour h with probability
``clip((budget * due_h - spent) / expected_full_spend_h, 0, 1)``, where ``due_h``
is the share of the horizon's expected uncapped spend that falls in hours 0..h
(the schedule follows the audience's daily traffic curve): it throttles when
ahead of schedule and joins everything when behind.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from optimizer.market.params import MONEY, MarketParams
from simulations.simulator.tables import Tables, lookup_tables

# Columns of the per-audience running totals carried through the hours.
_IMPRESSIONS, _SPEND, _CLICKS, _CONVERSIONS, _VALUE = range(5)
# Most (audience, hour) Poisson counts drawn at once (stop pacing): bounds memory.
_MAX_GROUPS = 4096
# Up to this many segments a slot finds its own by comparing with every end.
_FEW_SEGMENTS = 32


def _segment(ends: jax.Array, x: jax.Array) -> jax.Array:
    """Index of the segment holding each position ``x``: the number of ``ends``
    (non-decreasing, (G,) int) that are <= x. A comparison table for few
    segments (cheapest), a binary search for many."""
    if ends.shape[0] <= _FEW_SEGMENTS:
        return jnp.sum(
            ends.reshape((1,) * x.ndim + ends.shape) <= x[..., None], axis=-1
        )
    return jnp.searchsorted(ends, x, side="right")


def _uniforms(key: jax.Array, size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Three (size,) float64 uniforms per slot from 128 random bits (two
    Threefry blocks, against three for three ``jax.random.uniform`` draws).

    The first has 53 bits (it picks the alias column, and its remainder the
    alias, so it needs the most); the other two have 32 bits each (steps of
    2.3e-10, far below any click or conversion probability, and a price's
    quantile cut 2.3e-10 from the end). The second is in (0, 1], the others in
    [0, 1); every conversion to float64 is exact.
    """
    bits = jax.random.bits(key, (2, size), jnp.uint64)
    first = (bits[0] >> 11).astype(MONEY) * 2.0**-53
    second = ((bits[1] >> 32).astype(MONEY) + 1.0) * 2.0**-32
    third = (bits[1] & 0xFFFFFFFF).astype(MONEY) * 2.0**-32
    return first, second, third


def _draw_won(
    t: Tables, key: jax.Array, audience: jax.Array, first_price: bool
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Draw won auctions of the given audiences, one per slot.

    Args:
        audience: (S,) int audience index of each slot.

    Returns:
        price paid (S,) currency, click (S,) bool, conversion (S,) bool and value
        of a conversion (S,) currency.
    """
    u_cell, u_price, u_action = _uniforms(key, audience.shape[0])
    n_cells = t.alias_prob.shape[0] // t.bid.shape[0]
    scaled = u_cell * n_cells
    column = jnp.minimum(scaled.astype(audience.dtype), n_cells - 1)
    cell = audience * n_cells + column
    cell = jnp.where(scaled - column < t.alias_prob[cell], cell, t.alias_cell[cell])
    # The competing price: inverse CDF of the log-normal truncated to price < bid
    # (u is in (0, 1]); paid under second price, and what the rates scale with.
    log_price = t.log_loc[cell] + t.log_scale[cell] * ndtri(u_price * t.win_share[cell])
    price = t.cell_bid[cell] if first_price else jnp.exp(log_price)
    rate = jnp.exp(t.rate_slope[cell] * (log_price - t.rate_ref[cell]))
    # One uniform for both: conversion implies click, P(conv | click) = p_conv/p_click.
    click = u_action < t.p_click[cell] * rate
    conversion = u_action < t.p_conv[cell] * rate
    return price, click, conversion, t.value[cell]


def _chunk(
    t: Tables,
    key: jax.Array,
    offset: jax.Array,
    won_end: jax.Array,
    state: tuple[jax.Array, jax.Array, jax.Array | None],
    group_end: jax.Array | None,
    chunk: int,
    first_price: bool,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Buy won auctions ``offset .. offset + chunk - 1`` of the block.

    The block's won auctions are laid out audience after audience; audience a
    owns ``won_end[a - 1] .. won_end[a] - 1`` (``won_end`` (A,) int, cumulative).

    Args:
        state: ``totals`` (A, 5) running impressions, spend, clicks, conversions,
            value; ``stopped`` (A,) bool, budget already ran out; ``hourly``
            (A * Hb, 2) spend and conversions per audience and hour of the
            block, or None when paths are not kept.
        group_end: (A * Hb,) int, cumulative won auctions per (audience, hour)
            of the block (audience-major), when paths are kept.

    Returns:
        Updated ``state``.
    """
    totals, stopped, hourly = state
    slot = offset + jnp.arange(chunk)
    audience = jnp.minimum(_segment(won_end, slot), won_end.shape[0] - 1)
    valid = slot < won_end[-1]  # slots past the block's last win are padding
    price, click, conversion, value = _draw_won(t, key, audience, first_price)
    won_start = jnp.concatenate([jnp.zeros(1, won_end.dtype), won_end[:-1]])
    start = jnp.clip(won_start - offset, 0, chunk)
    end = jnp.clip(won_end - offset, 0, chunk)
    # Spend of the audience's run so far in this chunk, including each slot
    # (padding sits after every audience's run, so it never enters a sum).
    running = jnp.cumsum(price)
    before = jnp.concatenate([jnp.zeros(1, MONEY), running])[start]
    after = totals[:, _SPEND][audience] + running - before[audience]
    take = valid & ~stopped[audience] & (after <= t.budget[audience])
    bought = take.astype(MONEY)
    converted = bought * conversion
    rows = jnp.stack(
        [bought, bought * price, bought * click, converted, converted * value], 1
    )
    added = jnp.zeros((won_end.shape[0], 5), MONEY).at[audience].add(rows)
    refused = added[:, _IMPRESSIONS] < (end - start)
    if hourly is not None:
        group = jnp.minimum(_segment(group_end, slot), group_end.shape[0] - 1)
        hourly = hourly.at[group].add(rows[:, (_SPEND, _CONVERSIONS)])
    return totals + added, stopped | refused, hourly


def _participation(
    t: Tables, hour: jax.Array, hours: int, spent: jax.Array, pacing: str
) -> jax.Array:
    """(A,) probability of joining each auction of ``hour`` (see module docstring)."""
    if pacing == "stop":
        return jnp.ones_like(spent)
    # The schedule follows the audience's traffic: by the end of hour h the
    # campaign should have spent the budget times the share of the horizon's
    # expected uncapped spend that falls in hours 0..h.
    day_total = jnp.sum(t.hourly_spend, axis=1)
    so_far = (hour // 24) * day_total + jnp.cumsum(t.hourly_spend, axis=1)[:, hour % 24]
    share_due = jnp.where(
        day_total > 0, so_far / jnp.where(day_total > 0, day_total * hours / 24, 1), 1
    )
    behind = t.budget * share_due - spent
    expected = t.hourly_spend[:, hour % 24]
    share = jnp.where(expected > 0, behind / jnp.where(expected > 0, expected, 1), 1)
    return jnp.clip(share, 0.0, 1.0)


def _counts(
    t: Tables,
    key: jax.Array,
    first_hour: jax.Array,
    joins: jax.Array,
    hours: int,
    block_hours: int,
) -> tuple[jax.Array, jax.Array]:
    """Won auctions (A, Hb) int per audience and hour of a block, and lost ones
    (A,) over the block: independent Poisson counts (thinning). Hours past the
    horizon have no auctions."""
    hour = first_hour + jnp.arange(block_hours)
    rate = jnp.where(hour < hours, t.rate[:, hour % 24], 0.0)
    won_rate = rate * (joins * t.win_rate)[:, None]
    lost_rate = jnp.maximum(jnp.sum(rate, 1) - jnp.sum(won_rate, 1), 0.0)
    # One Poisson sampler in the program, not two: it is slow to compile.
    counts = jax.random.poisson(key, jnp.concatenate([won_rate.ravel(), lost_rate]))
    n = joins.shape[0]
    return counts[:-n].reshape(n, block_hours), counts[-n:]


def _block(
    t: Tables,
    key: jax.Array,
    carry: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    block: jax.Array,
    *,
    hours: int,
    block_hours: int,
    pacing: str,
    chunk: int,
    first_price: bool,
    paths: bool,
) -> tuple[tuple[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array | None]:
    """Hours ``block * Hb .. block * Hb + Hb - 1`` of one replication.

    ``carry`` = (totals (A, 5), auctions (A,), stopped (A,) bool, out_hour (A,)).
    Emits (Hb, A, 2) cumulative spend and conversions at the end of each hour
    when ``paths``, else None.
    """
    totals, auctions, stopped, out_hour = carry
    n = stopped.shape[0]
    first_hour = block * block_hours
    key_count, key_buy = jax.random.split(jax.random.fold_in(key, block))
    joins = _participation(t, first_hour, hours, totals[:, _SPEND], pacing) * ~stopped
    won, lost = _counts(t, key_count, first_hour, joins, hours, block_hours)
    won_end = jnp.cumsum(jnp.sum(won, 1))
    group_end = jnp.cumsum(won.ravel()) if paths else None
    hourly = jnp.zeros((n * block_hours, 2), MONEY) if paths else None

    def body(state):
        i, offset, *inner = state
        tot, stop, per_hour = _chunk(
            t,
            jax.random.fold_in(key_buy, i),
            offset,
            won_end,
            tuple(inner),
            group_end,
            chunk,
            first_price,
        )
        # Skip the rest of an audience whose budget ran out inside this chunk:
        # none of it can be bought.
        nxt = offset + chunk
        a = jnp.minimum(_segment(won_end, nxt), n - 1)
        nxt = jnp.where(stop[a], jnp.maximum(won_end[a], nxt), nxt)
        return i + 1, nxt, tot, stop, per_hour

    _, _, new_totals, now_stopped, hourly = jax.lax.while_loop(
        lambda s: s[1] < won_end[-1], body, (0, 0, totals, stopped, hourly)
    )
    # The first won auction that did not fit is number ``bought`` of the
    # audience's block (0-based): its hour is where the running count passes it.
    bought = new_totals[:, _IMPRESSIONS] - totals[:, _IMPRESSIONS]
    in_block = jnp.sum(jnp.cumsum(won, 1) <= bought[:, None], 1)
    out_hour = jnp.where(
        now_stopped & ~stopped, (first_hour + in_block).astype(MONEY), out_hour
    )
    carry = (new_totals, auctions + jnp.sum(won, 1) + lost, now_stopped, out_hour)
    if not paths:
        return carry, None
    per_hour = hourly.reshape(n, block_hours, 2)
    path = totals[:, None, (_SPEND, _CONVERSIONS)] + jnp.cumsum(per_hour, 1)
    return carry, jnp.swapaxes(path, 0, 1)


def simulate_one(
    key: jax.Array,
    params: MarketParams,
    bid: jax.Array,
    budget: jax.Array,
    hours: int,
    *,
    first_price: bool,
    pacing: str,
    chunk: int,
    block_hours: int | None = None,
    paths: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """One replication of the plan over ``hours`` hours (pure; vmap it over keys).

    Args:
        key: PRNG key of this replication.
        bid: (A,) float64, currency per impression.
        budget: (A,) float64 cap over the horizon, currency (``inf`` = no cap).
        hours: static horizon length in hours.
        chunk: static number of won-auction slots processed at a time.
        block_hours: static hours whose auctions are drawn together; default
            :func:`default_block_hours`. Pacing ``"even"`` needs 1.
        paths: static; keep the hourly paths (else ``path`` is None).

    Returns:
        ``outcomes`` (A, 6): auctions, impressions, spend, clicks, conversions,
        value; ``out_hour`` (A,), NaN when the budget lasted; ``path`` (H, A, 2):
        cumulative spend and conversions at the end of each hour.
    """
    n = bid.shape[0]
    block_hours = block_hours or default_block_hours(n, hours, pacing)
    if pacing == "even" and block_hours != 1:
        raise ValueError("even pacing updates participation every hour: block_hours=1")
    t = lookup_tables(params, bid, budget, first_price)
    step = functools.partial(
        _block,
        t,
        key,
        hours=hours,
        block_hours=block_hours,
        pacing=pacing,
        chunk=chunk,
        first_price=first_price,
        paths=paths,
    )
    init = (
        jnp.zeros((n, 5), MONEY),
        jnp.zeros(n, MONEY),
        jnp.zeros(n, bool),
        jnp.full(n, jnp.nan, MONEY),
    )
    (totals, auctions, _, out_hour), path = jax.lax.scan(
        step, init, jnp.arange(-(-hours // block_hours))
    )
    if paths:
        path = path.reshape(-1, n, 2)[:hours]
    return jnp.concatenate([auctions[:, None], totals], 1), out_hour, path


def default_block_hours(n_audiences: int, hours: int, pacing: str) -> int:
    """Hours drawn together: 1 for even pacing (participation changes every
    hour); for stop pacing as many as keep at most ``_MAX_GROUPS`` (audience,
    hour) counts, in equal blocks (the fewer blocks, the fuller the chunks)."""
    if pacing == "even":
        return 1
    most = max(1, min(hours, _MAX_GROUPS // max(n_audiences, 1)))
    n_blocks = -(-hours // most)
    return -(-hours // n_blocks)
