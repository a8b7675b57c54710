"""Bucketed shapes: padded audiences and stacks give the plans of the real problems,
and a new audience or scenario count inside a bucket reuses the compiled solve."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from optimizer.allocate import buckets
from optimizer.allocate.allocator import allocate
from optimizer.allocate.problem import make_problem
from tests.markets import random_market


def _problem(audiences: int, budget: float = 300.0, seed: int = 3):
    lower = np.zeros(audiences)
    lower[0] = 5.0  # a bound on the real audiences: padding must not copy it
    upper = np.full(audiences, np.inf)
    upper[-1] = 20.0  # the last audience (the one padding repeats) is capped
    return make_problem(
        random_market(seed, audiences), 7.0, budget, lower=lower, upper=upper
    )


def _close(got, want, rtol=1e-9):
    for name in ("bid", "budget", "spend", "gain", "objective", "dual_price"):
        np.testing.assert_allclose(
            np.asarray(getattr(got, name)), np.asarray(getattr(want, name)), rtol=rtol
        )


def test_padded_plan_is_the_plan_of_the_real_audiences():
    problem = _problem(5)  # padded to 8
    got = buckets.allocate_one(problem)
    assert got.bid.shape == (5,)
    _close(got, allocate(problem))
    assert float(got.budget.sum()) <= 300.0 * (1 + 1e-12)


def test_a_stack_gives_each_problem_its_own_plan():
    # 3 problems are solved one by one, 6 in one vmapped stack: the same plans.
    for count in (3, 6):
        cases = [(80 * (1 + i), 1 + i) for i in range(count)]
        problems = [_problem(5, budget, seed) for budget, seed in cases]
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *problems)
        got = buckets.allocate_many(stacked)
        assert got.bid.shape == (count, 5) and got.objective.shape == (count,)
        for i, problem in enumerate(problems):
            one = jax.tree_util.tree_map(lambda x, i=i: x[i], got)
            _close(one, buckets.allocate_one(problem))  # itself the plan of allocate


def test_counts_inside_a_bucket_reuse_the_compiled_solve():
    buckets.allocate_one(_problem(5))
    compiled = buckets._allocate._cache_size()
    for audiences in (6, 7, 8):
        buckets.allocate_one(_problem(audiences))
    assert buckets._allocate._cache_size() == compiled
    stack = [_problem(7, b) for b in (100.0, 200.0, 300.0, 400.0, 500.0)]
    buckets.allocate_many(jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *stack))
    compiled = buckets.allocate_stacked._cache_size()
    stack = [_problem(7, 100.0 * (1 + b)) for b in range(9)]
    buckets.allocate_many(jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *stack))
    assert buckets.allocate_stacked._cache_size() == compiled


def test_a_short_stack_reuses_the_single_problem_solve():
    # 12 audiences (bucket 16): a shape no other test here compiles a stack for.
    buckets.allocate_one(_problem(12))
    single = buckets._allocate._cache_size()
    stacked = buckets.allocate_stacked._cache_size()
    stack = [_problem(12, b) for b in (100.0, 200.0, 300.0)]
    buckets.allocate_many(jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *stack))
    assert buckets._allocate._cache_size() == single
    assert buckets.allocate_stacked._cache_size() == stacked


def test_bucket_sizes():
    assert [buckets.audience_size(a) for a in (1, 8, 9, 24, 1024, 1025)] == [
        8, 8, 16, 32, 1024, 2048,
    ]  # fmt: skip
    assert [buckets.stack_size(s) for s in (1, 4, 5, 33, 64, 65)] == [
        4, 4, 16, 64, 64, 128,
    ]  # fmt: skip
