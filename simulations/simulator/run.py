"""Simulator stage: replay a plan's bids and budgets auction by auction, hour by hour.

The model is :mod:`optimizer.market.params`'s: in audience a and hour h, auctions arrive
as a Poisson process with rate ``volume_per_day[a] * hour_profile[a, h % 24]``;
each auction's impression stratum k is drawn from ``weight[a]`` and its competing
price from the stratum's log-normal mixture (``price_loc[k] + mix_loc[j]``,
``mix_scale[j]``, component j ~ ``mix_weight``). The campaign wins when the price
is below its bid and pays the price (second price) or its bid (first price); a won
impression is clicked with ``p_click[k]``, converts with ``p_conv[k]`` (always
after a click) and a conversion is worth ``value[k]``.

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

All money is float64 (``MONEY``). Replications are a ``vmap`` over keys,
batched in groups of ``batch`` runs by :func:`simulate` and split over devices
(``jax.shard_map`` on a one-axis ``Mesh``). A replication depends only on its
own key, never on which batch or device runs it, so the result is the same on
one device or many.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import ndtr, ndtri
from jax.sharding import PartitionSpec

from optimizer.devices import mesh as device_mesh
from optimizer.errors import InputError
from optimizer.market.params import MONEY, MarketParams, per_auction

PACINGS = ("stop", "even")
METRICS = ("spend", "impressions", "clicks", "conversions", "value", "cpa", "roas")
TOTAL = "TOTAL"
# Columns of the per-audience running totals carried through the hours.
_IMPRESSIONS, _SPEND, _CLICKS, _CONVERSIONS, _VALUE = range(5)
# Most (audience, hour) Poisson counts drawn at once (stop pacing): bounds memory.
_MAX_GROUPS = 4096
# Up to this many segments a slot finds its own by comparing with every end.
_FEW_SEGMENTS = 32
# Mesh axis the replications are split over.
_RUNS = "runs"


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """Monte-Carlo outcomes: R replications, A audiences, P sampled paths, H hours.

    Attributes:
        auctions: (R, A) float64, auctions held in the audience over the horizon
            (whether or not the campaign joined them).
        impressions: (R, A) float64, auctions won and bought.
        spend: (R, A) float64, currency.
        clicks: (R, A) float64.
        conversions: (R, A) float64.
        value: (R, A) float64, currency.
        out_hour: (R, A) float64, hour index (0 = first hour) in which the budget
            ran out, NaN when it lasted the horizon.
        path_spend: (P, H, A) float64, cumulative spend at the end of each hour
            for the first P replications, currency.
        path_conversions: (P, H, A) float64, cumulative conversions likewise.
    """

    auctions: jax.Array
    impressions: jax.Array
    spend: jax.Array
    clicks: jax.Array
    conversions: jax.Array
    value: jax.Array
    out_hour: jax.Array
    path_spend: jax.Array
    path_conversions: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Tables:
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
        bid: (A,) currency per impression.
        budget: (A,) currency over the horizon.
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


def _tables(
    params: MarketParams, bid: jax.Array, budget: jax.Array, first_price: bool
) -> _Tables:
    """Everything the hour loop looks up, from the market and the plan (A,)."""
    n_components = params.mix_weight.shape[1]
    log_loc = params.price_loc[:, :, None] + params.mix_loc[:, None, :]  # (A, K, J)
    log_scale = jnp.broadcast_to(params.mix_scale[:, None, :], log_loc.shape)
    win_share = ndtr((jnp.log(bid)[:, None, None] - log_loc) / log_scale)
    joint = params.weight[:, :, None] * params.mix_weight[:, None, :] * win_share
    joint = joint.reshape(joint.shape[0], -1)
    win_rate = jnp.sum(joint, axis=1)
    conditional = joint / jnp.maximum(win_rate, jnp.finfo(MONEY).tiny)[:, None]
    alias_prob, alias = jax.vmap(_alias_row)(conditional)
    row_start = jnp.arange(joint.shape[0])[:, None] * joint.shape[1]
    rate = params.volume_per_day[:, None] * params.hour_profile
    spend_per_auction = per_auction(params, bid, first_price)[:, 1]
    return _Tables(
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
    )


def _segment(ends: jax.Array, x: jax.Array) -> jax.Array:
    """Index of the segment holding each position ``x``: the number of ``ends``
    (non-decreasing, (G,) int) that are <= x. A comparison table for few
    segments (cheapest), a binary search for many."""
    if ends.shape[0] <= _FEW_SEGMENTS:
        return jnp.sum(ends <= x[..., None], axis=-1)
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
    t: _Tables, key: jax.Array, audience: jax.Array, first_price: bool
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
    if first_price:
        price = t.bid[audience]
    else:
        # Inverse CDF of the log-normal truncated to price < bid; u is in (0, 1].
        z = ndtri(u_price * t.win_share[cell])
        price = jnp.exp(t.log_loc[cell] + t.log_scale[cell] * z)
    # One uniform for both: conversion implies click, P(conv | click) = p_conv/p_click.
    click = u_action < t.p_click[cell]
    conversion = u_action < t.p_conv[cell]
    return price, click, conversion, t.value[cell]


def _chunk(
    t: _Tables,
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
    t: _Tables, hour: jax.Array, hours: int, spent: jax.Array, pacing: str
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
    t: _Tables,
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
    t: _Tables,
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
    t = _tables(params, bid, budget, first_price)
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


def _replicate(
    keys, params, bid, budget, *, hours, first_price, pacing, chunk, paths, blocks
):
    """vmap of :func:`simulate_one` over ``keys`` (B,)."""
    one = functools.partial(
        simulate_one,
        hours=hours,
        first_price=first_price,
        pacing=pacing,
        chunk=chunk,
        block_hours=blocks,
        paths=paths,
    )
    return jax.vmap(one, in_axes=(0, None, None, None))(keys, params, bid, budget)


@functools.partial(
    jax.jit,
    static_argnames=(
        "hours",
        "first_price",
        "pacing",
        "chunk",
        "paths",
        "blocks",
        "mesh",
    ),
)
def _simulate_batch(
    keys, params, bid, budget, *, hours, first_price, pacing, chunk, paths, blocks, mesh
):
    """:func:`_replicate` with ``keys`` (B,) split evenly over the ``mesh``
    devices (axis ``"runs"``); the market and the plan are copied to each."""
    run = functools.partial(
        _replicate,
        hours=hours,
        first_price=first_price,
        pacing=pacing,
        chunk=chunk,
        paths=paths,
        blocks=blocks,
    )
    spec = PartitionSpec(_RUNS)
    return jax.shard_map(
        run,
        mesh=mesh,
        in_specs=(spec, PartitionSpec(), PartitionSpec(), PartitionSpec()),
        out_specs=spec,
        # jax.random.poisson's loops start from unsharded constants, which the
        # varying-axes check rejects; each shard is independent anyway.
        check_vma=False,
    )(keys, params, bid, budget)


def default_block_hours(n_audiences: int, hours: int, pacing: str) -> int:
    """Hours drawn together: 1 for even pacing (participation changes every
    hour); for stop pacing as many as keep at most ``_MAX_GROUPS`` (audience,
    hour) counts, in equal blocks (the fewer blocks, the fuller the chunks)."""
    if pacing == "even":
        return 1
    most = max(1, min(hours, _MAX_GROUPS // max(n_audiences, 1)))
    n_blocks = -(-hours // most)
    return -(-hours // n_blocks)


def default_chunk(params: MarketParams, bid: jax.Array, block_hours: int = 1) -> int:
    """Won-auction slots per chunk: about a quarter of the mean won auctions per
    block of ``block_hours`` hours over all audiences, a power of two in
    [16, 2048] (host-side, concrete). Larger chunks gain nothing on a CPU."""
    won = np.asarray(per_auction(params, bid)[:, 0] * params.volume_per_day)
    per_block = float(np.sum(won)) / 24 * block_hours / 4
    return int(2 ** np.clip(round(math.log2(max(per_block, 1.0))), 4, 11))


def _validate(
    params: MarketParams, bid: jax.Array, budget: jax.Array, days: int, pacing: str
) -> None:
    """Raise InputError for a plan the simulator cannot replay."""
    if not jax.config.jax_enable_x64:
        raise InputError("the simulator sums money in float64: enable jax_enable_x64")
    if pacing not in PACINGS:
        raise InputError(f"pacing {pacing!r} is not one of {', '.join(PACINGS)}")
    if not isinstance(days, int) or days < 1:
        raise InputError(f"days must be a whole number >= 1, got {days!r}")
    shape = (params.n_audiences,)
    for name, x in (("bid", bid), ("budget", budget)):
        if x.shape != shape:
            raise InputError(f"{name} has shape {x.shape}; expected {shape}")
    if not bool(jnp.all(bid > 0)):
        raise InputError("every bid must be > 0 (drop an audience instead of bid 0)")
    if not bool(jnp.all(budget >= 0)):
        raise InputError("every budget must be >= 0 (use inf for no cap)")


def simulate(
    key: jax.Array,
    params: MarketParams,
    bid: jax.Array,
    budget: jax.Array,
    days: int,
    *,
    first_price: bool,
    pacing: str = "stop",
    runs: int = 200,
    path_runs: int = 20,
    batch: int = 64,
    chunk: int | None = None,
    progress: bool = False,
    devices: Sequence[jax.Device] | None = None,
) -> SimulationResult:
    """Replay a plan ``runs`` times over ``days`` days, auction by auction.

    Args:
        key: PRNG key; replication r uses ``jax.random.split(key, runs)[r]``.
        params: the market (fitted or true).
        bid: (A,) float64, currency per impression.
        budget: (A,) float64 cap per audience over the horizon, currency (``inf``
            for no cap).
        days: whole days; the horizon is ``24 * days`` hours.
        first_price: pay the bid (True) or the highest competing price (False).
        pacing: ``"stop"`` or ``"even"`` (see the module docstring).
        runs: number of replications.
        path_runs: how many of the first replications keep hourly paths.
        batch: replications per compiled call (rounded up to a multiple of the
            number of devices, which share them); bounds memory, and successive
            batches run concurrently on a multi-core CPU.
        chunk: won-auction slots per step; default :func:`default_chunk`.
        progress: print one line per batch to stderr.
        devices: devices the replications are split over (a one-axis
            ``jax.sharding.Mesh``); default every device of ``jax.devices()``.
            Each replication depends only on its own key, so the result is the
            same on any number of devices (up to float64 summation order).

    Returns:
        :class:`SimulationResult` with R = ``runs`` and P = ``min(path_runs, runs)``.
    """
    bid = jnp.asarray(bid, MONEY)
    budget = jnp.broadcast_to(jnp.asarray(budget, MONEY), bid.shape)
    _validate(params, bid, budget, days, pacing)
    mesh = device_mesh(_RUNS, devices)
    blocks = default_block_hours(bid.shape[0], 24 * days, pacing)
    static = dict(
        hours=24 * days,
        first_price=first_price,
        pacing=pacing,
        chunk=chunk or default_chunk(params, bid, blocks),
        blocks=blocks,
        mesh=mesh,
    )
    keys = jax.random.split(key, runs)
    n_paths = min(path_runs, runs)
    parts = []
    if n_paths:
        # Padded to a multiple of the devices with repeats that are dropped.
        idx = jnp.arange(_whole(n_paths, mesh.size)) % runs
        outcomes, out_hour, path = _simulate_batch(
            keys[idx], params, bid, budget, paths=True, **static
        )
        parts.append((outcomes[:n_paths], out_hour[:n_paths], path[:n_paths]))
    size = min(batch, runs - n_paths)
    for lo in range(n_paths, runs, max(size, 1)):
        # The last batch is padded to the same size so it reuses the compiled call.
        idx = jnp.arange(lo, lo + _whole(size, mesh.size)) % runs
        outcomes, out_hour, _ = _simulate_batch(
            keys[idx], params, bid, budget, paths=False, **static
        )
        n = min(size, runs - lo)
        parts.append((outcomes[:n], out_hour[:n], None))
        if progress:
            # Wait for the previous batch only: two batches stay in flight, so
            # both run concurrently on a multi-core CPU.
            _report(parts[:-1], lo, runs)
    if progress:
        _report(parts, runs, runs)
    return _assemble(parts, n_paths, bid.shape[0], 24 * days)


def _whole(n: int, devices: int) -> int:
    """``n`` rounded up to a multiple of ``devices``."""
    return -(-n // devices) * devices


def _report(parts: list, done: int, runs: int) -> None:
    """Block until ``parts`` are computed, then print progress to stderr."""
    jax.block_until_ready(parts)
    print(f"simulated {done}/{runs} runs", file=sys.stderr, flush=True)


def _assemble(
    parts: list, n_paths: int, n_audiences: int, hours: int
) -> SimulationResult:
    """Concatenate batch outputs into one :class:`SimulationResult`."""
    outcomes = jnp.concatenate([p[0] for p in parts])
    out_hour = jnp.concatenate([p[1] for p in parts])
    path = parts[0][2] if n_paths else jnp.zeros((0, hours, n_audiences, 2), MONEY)
    return SimulationResult(
        *(outcomes[..., i] for i in range(6)),
        out_hour=out_hour,
        path_spend=path[..., 0],
        path_conversions=path[..., 1],
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den == 0 (e.g. CPA of a run without conversions)."""
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, num / safe, np.nan)


