"""Semi-continuous budgets: each audience is paused or gets at least its min_budget.

The continuous optimum may leave an audience a budget too small to run (0.73 over
two weeks). Such an audience is either paused (max spend 0) or raised to its
min_budget (min spend); the choice is exact over the audiences that fall below:
every pause/raise combination of them (up to ``ENUMERATE`` at a time) is solved
in one vmapped batch and the best kept, the choices are fixed, and the plan is
re-solved until no audience falls below. The plan's certificate is then the
certificate of this restricted problem (bounds fixed), which the notes say.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np

from optimizer import devices
from optimizer.allocate.allocator import Allocation
from optimizer.allocate.buckets import allocate_many
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import Problem
from optimizer.plan.settings import capacity_of

ENUMERATE = 6  # most marginal audiences whose 2^k pause/raise choices are solved
_ROUNDS = 8  # most fix-and-re-solve rounds


def _feasible(problem: Problem, lower: np.ndarray) -> bool:
    if lower.sum() > float(problem.budget) + 1e-9:
        return False
    caps = np.asarray(problem.group_cap)
    if caps.shape[0] == 0:
        return True
    floors = np.bincount(np.asarray(problem.group), weights=lower, minlength=len(caps))
    return bool(np.all(floors <= caps + 1e-9))


def _with_bounds(problem: Problem, lower: np.ndarray, upper: np.ndarray) -> Problem:
    return dataclasses.replace(
        problem,
        lower=jnp.asarray(lower, jnp.float64),
        upper=jnp.asarray(upper, jnp.float64),
    )


def enforce_min_budget(
    problem: Problem,
    config: SolveConfig,
    min_budget: np.ndarray | None,
    allocation: Allocation,
    solve,
) -> tuple[Problem, Allocation, np.ndarray, np.ndarray]:
    """Pause or raise the audiences whose budget falls below ``min_budget``.

    Args:
        problem: the continuous problem, already at the budget to plan.
        min_budget: (A,) currency over the horizon, or None (nothing to do).
            Audiences with a min_spend are never paused; an audience that cannot
            spend its min_budget (max spend or capacity below it) needs only
            what it can spend.
        allocation: the continuous plan of ``problem``.
        solve: Problem -> Allocation, the solver of the final plan.

    Returns:
        (restricted problem, its allocation, paused (A,) bool, raised (A,) bool).
    """
    a = problem.lower.shape[0]
    paused, raised = np.zeros(a, bool), np.zeros(a, bool)
    if min_budget is None:
        return problem, allocation, paused, raised
    lower, upper = np.asarray(problem.lower).copy(), np.asarray(problem.upper).copy()
    reach = np.minimum(upper, np.asarray(capacity_of(problem, config)))
    need = np.minimum(np.asarray(min_budget, float), reach)
    free = (lower <= 0) & (upper > 0) & (need > 0.005)
    restricted = problem
    for _ in range(_ROUNDS):
        spend = np.asarray(allocation.spend)
        below = free & ~paused & ~raised & (spend > 0.005) & (spend < need - 0.005)
        if not below.any():
            break
        idx = np.flatnonzero(below)
        # Closest to their minimum first: those are the real choices; the rest pause.
        idx = idx[np.argsort(-spend[idx] / need[idx], kind="stable")]
        choose, pause_now = idx[:ENUMERATE], idx[ENUMERATE:]
        paused[pause_now] = True
        candidates = []  # pausing them all is always feasible
        for mask in itertools.product((False, True), repeat=len(choose)):
            lo, hi = lower.copy(), upper.copy()
            hi[paused] = 0.0
            lo[raised] = need[raised]
            rise = choose[np.array(mask, bool)]
            lo[rise] = need[rise]
            hi[choose[~np.array(mask, bool)]] = 0.0
            if _feasible(problem, lo):
                candidates.append((mask, lo, hi))
        batch = devices.stack(
            [_with_bounds(problem, lo, hi) for _, lo, hi in candidates]
        )
        # Candidates compared with each other: no throttled bids needed.
        objective = np.asarray(allocate_many(batch, config, throttle=False).objective)
        best = candidates[int(np.argmax(objective))][0]
        raised[choose[np.array(best, bool)]] = True
        paused[choose[~np.array(best, bool)]] = True
        lo, hi = lower.copy(), upper.copy()
        hi[paused] = 0.0
        lo[raised] = need[raised]
        restricted = _with_bounds(problem, lo, hi)
        allocation = solve(restricted)
    return restricted, allocation, paused, raised
