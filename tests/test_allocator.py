"""Allocator against exact optima, closed forms and the invariants of a plan."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.allocate.allocator import allocate
from optimizer.allocate.buckets import allocate_one
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.exact import dual_terms, solve_exact
from optimizer.allocate.problem import capacity, log_bid_bounds, make_problem, spend_at
from optimizer.market.params import expected_outcomes
from simulations.synthetic.generate import make_truth
from simulations.synthetic.truth import Truth
from tests.markets import random_market

CENT = 0.01


def _check_feasible(problem, alloc, first_price=False):
    spend = np.asarray(alloc.spend)
    assert spend.sum() <= float(problem.budget) + CENT
    assert np.all(spend >= np.asarray(problem.lower) - CENT)
    assert np.all(spend <= np.asarray(problem.upper) + CENT)
    uncapped = np.asarray(
        spend_at(problem, jnp.log(alloc.bid), SolveConfig(first_price=first_price))
    )
    assert np.all(spend <= uncapped * (1 + 1e-9) + 1e-9)  # a cap can only throttle


@settings(max_examples=15)
@given(
    seed=st.integers(0, 100_000),
    share=st.floats(0.05, 1.5),
    first_price=st.booleans(),
    objective=st.sampled_from(["conversions", "value"]),
    bounded=st.booleans(),
)
def test_matches_exact_solver(seed, share, first_price, objective, bounded):
    """Random markets, two price modes included: the plan reaches the exact
    solver's objective, and never exceeds the dual bound (weak duality)."""
    audiences = 6  # fixed shape: one compilation per method and auction type
    params = random_market(seed, audiences=audiences)
    rng = np.random.default_rng(seed)
    config = SolveConfig(objective, first_price)
    probe = make_problem(params, 7.0, 1.0)
    cap = np.asarray(capacity(probe, config))
    budget = share * cap.sum()
    lower = upper = None
    if bounded:
        lower = np.where(
            rng.uniform(size=audiences) < 0.3, 0.2 * cap * min(share, 0.9), 0.0
        )
        upper = np.where(rng.uniform(size=audiences) < 0.3, 0.5 * cap, np.inf)
        lower = np.minimum(lower, np.minimum(upper, cap))
    problem = make_problem(params, 7.0, budget, lower, upper)
    exact = solve_exact(problem, config)
    alloc = allocate(problem, config)
    _check_feasible(problem, alloc, first_price)
    assert float(alloc.objective) >= float(exact.objective) * (1 - 1e-6)
    bound = float(exact.dual_price) * budget + float(
        dual_terms(problem, exact.dual_price, config)[0]
    )
    assert float(alloc.objective) <= bound * (1 + 1e-9)
    assert float(alloc.objective) + float(alloc.duality_gap) >= float(
        exact.objective
    ) * (1 - 1e-9)


def test_one_audience_spends_its_budget():
    params = random_market(5, audiences=1)
    cap = float(capacity(make_problem(params, 7.0, 1.0), SolveConfig())[0])
    for share in (0.1, 0.5, 0.9):
        problem = make_problem(params, 7.0, share * cap)
        alloc = allocate(problem)
        assert float(jnp.sum(alloc.spend)) == pytest.approx(share * cap, rel=1e-9)
        assert float(alloc.objective) >= float(solve_exact(problem).objective) * (
            1 - 1e-9
        )


def test_closed_form_bids_proportional_to_conversion_rate():
    """One stratum, no quality link, second price: marginal return = p_conv / bid,
    so at the optimum every audience bids p_conv / price (bids ∝ p_conv)."""
    params = random_market(7, audiences=6, strata=1, components=1, slope=0.0)
    problem = make_problem(
        params,
        14.0,
        0.3 * float(jnp.sum(capacity(make_problem(params, 14.0, 1.0), SolveConfig()))),
    )
    alloc = allocate(problem)
    _, high = log_bid_bounds(problem)
    interior = np.asarray(jnp.log(alloc.bid)) < np.asarray(high) - 1e-9
    assert interior.sum() >= 4
    ratio = np.asarray(alloc.bid) / np.asarray(params.p_conv[:, 0])
    np.testing.assert_allclose(ratio[interior], 1 / float(alloc.dual_price), rtol=1e-8)
    assert float(jnp.sum(alloc.spend)) == pytest.approx(
        float(problem.budget), rel=1e-10
    )


