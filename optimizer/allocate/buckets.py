"""Plans solved at a few fixed shapes, so one compiled program serves many problems.

A compiled allocator is specialised to its array shapes: a planner's command with
23 audiences, or 5 what-if scenarios, would otherwise compile again (seconds)
what a command with 24 audiences, or 3 scenarios, already compiled and cached.
Here the audience axis is padded to a size bucket (the padding inert: see
``audiences`` in :func:`~optimizer.allocate.allocator.allocate`) and a stack of
problems to a stack bucket (repeating its last problem); results are trimmed
back to the real audiences and problems.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from optimizer import devices
from optimizer.allocate.allocator import Allocation, allocate, allocate_path
from optimizer.allocate.config import DEFAULT_CONFIG, SolveConfig
from optimizer.allocate.fallback import exact_allocation
from optimizer.allocate.problem import Problem
from optimizer.allocate.throttle import ROOM, with_throttling

# The solves a command runs at top level, kept traced on disk (see optimizer.devices.Stage).
_allocate = devices.Stage(allocate, ("config", "iterations"))
_allocate_path = devices.Stage(allocate_path, ("config",))
_with_throttling = devices.Stage(with_throttling, ("config",))

# A plan whose duality gap exceeds this share of its objective is checked against
# the exact dual solver.
EXACT_GAP = 1e-3
# Stack sizes compiled for; larger stacks round up to a multiple of the last.
# Stacks of at most ONE_BY_ONE problems are solved one by one instead, with the
# single-problem program that every command compiles anyway (a plan's constraint
# costs, a what-if of 3 scenarios): one program fewer to compile and load.
STACKS = (4, 16, 64)
ONE_BY_ONE = 4
# Audience counts compiled for: powers of two up to the last, then its multiples.
_SMALLEST, _LARGEST = 8, 1024
# Problem fields along the audience axis (the rest are scalars or group caps).
AUDIENCE_FIELDS = ("params", "lower", "upper", "max_log_bid", "group")
# Allocation fields along the audience axis (the last axis); the rest are totals.
PER_AUDIENCE = ("bid", "budget", "spend", "gain", "marginal")


def stack_size(n: int) -> int:
    """The padded length of a stack of ``n`` problems (n >= 1).

    >>> stack_size(1), stack_size(5), stack_size(65)
    (4, 16, 128)
    """
    for size in STACKS:
        if n <= size:
            return size
    return devices.pad_to(n, STACKS[-1])


def audience_size(a: int) -> int:
    """The padded length of an audience axis of ``a`` audiences (a >= 1).

    >>> audience_size(6), audience_size(24), audience_size(1500)
    (8, 32, 2048)
    """
    if a > _LARGEST:
        return devices.pad_to(a, _LARGEST)
    return max(_SMALLEST, 1 << (a - 1).bit_length())


def pad_audiences(problem: Problem, length: int, axis: int = 0) -> Problem:
    """``problem`` with its audience axis (``axis`` of each audience field) extended
    to ``length`` by repeating the last audience; host numpy arrays."""
    fields = {name: getattr(problem, name) for name in AUDIENCE_FIELDS}
    return dataclasses.replace(problem, **devices.pad_leading(fields, length, axis))


def trim(alloc: Allocation, n: int) -> Allocation:
    """The first ``n`` audiences of each per-audience field (the padding dropped)."""
    keep = {name: getattr(alloc, name) for name in PER_AUDIENCE}
    return dataclasses.replace(alloc, **devices.host_slice(keep, (..., slice(n))))


def allocate_one(problem: Problem, config: SolveConfig = DEFAULT_CONFIG) -> Allocation:
    """:func:`~optimizer.allocate.allocator.allocate` at a bucketed audience count
    (the same plan, up to the order of sums).

    Where its certificate says the plan may be far from the optimum (a duality
    gap above ``EXACT_GAP`` of the objective, or no finite plan: price atoms
    make responses step-like) and no group caps apply, the exact dual solver
    runs too (compiled only then) and the better plan is kept."""
    a = problem.lower.shape[0]
    alloc = trim(_solve_padded(pad_audiences(problem, audience_size(a)), config, a), a)
    objective = float(alloc.objective)
    loose = not math.isfinite(objective) or float(alloc.duality_gap) > EXACT_GAP * abs(
        objective
    )
    if not loose or problem.group_cap.shape[0]:
        return alloc
    exact = exact_allocation(problem, config)
    better = float(exact.objective) > objective or not math.isfinite(objective)
    return exact if better else alloc


def _solve_padded(
    padded: Problem, config: SolveConfig, a: int, throttle: bool = True
) -> Allocation:
    """The plan of one problem padded to its bucket (``a`` real audiences), with
    throttled bids where they may earn more; padded arrays, not trimmed."""
    full = _allocate(padded, config, audiences=a)
    if throttle and may_throttle(padded, full):
        full = _with_throttling(padded, full, config, audiences=a)
    return full


def may_throttle(problem: Problem, alloc: Allocation) -> bool:
    """Whether throttled bids could beat ``alloc`` (one plan or a stack): only
    with spend bounds, or with room in its certificate (see
    :mod:`~optimizer.allocate.throttle`)."""
    if np.any(np.asarray(problem.lower) > 0) or np.any(
        np.isfinite(np.asarray(problem.upper))
    ):
        return True
    gap, objective = np.asarray(alloc.duality_gap), np.asarray(alloc.objective)
    return bool(np.any(gap > ROOM * np.abs(objective)))


def allocate_path_one(
    problem: Problem, budgets: jax.Array, config: SolveConfig = DEFAULT_CONFIG
) -> Allocation:
    """:func:`~optimizer.allocate.allocator.allocate_path` at a bucketed audience count."""
    a = problem.lower.shape[0]
    padded = pad_audiences(problem, audience_size(a))
    return trim(_allocate_path(padded, budgets, config, audiences=a), a)


@devices.stage(("config",))
def allocate_stacked(
    batch: Problem, config: SolveConfig, audiences: jax.Array | int | None = None
) -> Allocation:
    """Plans of the stacked problems as they are (no padding added), one vmapped
    solve; ``audiences`` as in :func:`~optimizer.allocate.allocator.allocate`."""
    return jax.vmap(lambda p: allocate(p, config, audiences=audiences))(batch)


@devices.stage(("config",))
def throttle_stacked(
    batch: Problem,
    allocs: Allocation,
    config: SolveConfig,
    audiences: jax.Array | int | None = None,
) -> Allocation:
    """:func:`~optimizer.allocate.throttle.with_throttling` of each stacked plan."""
    return jax.vmap(lambda p, al: with_throttling(p, al, config, audiences))(
        batch, allocs
    )


def allocate_many(
    batch: Problem, config: SolveConfig = DEFAULT_CONFIG, throttle: bool = True
) -> Allocation:
    """Plans of S stacked problems (every array with a leading axis S).

    Each plan is the one :func:`~optimizer.allocate.allocator.allocate` gives
    that problem alone (then throttled bids where they earn more, see
    :func:`may_throttle`; ``throttle=False`` skips them, for stacks whose plans
    are only compared with each other); the returned arrays have the leading
    axis S.
    """
    s, a = batch.lower.shape
    if s <= ONE_BY_ONE:
        return _one_by_one(batch, config, throttle)
    padded = devices.pad_leading(
        pad_audiences(batch, audience_size(a), 1), stack_size(s)
    )
    out = allocate_stacked(padded, config, a)
    if throttle and may_throttle(batch, out):
        out = throttle_stacked(padded, out, config, a)
    return devices.host_slice(trim(out, a), slice(s))


def _one_by_one(batch: Problem, config: SolveConfig, throttle: bool) -> Allocation:
    """:func:`allocate_many` of a short stack: each problem solved alone at the
    bucketed audience count (the single-problem programs), results stacked."""
    s, a = batch.lower.shape
    padded = pad_audiences(batch, audience_size(a), 1)
    plans = [
        _solve_padded(
            jax.tree_util.tree_map(lambda x, i=i: np.asarray(x)[i], padded),
            config,
            a,
            throttle,
        )
        for i in range(s)
    ]
    return trim(jax.device_put(devices.stack(plans)), a)
