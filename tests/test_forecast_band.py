"""The simulated band's conversion-rate uncertainty (uncertainty.rate_level_posterior).

The log's conversions say how far the rate network's overall level and each
audience's level are off; the band draws both. These tests check the posterior
against known truths drawn from the model and from a different law, and the
simulate-side plumbing (seeds, fallback for old models).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from optimizer.market.fit import FittedMarket, RateEvidence
from optimizer.market.spread import Spread
from simulations.simulator.uncertainty import (
    audience_factors,
    band_parts,
    draw_rate_factors,
    posterior_mean_factors,
    rate_draws,
    rate_level_posterior,
    rate_uncertainty,
    rate_uncertainty_summary,
    simulate_with_rate_uncertainty,
    spread_tilts,
    uncertainty_text,
)
from tests.markets import random_market


def _log(rng, expected, level, spread, law="gamma"):
    """Observed conversions (A,) for true factors level * u, u with mean 1 and
    coefficient of variation ``spread`` (Gamma or log-normal)."""
    a = len(expected)
    if law == "gamma":
        u = rng.gamma(1 / spread**2, spread**2, a)
    else:
        s2 = np.log1p(spread**2)
        u = np.exp(np.sqrt(s2) * rng.standard_normal(a) - s2 / 2)
    factor = level * u
    return rng.poisson(factor * expected).astype(float), factor


def _interval_covers(post, rng, weights, truth):
    """Whether the P10-P90 interval of sum(weights * factor) covers the truth."""
    draws = draw_rate_factors(post, rng, 2000) @ weights
    lo, hi = np.quantile(draws, [0.1, 0.9])
    return lo <= truth @ weights <= hi


@pytest.mark.parametrize("law", ["gamma", "lognormal"])
def test_band_covers_the_truth_about_80_percent(law):
    # 300 logs of 12 audiences with a true overall level 1.3 and audience spread
    # 0.3 (the rate network's errors on the benchmark markets are of this size).
    # A P10-P90 band is calibrated when it covers 80%; 300 cases give a binomial
    # sd of 2.3 points, so 0.70-0.90 is a > 4 sd margin.
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(300):
        expected = np.exp(rng.uniform(np.log(0.5), np.log(60), 12))
        observed, truth = _log(rng, expected, 1.3, 0.3, law)
        post = rate_level_posterior(observed, expected)
        weights = rng.dirichlet(np.ones(12)) * expected  # a plan's conversions
        hits.append(_interval_covers(post, rng, weights, truth))
    assert 0.70 <= np.mean(hits) <= 0.90


def test_independent_audiences_undercover_what_the_shared_level_covers():
    # The band before the shared level (each audience on its own, Gamma with
    # shape conversions + 20 around the anchored factor) misses a level error
    # that every audience shares; the posterior covers it.
    rng = np.random.default_rng(1)
    new, old = [], []
    for _ in range(200):
        expected = np.exp(rng.uniform(np.log(0.5), np.log(30), 10))
        observed, truth = _log(rng, expected, 1.3, 0.35)
        post = rate_level_posterior(observed, expected)
        weights = expected
        new.append(_interval_covers(post, rng, weights, truth))
        overall = observed.sum() / expected.sum()
        anchored = (observed + 20 * overall) / (expected + 20)
        shape = observed + 20
        draws = anchored * rng.gamma(shape, 1 / shape, (2000, 10)) @ weights
        lo, hi = np.quantile(draws, [0.1, 0.9])
        old.append(lo <= truth @ weights <= hi)
    assert np.mean(new) > np.mean(old) + 0.1


def test_band_widens_with_fewer_conversions():
    rng = np.random.default_rng(2)
    expected = np.exp(rng.uniform(np.log(5), np.log(200), 15))
    observed, _ = _log(rng, expected, 1.1, 0.25)
    widths = []
    for scale in (1.0, 0.1):
        post = rate_level_posterior(np.round(observed * scale), expected * scale)
        draws = draw_rate_factors(post, np.random.default_rng(3), 4000) @ expected
        lo, hi = np.quantile(draws, [0.1, 0.9])
        widths.append((hi - lo) / np.median(draws))
    assert widths[1] > 1.5 * widths[0]


def test_posterior_finds_level_and_spread():
    rng = np.random.default_rng(4)
    expected = np.exp(rng.uniform(np.log(20), np.log(400), 200))
    observed, _ = _log(rng, expected, 0.8, 0.3)
    post = rate_level_posterior(observed, expected)
    level = np.exp(np.sum(post.prob * post.log_level))
    spread = np.sum(post.prob.sum(axis=1) * post.cv)
    # 200 audiences: the level is known to ~2.5% and the spread to ~0.02.
    assert level == pytest.approx(0.8, rel=0.08)
    assert spread == pytest.approx(0.3, abs=0.07)
    # Posterior means shrink each audience's own ratio towards the level.
    own = observed / expected
    mean = posterior_mean_factors(post)
    assert np.all(np.abs(mean - level) <= np.abs(own - level) + 0.01)


def test_posterior_is_proper_without_conversions():
    post = rate_level_posterior(np.zeros(4), np.array([0.5, 1.0, 2.0, 0.1]))
    assert np.isfinite(post.prob).all() and post.prob.sum() == pytest.approx(1.0)
    draws = draw_rate_factors(post, np.random.default_rng(0), 500)
    assert np.isfinite(draws).all() and (draws >= 0).all()


def _fitted(expected: bool) -> FittedMarket:
    params = random_market(5, audiences=4)
    names = [f"a{i}" for i in range(4)]
    observed = np.array([3.0, 40.0, 0.0, 12.0])
    return FittedMarket(
        names=names,
        auction_type="second_price",
        params=params,
        current_bid=np.full(4, 0.01),
        current_daily_spend=np.full(4, 10.0),
        bid_ceiling=np.full(4, 0.1),
        has_value=False,
        metrics={},
        evidence=RateEvidence(
            observed, 0.8 * observed + 2.0 if expected else None, None
        ),
    )


@pytest.mark.parametrize("expected", [True, False])
def test_multipliers_reproducible_and_centred(expected):
    market = _fitted(expected)
    first = rate_uncertainty(market, np.random.default_rng(7), 4000)
    again = rate_uncertainty(market, np.random.default_rng(7), 4000)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (4000, 4)
    # The band stays centred on the plan: mean 1 within Monte-Carlo error (the
    # thinnest audience has a relative sd below 0.5, so 4000 draws give < 0.01).
    np.testing.assert_allclose(first.mean(axis=0), 1.0, atol=0.04)
    # The audience with 40 conversions is surer than the one with none.
    assert first[:, 1].std() < first[:, 2].std()
    summary = rate_uncertainty_summary(market)
    assert (summary is None) != expected
    if expected:
        assert summary["conversions_in_log"] == 55
        assert 0 < summary["level_sd"] < 0.5


def test_simulated_band_is_reproducible_from_the_seed():
    market = _fitted(True)
    bid = np.full(4, 0.02)
    budget = np.full(4, 50.0)
    runs = [
        simulate_with_rate_uncertainty(market, bid, budget, 1, False, "stop", 8, seed)[
            0
        ]
        for seed in (5, 5, 6)
    ]
    np.testing.assert_array_equal(runs[0].conversions, runs[1].conversions)
    assert not np.array_equal(runs[0].conversions, runs[2].conversions)


def _with_spread(slope: float = 1.3, sd: float = 0.15) -> FittedMarket:
    market = _fitted(True)
    evidence = dataclasses.replace(market.evidence, spread=Spread(slope, sd, 55))
    return dataclasses.replace(market, evidence=evidence)


def test_spread_draws_leave_the_log_bids_alone_and_widen_away_from_them():
    market = _with_spread()
    tilts = spread_tilts(market, np.random.default_rng(3), 400)
    assert tilts.shape == (400, *market.params.p_conv.shape)
    assert np.isfinite(tilts).all() and (tilts > 0).all()
    at_log = audience_factors(market.params, tilts, market.current_bid)
    np.testing.assert_allclose(at_log, 1.0, rtol=1e-12)
    far = audience_factors(market.params, tilts, 4.0 * market.current_bid)
    assert far.std(axis=0).max() > 0.01  # (an audience it already wins is unchanged)
    np.testing.assert_allclose(far.mean(axis=0), 1.0, atol=0.03)
    # A surer fit draws narrower; without a fit nothing is drawn.
    surer = spread_tilts(_with_spread(sd=0.03), np.random.default_rng(3), 400)
    narrow = audience_factors(market.params, surer, 4.0 * market.current_bid)
    assert np.all(narrow.std(axis=0) <= far.std(axis=0) + 1e-12)
    assert narrow.std(axis=0).max() < 0.5 * far.std(axis=0).max()
    np.testing.assert_array_equal(
        spread_tilts(_fitted(True), np.random.default_rng(3), 5), 1.0
    )


def test_band_draws_levels_and_spread_and_says_so():
    market = _with_spread()
    draws = rate_draws(market, 20, seed=4)
    assert draws.shape == (20, *market.params.p_conv.shape)
    np.testing.assert_array_equal(draws, rate_draws(market, 20, seed=4))
    # Per audience at the log's bids the draws are exactly the level draws.
    levels = rate_uncertainty(market, np.random.default_rng([4, 7]), 20)
    np.testing.assert_allclose(
        audience_factors(market.params, draws, market.current_bid), levels
    )
    summary = rate_uncertainty_summary(market)
    assert summary["quality_spread_sd"] == pytest.approx(0.15 / 1.3)
    text = uncertainty_text({"rate_sd": 0.1, "luck_sd": 0.05} | summary)
    assert "pricier impressions" in text and "+-12%" in text
    assert "pricier" not in uncertainty_text(
        {"rate_sd": 0.1, "luck_sd": 0.05} | rate_uncertainty_summary(_fitted(True))
    )
    result = type("R", (), {"conversions": np.ones((40, 4))})()
    assert band_parts(result, levels)["rate_sd"] > 0