def test_marginal_cpa_equalized_and_certificate():
    problem = make_problem(random_market(8, audiences=10), 14.0, 500.0)
    alloc = allocate(problem)
    m = np.asarray(alloc.marginal)
    np.testing.assert_allclose(m, float(alloc.dual_price), rtol=1e-6)
    assert float(alloc.kkt_residual) < 1e-6


@given(seed=st.integers(0, 10_000), b1=st.floats(10, 2000), ratio=st.floats(1.0, 3.0))
def test_more_budget_never_fewer_conversions(seed, b1, ratio):
    params = random_market(seed, audiences=4)
    small = allocate(make_problem(params, 7.0, b1))
    large = allocate(make_problem(params, 7.0, b1 * ratio))
    assert float(large.objective) >= float(small.objective) * (1 - 1e-9)


@given(seed=st.integers(0, 10_000))
def test_permuting_audiences_permutes_the_plan(seed):
    params = random_market(seed, audiences=5)
    perm = np.random.default_rng(seed).permutation(5)
    base = allocate(make_problem(params, 7.0, 300.0, lower=np.arange(5.0)))
    shuffled = allocate(
        make_problem(
            params.take(jnp.asarray(perm)), 7.0, 300.0, lower=np.arange(5.0)[perm]
        )
    )
    np.testing.assert_allclose(
        np.asarray(shuffled.budget), np.asarray(base.budget)[perm], rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(shuffled.bid), np.asarray(base.bid)[perm], rtol=1e-6
    )


