"""Market model: closed forms vs Monte-Carlo, gradients, properties, landscape recovery."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optimizer.market.params import expected_outcomes, per_auction, shift_market
from tests.markets import random_market, sample_prices


@pytest.mark.parametrize("first_price", [False, True])
def test_closed_forms_match_monte_carlo(first_price):
    params = random_market(0, audiences=3)
    rng = np.random.default_rng(1)
    bids = np.array([0.004, 0.01, 0.02])
    rates = np.asarray(per_auction(params, jnp.asarray(bids), first_price))
    n = 400_000
    for a in range(3):
        price, k = sample_prices(params, a, n, rng)
        won = price < bids[a]
        paid = np.where(won, bids[a] if first_price else price, 0.0)
        conv = np.where(
            won, np.asarray(params.p_conv[a])[k], 0.0
        )  # expected conversions given stratum
        for i, sample in ((0, won), (1, paid), (3, conv)):
            se = sample.std() / np.sqrt(n)
            assert abs(sample.mean() - rates[a, i]) < 3 * se + 1e-15, (a, i)


def test_gradients_match_finite_differences():
    params = random_market(2, audiences=4)
    bid = jnp.array([0.003, 0.008, 0.012, 0.03])

    def total(b, shift):
        out = expected_outcomes(shift_market(params, shift, 0.0), b, 7.0)
        return jnp.sum(out.spend) + 100 * jnp.sum(out.conversions)

    g_bid, g_shift = jax.grad(total, argnums=(0, 1))(bid, 0.0)
    eps = 1e-7
    for a in range(4):
        step = jnp.zeros(4).at[a].set(eps)
        fd = (total(bid + step, 0.0) - total(bid - step, 0.0)) / (2 * eps)
        assert float(g_bid[a]) == pytest.approx(float(fd), rel=1e-5)
    fd_shift = (total(bid, 1e-6) - total(bid, -1e-6)) / 2e-6
    assert float(g_shift) == pytest.approx(float(fd_shift), rel=1e-5)


def test_money_is_float64():
    out = expected_outcomes(random_market(3), jnp.full(5, 0.01), 7.0, jnp.full(5, 50.0))
    assert out.spend.dtype == jnp.float64 and out.value.dtype == jnp.float64


@given(
    seed=st.integers(0, 10_000),
    low=st.floats(1e-4, 0.05),
    ratio=st.floats(1.01, 3.0),
    fp=st.booleans(),
)
def test_win_rate_and_spend_increase_with_bid(seed, low, ratio, fp):
    params = random_market(seed, audiences=3)
    lo = per_auction(params, jnp.full(3, low), fp)
    hi = per_auction(params, jnp.full(3, low * ratio), fp)
    assert bool(jnp.all(hi[:, 0] >= lo[:, 0])) and bool(jnp.all(hi[:, 1] >= lo[:, 1]))


@given(seed=st.integers(0, 10_000), cap=st.floats(0.0, 500.0), bid=st.floats(1e-3, 0.1))
def test_spend_never_exceeds_cap(seed, cap, bid):
    params = random_market(seed, audiences=3)
    out = expected_outcomes(params, jnp.full(3, bid), 14.0, jnp.full(3, cap))
    assert bool(jnp.all(out.spend <= cap * (1 + 1e-12) + 1e-12))


def test_vmap_over_audiences_equals_loop():
    params = random_market(4, audiences=6)
    bids = jnp.linspace(0.002, 0.04, 6)
    batched = per_auction(params, bids)
    for a in range(6):
        one = per_auction(params.take(jnp.array([a])), bids[a : a + 1])
        np.testing.assert_allclose(
            np.asarray(batched[a]), np.asarray(one[0]), rtol=1e-12
        )
