"""Bid rules: fitting, the market multiplier, plans and simulation with rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.allocate.allocator import allocate
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import capacity, make_problem, market
from optimizer.market.params import (
    as_flat_rule,
    expected_outcomes,
    stratum_log_bids,
    with_rule,
)
from optimizer.market.rules import fit_rule, rule_strata
from simulations.simulator.run import simulate
from tests.markets import random_market

CONFIG = SolveConfig("conversions", False)
DAYS = 7.0


def _log(
    seed: int, n: int = 3000, effect: float = 0.7
) -> tuple[pd.DataFrame, np.ndarray]:
    """Two audiences, device x placement levels with known log-rate effects."""
    rng = np.random.default_rng(seed)
    dev = rng.choice(["mobile", "desktop", "tablet"], n, p=[0.6, 0.3, 0.1])
    plc = rng.choice(["feed", "search", "video", "rare"], n, p=[0.5, 0.3, 0.19, 0.01])
    aud = rng.choice(["a", "b"], n)
    log_rate = (
        -6.0
        + effect * (dev == "desktop")
        - 0.5 * effect * (plc == "video")
        + rng.normal(0, 0.1, n)
    )
    cols = pd.DataFrame({"audience": aud, "device": dev, "placement": plc})
    return cols, log_rate


def test_rule_recovers_known_effects_and_pools_rare_levels():
    cols, y = _log(0)
    rule = fit_rule(cols, y, ["a", "b"], ["device", "placement"], max_levels=3)
    f = rule.factors["a"]
    ratio = f["device"]["desktop"] / f["device"]["mobile"]
    assert 0.55 < np.log(ratio) < 0.72  # the true 0.7, shrunk a little toward 0
    assert set(f["placement"]) == {"feed", "search", "other"}  # 3 levels at most
    assert "rare" in rule.pooled["a"]["placement"]
    log_factor, unseen = rule.row_log_factor(cols)
    assert unseen == 0
    for name in ("a", "b"):  # impression-weighted geometric mean factor 1
        assert abs(log_factor[cols["audience"].to_numpy() == name].mean()) < 0.02
    new = pd.DataFrame(
        {"audience": ["a"], "device": ["smart-tv"], "placement": ["feed"]}
    )
    assert rule.row_log_factor(new)[1] == 1  # unseen level: factor 1, counted
    table = rule.table()
    assert list(table.columns[:4]) == ["audience", "feature", "level", "factor"]


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 50), st.floats(-3.0, 3.0))
def test_scaling_every_rate_leaves_the_factors_unchanged(seed, log_c):
    cols, y = _log(seed, n=800)
    one = fit_rule(cols, y, ["a", "b"], ["device", "placement"])
    two = fit_rule(cols, y + log_c, ["a", "b"], ["device", "placement"])
    np.testing.assert_allclose(one.table()["factor"], two.table()["factor"], rtol=1e-9)


def test_no_structure_bids_flat():
    cols, _ = _log(1)
    rng = np.random.default_rng(1)
    y = -6.0 + rng.normal(0, 0.01, len(cols))  # the network sees nothing
    rule = fit_rule(cols, y, ["a", "b"], ["device", "placement"])
    assert rule.is_flat and set(rule.flat) == {"a", "b"}
    assert np.all(rule.table()["factor"] == 1.0)


def test_an_audience_without_rows_bids_flat():
    cols, y = _log(2)
    rule = fit_rule(cols, y, ["a", "b", "c"], ["device", "placement"])
    assert set(rule.flat) == {"c"} and "no won impressions" in rule.flat["c"]
    assert (rule.table().query("audience == 'c'")["factor"] == 1.0).all()
    codes = pd.Categorical(cols["audience"], categories=["a", "b", "c"]).codes
    zeros = np.zeros(len(cols))
    strata = rule_strata(codes.astype(np.int64), zeros, zeros, zeros, zeros, 3)
    assert strata["weight"][:2].sum(1) == pytest.approx(1.0)
    assert (strata["weight"][2] == 0).all()  # left for the planner to fill flat


def test_factors_of_one_reproduce_the_flat_plan():
    params = random_market(5, audiences=4, strata=3)
    cap = float(jnp.sum(capacity(make_problem(params, DAYS, 1.0), CONFIG)))
    flat = allocate(make_problem(params, DAYS, 0.3 * cap), CONFIG)
    ones = with_rule(params, jnp.zeros_like(params.weight))
    ruled = allocate(make_problem(ones, DAYS, 0.3 * cap), CONFIG)
    for field in ("bid", "spend", "gain"):
        np.testing.assert_allclose(
            getattr(ruled, field), getattr(flat, field), rtol=1e-9
        )
    # No rule at all (None) is the flat code path itself: bit for bit.
    same = allocate(make_problem(with_rule(params, None), DAYS, 0.3 * cap), CONFIG)
    assert np.array_equal(np.asarray(same.bid), np.asarray(flat.bid))


@pytest.mark.parametrize("first", [False, True])
def test_the_flat_market_in_a_rule_shape_plans_as_the_flat_market(first):
    # adplan plan solves the flat plan in the rule market's shape (more strata of
    # weight 0, factors 1) so both solves share compiled programs: same plan.
    config = SolveConfig("conversions", first)
    params = random_market(6, audiences=4, strata=3)
    shaped = as_flat_rule(params, 7)
    assert shaped.weight.shape == (4, 7) and shaped.log_bid_factor.shape == (4, 7)
    cap = float(jnp.sum(capacity(make_problem(params, DAYS, 1.0), config)))
    max_bid = np.exp(np.asarray(params.price_loc).mean(1)) * 2.0
    lower = np.array([0.02 * cap, 0.0, 0.0, 0.0])
    flat, ruled = (
        allocate(make_problem(p, DAYS, 0.3 * cap, lower, max_bid=max_bid), config)
        for p in (params, shaped)
    )
    # (A bid held at its max bid sits 1e-9 in log below it under a rule.)
    for field in ("bid", "spend", "gain", "objective", "dual_price"):
        np.testing.assert_allclose(
            getattr(ruled, field), getattr(flat, field), rtol=1e-8
        )
    want = expected_outcomes(params, flat.bid, DAYS, flat.budget, first)
    got = expected_outcomes(shaped, flat.bid, DAYS, flat.budget, first)
    for field in ("impressions", "spend", "clicks", "conversions", "value"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-9)


@settings(max_examples=12, deadline=None)
@given(
    st.integers(0, 1000),
    st.floats(0.05, 0.9),
    st.booleans(),
    st.floats(0.3, 3.0),
)
def test_plan_with_rules_keeps_budget_bounds_and_max_bids(seed, share, first, bid_x):
    rng = np.random.default_rng(seed)
    params = random_market(seed, audiences=4, strata=3)
    factors = jnp.asarray(rng.normal(0, 0.6, params.weight.shape))
    config = SolveConfig("conversions", first)
    max_bid = np.exp(np.asarray(params.price_loc).mean(1)) * bid_x
    ruled = with_rule(params, factors)
    full = capacity(make_problem(ruled, DAYS, 1.0, max_bid=max_bid), config)
    budget = share * float(jnp.sum(full))
    lower = np.where(rng.random(4) < 0.3, 0.1 * budget / 4, 0.0)
    lower = np.minimum(lower, 0.5 * np.asarray(full))
    upper = np.where(rng.random(4) < 0.3, 0.4 * budget, np.inf)
    problem = make_problem(ruled, DAYS, budget, lower, upper, max_bid)
    alloc = allocate(problem, config)
    spend = np.asarray(alloc.spend)
    assert spend.sum() <= budget * (1 + 1e-9)
    assert np.all(spend <= upper * (1 + 1e-9))
    assert np.all(spend >= lower * (1 - 1e-6) - 1e-9 * budget)
    bids = jax.vmap(lambda p, u: stratum_log_bids(p, u)[0])(
        market(problem), jnp.log(alloc.bid)
    )
    assert np.all(np.asarray(bids) <= np.log(max_bid)[:, None] + 1e-12)
    out = expected_outcomes(
        market(problem), alloc.bid, DAYS, alloc.budget, config.first_price
    )
    np.testing.assert_allclose(out.spend, spend, rtol=1e-6, atol=1e-9 * budget)


def test_simulated_rule_matches_its_expected_outcome():
    params = random_market(7, audiences=3, strata=3)
    factors = jnp.asarray([[0.5, 0.0, -0.5], [-0.3, 0.2, 0.4], [0.0, 0.8, -0.8]])
    bid = jnp.exp(jnp.asarray(params.price_loc).mean(1))
    for first_price in (True,):  # pays the stratum bid: base x factor, capped
        ruled = with_rule(params, factors, 1.5 * bid)
        result = simulate(
            jax.random.key(1),
            ruled,
            bid,
            jnp.full(3, jnp.inf),
            1,
            first_price=first_price,
            runs=64,
            batch=64,
            path_runs=0,
            chunk=64,
        )
        expected = expected_outcomes(ruled, bid, 1, first_price=first_price)
        for field in ("spend", "conversions", "impressions"):
            total = np.asarray(getattr(result, field)).sum(1)
            se = total.std(ddof=1) / np.sqrt(len(total))
            target = float(np.sum(getattr(expected, field)))
            assert abs(total.mean() - target) <= 3 * se, (first_price, field)