@given(seed=st.integers(0, 10_000), c=st.floats(0.1, 20.0))
def test_scaling_money_scales_the_plan(seed, c):
    params = random_market(seed, audiences=4)
    scaled = dataclasses.replace(params, price_loc=params.price_loc + jnp.log(c))
    base = allocate(make_problem(params, 7.0, 200.0))
    big = allocate(make_problem(scaled, 7.0, 200.0 * c))
    np.testing.assert_allclose(
        np.asarray(big.budget), c * np.asarray(base.budget), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(np.asarray(big.bid), c * np.asarray(base.bid), rtol=1e-6)
    assert float(big.objective) == pytest.approx(float(base.objective), rel=1e-6)


def test_group_caps_and_spend_all():
    params = random_market(9, audiences=6)
    group = np.array([0, 0, 0, 1, 1, 2])
    free = allocate(
        make_problem(
            params,
            7.0,
            600.0,
            group=group,
            group_cap=np.array([np.inf, np.inf, np.inf]),
        )
    )
    first_two = float(jnp.sum(free.spend[:3]))
    capped = allocate(
        make_problem(
            params,
            7.0,
            600.0,
            group=group,
            group_cap=np.array([0.5 * first_two, np.inf, np.inf]),
        )
    )
    assert float(jnp.sum(capped.spend[:3])) <= 0.5 * first_two + CENT
    assert float(capped.objective) <= float(free.objective)
    assert float(jnp.sum(capped.spend)) == pytest.approx(600.0, rel=1e-6)
    assert float(capped.duality_gap) <= 1e-3 * float(capped.objective)


def test_budget_above_capacity_spends_capacity():
    params = random_market(10, audiences=3)
    cap = float(jnp.sum(capacity(make_problem(params, 7.0, 1.0), SolveConfig())))
    alloc = allocate(make_problem(params, 7.0, 10 * cap))
    assert float(jnp.sum(alloc.spend)) == pytest.approx(cap, rel=1e-6)
    assert float(alloc.dual_price) == 0.0


def test_max_bid_binds():
    params = random_market(11, audiences=3)
    alloc = allocate(make_problem(params, 7.0, 1e6, max_bid=np.full(3, 0.004)))
    assert np.all(np.asarray(alloc.bid) <= 0.004 * (1 + 1e-9))


def test_non_concave_market_plan_is_feasible_and_certified():
    """A premium-bidder price mode can make returns rise again with spend; the plan
    stays feasible and its reported gap bounds the distance to the dual bound."""
    params = random_market(0, audiences=1)
    cap = float(capacity(make_problem(params, 7.0, 1.0), SolveConfig())[0])
    problem = make_problem(params, 7.0, 0.5 * cap)
    alloc = allocate(problem)
    _check_feasible(problem, alloc)
    # One audience: the best plan spends the whole budget at the bid that does so.
    assert float(jnp.sum(alloc.spend)) == pytest.approx(0.5 * cap, rel=1e-9)
    bound = float(alloc.dual_price) * 0.5 * cap + float(
        dual_terms(problem, alloc.dual_price, SolveConfig())[0]
    )
    assert float(alloc.objective) + float(alloc.duality_gap) == pytest.approx(
        bound, rel=1e-9
    )


def test_warm_started_path_matches_independent_plans():
    from optimizer.allocate.allocator import allocate_path

    params = random_market(12, audiences=6)
    budgets = jnp.array([50.0, 120.0, 300.0, 700.0])
    path = allocate_path(make_problem(params, 7.0, 1.0), budgets)
    for i, b in enumerate(budgets):
        alone = allocate(make_problem(params, 7.0, float(b)))
        assert float(path.objective[i]) == pytest.approx(
            float(alone.objective), rel=1e-6
        )
        assert float(jnp.sum(path.spend[i])) <= float(b) + CENT


@pytest.mark.parametrize("auction", ["second_price", "first_price"])
def test_atom_markets_get_the_exact_plan(auction):
    """Price atoms (a --realism real truth) make responses step-like: the projected
    steps stall there and the certificate says so; allocate_one then keeps the
    exact dual solver's plan, within budget and never worse."""
    truth = Truth(make_truth(6, 14, seed=51, realism="real", auction_type=auction))
    params, first = truth.market_params(), auction == "first_price"
    config = SolveConfig(first_price=first)
    bid = jnp.asarray(truth.usual_bids())
    spend = float(jnp.sum(expected_outcomes(params, bid, 14.0, None, first).spend))
    problem = make_problem(params, 14.0, spend)
    plain = allocate(problem, config)
    exact = solve_exact(problem, config)
    plan = allocate_one(problem, config)
    assert not float(plain.objective) >= float(exact.objective) * 0.99  # it stalls
    assert float(plan.objective) >= float(exact.objective) * (1 - 1e-6)
    out = expected_outcomes(params, plan.bid, 14.0, plan.budget, first)
    np.testing.assert_allclose(float(jnp.sum(out.conversions)), float(plan.objective))
    assert float(jnp.sum(out.spend)) <= spend * (1 + 1e-9)
    assert float(plan.duality_gap) < 0.01 * float(plan.objective)


def test_smooth_markets_keep_the_allocator_plan():
    """No atoms: the certificate is tight and allocate_one is the allocator's plan."""
    problem = make_problem(random_market(3, 6), 7.0, 500.0)
    plan, plain = allocate_one(problem), allocate(problem)
    np.testing.assert_allclose(np.asarray(plan.bid), np.asarray(plain.bid), rtol=1e-9)


def test_two_mode_audience_leaves_the_worse_basin():
    """100 audiences with two price modes: the first descent settles one audience
    in the worse of its two basins (a 5e-5 gap); the restart from its dual-best
    bid reaches the exact optimum to 1e-9."""
    from benchmarks.bench_allocator import CONFIG, make_bench_problem

    problem = make_bench_problem(100)
    alloc = allocate(problem, CONFIG)
    exact = solve_exact(problem, CONFIG)
    _check_feasible(problem, alloc)
    assert float(alloc.objective) >= float(exact.objective) * (1 - 1e-9)
    assert float(alloc.duality_gap) <= 1e-9 * float(alloc.objective)
