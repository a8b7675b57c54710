"""The allocator with the audience axis split over the devices of a 1-D mesh.

A audiences are padded to a multiple of the mesh size D, each device holds
A / D of them, and the plans come back as ordinary (A,) arrays: the same plans
as on one device, up to the order of the sums.
"""

from __future__ import annotations

import dataclasses

import jax
from jax.sharding import Mesh

from optimizer import devices
from optimizer.allocate.allocator import Allocation, allocate, allocate_path
from optimizer.allocate.buckets import AUDIENCE_FIELDS, trim
from optimizer.allocate.config import DEFAULT_CONFIG, SolveConfig
from optimizer.allocate.problem import Problem


def shard_problem(problem: Problem, mesh: Mesh) -> Problem:
    """``problem`` with its audience axis split over the devices of ``mesh``.

    The A audiences are padded to a multiple of the mesh size by repeating the
    last one; pass ``audiences=A`` to :func:`allocate` or :func:`allocate_path`
    so the padding is inert, then keep the first A entries of the per-audience
    results (:func:`allocate_sharded` does all three). Days, budget and group
    caps are replicated. Every process must call this with the same problem.

    Args:
        problem: an unbatched Problem of A audiences.
        mesh: a 1-D mesh, e.g. ``devices.mesh("audiences")``.
    """
    fields = {name: getattr(problem, name) for name in AUDIENCE_FIELDS}
    rest = {
        f.name: getattr(problem, f.name)
        for f in dataclasses.fields(problem)
        if f.name not in AUDIENCE_FIELDS
    }
    return Problem(
        **devices.shard_leading(fields, mesh),
        **devices.put(rest, devices.replicated(mesh)),
    )


def _gather(alloc: Allocation, n: int, mesh: Mesh) -> Allocation:
    """:func:`~optimizer.allocate.buckets.trim`, as ordinary arrays (every
    process, under ``jax.distributed`` too, gets the whole plan); the padding
    is dropped on the host, after the gather."""
    return trim(devices.gather(alloc, mesh), n)


def allocate_sharded(
    problem: Problem,
    mesh: Mesh,
    config: SolveConfig = DEFAULT_CONFIG,
    iterations: int = 30,
) -> Allocation:
    """:func:`allocate` with the audiences split over ``mesh``; same plan as on one device.

    Each device holds about A / D audiences; the budget price, the stopping test
    and the certificate's sums are global reductions. Returns ordinary
    (unsharded) arrays, like :func:`allocate`. Under ``jax.distributed`` every
    process calls this with the same problem and gets the whole plan.
    """
    n = problem.lower.shape[0]
    alloc = allocate(shard_problem(problem, mesh), config, iterations, audiences=n)
    return _gather(alloc, n, mesh)


def allocate_path_sharded(
    problem: Problem,
    budgets: jax.Array,
    mesh: Mesh,
    config: SolveConfig = DEFAULT_CONFIG,
) -> Allocation:
    """:func:`allocate_path` with the audiences split over ``mesh`` (budgets (B,)
    replicated); returns ordinary (B, A) and (B,) arrays, like
    :func:`allocate_path`."""
    n = problem.lower.shape[0]
    path = allocate_path(
        shard_problem(problem, mesh),
        devices.put(budgets, devices.replicated(mesh)),
        config,
        audiences=n,
    )
    return _gather(path, n, mesh)