def _stats(x: np.ndarray) -> tuple[float, float, float, float]:
    """NaN-aware mean, P10, P50, P90 of ``x`` (R,); all NaN when every value is."""
    finite = x[~np.isnan(x)]
    if finite.size == 0:
        return (np.nan,) * 4
    p10, p50, p90 = np.quantile(finite, [0.1, 0.5, 0.9])
    return float(finite.mean()), float(p10), float(p50), float(p90)


def _metrics(r: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The seven summary metrics per replication from (R,) outcome arrays."""
    return {
        "spend": r["spend"],
        "impressions": r["impressions"],
        "clicks": r["clicks"],
        "conversions": r["conversions"],
        "value": r["value"],
        "cpa": _ratio(r["spend"], r["conversions"]),
        "roas": _ratio(r["value"], r["spend"]),
    }


def summarize(result: SimulationResult, audience_names: list[str]) -> pd.DataFrame:
    """Mean and P10/P50/P90 over replications, per audience and ``TOTAL``.

    CPA (spend / conversions) and ROAS (value / spend) are computed per
    replication, then summarized over the replications where they are defined
    (NaN when none is). ``TOTAL`` sums the audiences within each replication
    first.

    Returns:
        DataFrame with columns ``audience, metric, mean, p10, p50, p90``; one row
        per audience and metric (in :data:`METRICS` order), then ``TOTAL``.
    """
    fields = ("spend", "impressions", "clicks", "conversions", "value")
    arrays = {f: np.asarray(getattr(result, f), np.float64) for f in fields}
    columns = [
        {f: a[:, i] for f, a in arrays.items()} for i in range(len(audience_names))
    ]
    columns.append({f: a.sum(axis=1) for f, a in arrays.items()})
    rows = [
        (name, metric, *_stats(x))
        for name, outcome in zip([*audience_names, TOTAL], columns, strict=True)
        for metric, x in _metrics(outcome).items()
    ]
    return pd.DataFrame(
        rows, columns=["audience", "metric", "mean", "p10", "p50", "p90"]
    )


def budget_out_summary(
    result: SimulationResult, audience_names: list[str]
) -> pd.DataFrame:
    """When budgets ran out: per audience, the share of replications whose budget
    ran out and the mean/P10/P50/P90 of that hour (0 = first hour) over them.

    Returns:
        DataFrame with columns ``audience, share_out, mean, p10, p50, p90``
        (statistics NaN for an audience whose budget always lasted).
    """
    out = np.asarray(result.out_hour, np.float64)
    rows = [
        (name, float(np.mean(~np.isnan(out[:, i]))), *_stats(out[:, i]))
        for i, name in enumerate(audience_names)
    ]
    return pd.DataFrame(
        rows, columns=["audience", "share_out", "mean", "p10", "p50", "p90"]
    )


def hourly_paths(result: SimulationResult, audience_names: list[str]) -> pd.DataFrame:
    """Tidy hourly cumulative paths of the sampled replications, for charts.

    Returns:
        DataFrame with columns ``run, hour, audience, cumulative_spend,
        cumulative_conversions``; ``hour`` counts elapsed hours (1 = end of the
        first hour); one row per run, hour and audience, plus ``TOTAL``.
    """
    spend = np.asarray(result.path_spend, np.float64)  # (P, H, A)
    conversions = np.asarray(result.path_conversions, np.float64)
    spend = np.concatenate([spend, spend.sum(2, keepdims=True)], axis=2)
    conversions = np.concatenate([conversions, conversions.sum(2, keepdims=True)], 2)
    runs, hours, names = np.meshgrid(
        np.arange(spend.shape[0]),
        np.arange(1, spend.shape[1] + 1),
        np.asarray([*audience_names, TOTAL], dtype=object),
        indexing="ij",
    )
    return pd.DataFrame(
        {
            "run": runs.ravel(),
            "hour": hours.ravel(),
            "audience": names.ravel(),
            "cumulative_spend": spend.ravel(),
            "cumulative_conversions": conversions.ravel(),
        }
    )
