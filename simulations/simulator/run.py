"""Simulator driver: replications of a plan split over devices and batched.

All money is float64 (``MONEY``). Replications are a ``vmap`` over keys,
batched in groups of ``batch`` runs by :func:`simulate` and split over devices
(``jax.shard_map`` on a one-axis ``Mesh``). A replication depends only on its
own key, never on which batch or device runs it, so the result is the same on
one device or many.

Each replication is :func:`simulations.simulator.kernel.simulate_one`.
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
from jax.sharding import PartitionSpec

from optimizer import devices
from optimizer.devices import mesh as device_mesh
from optimizer.errors import InputError
from optimizer.io.progress import progress_bar
from optimizer.market.params import MONEY, MarketParams, per_auction
from simulations.simulator.kernel import default_block_hours, simulate_one

PACINGS = ("stop", "even")
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


# Its traced program is kept on disk with the compiled one (a warm simulate skips
# tracing the kernel), keyed by the static arguments, the mesh's devices included.
@devices.stage(("hours", "first_price", "pacing", "chunk", "paths", "blocks", "mesh"))
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


def default_chunk(params: MarketParams, bid: jax.Array, block_hours: int = 1) -> int:
    """Won-auction slots per chunk: about a quarter of the mean won auctions per
    block of ``block_hours`` hours over all audiences, a power of two in
    [16, 2048] (host-side, concrete). Larger chunks gain nothing on a CPU."""
    won = np.asarray(per_auction(params, bid))[:, 0] * np.asarray(params.volume_per_day)
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
    if not np.all(bid > 0):
        raise InputError("every bid must be > 0 (drop an audience instead of bid 0)")
    if not np.all(budget >= 0):
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
        pacing: ``"stop"`` or ``"even"`` (see :mod:`simulations.simulator.kernel`).
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
    bid = np.asarray(bid, np.float64)  # host arrays: checked and passed to one program
    budget = np.broadcast_to(np.asarray(budget, np.float64), bid.shape)
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
    # Split once; each batch takes its rows on the host (no program per batch).
    keys = np.asarray(jax.random.key_data(_split_keys(key, runs)))
    impl = jax.random.key_impl(key)
    n_paths = min(path_runs, runs)
    parts = []
    if n_paths:
        # Padded to a multiple of the devices with repeats that are dropped.
        idx = np.arange(_whole(n_paths, mesh.size)) % runs
        outcomes, out_hour, path = _simulate_batch(
            jax.random.wrap_key_data(keys[idx], impl=impl),
            params,
            bid,
            budget,
            paths=True,
            **static,
        )
        parts.append((outcomes[:n_paths], out_hour[:n_paths], path[:n_paths]))
    size = min(batch, runs - n_paths)
    # A bar with ETA on a terminal; logs (CI, files) get one line per batch.
    bar = progress_bar(runs, "simulating", "run", show=progress, initial=n_paths)
    for lo in range(n_paths, runs, max(size, 1)):
        # The last batch is padded to the same size so it reuses the compiled call.
        idx = np.arange(lo, lo + _whole(size, mesh.size)) % runs
        outcomes, out_hour, _ = _simulate_batch(
            jax.random.wrap_key_data(keys[idx], impl=impl),
            params,
            bid,
            budget,
            paths=False,
            **static,
        )
        n = min(size, runs - lo)
        parts.append((outcomes[:n], out_hour[:n], None))
        if progress:
            # Wait for the previous batch only: two batches stay in flight, so
            # both run concurrently on a multi-core CPU.
            _report(parts[:-1], lo, runs, bar)
    if progress:
        _report(parts, runs, runs, bar)
    bar.close()
    return _assemble(parts, n_paths, bid.shape[0], 24 * days)


_split_keys = jax.jit(jax.random.split, static_argnums=1)  # (key, runs) -> (runs,)


def _whole(n: int, devices: int) -> int:
    """``n`` rounded up to a multiple of ``devices``."""
    return -(-n // devices) * devices


def _report(parts: list, done: int, runs: int, bar) -> None:
    """Block until ``parts`` are computed, then move ``bar`` (or print a line)."""
    jax.block_until_ready(parts)
    if bar.disable:
        print(f"simulated {done}/{runs} runs", file=sys.stderr, flush=True)
    else:
        bar.update(done - bar.n)


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
