"""Outcome rates that depend on the price paid: closed forms, allocator marginals
and the fit, each against an independent oracle."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optimizer.allocate import response
from optimizer.allocate.config import SolveConfig
from optimizer.io.schema import validate_event_log
from optimizer.market.fit import fit_market
from optimizer.market.params import expected_outcomes, rated_share, with_rule
from optimizer.market.price_rates import (
    NO_CLICKS,
    fit_first_price_rates,
    fit_price_rates,
    price_rate_summary,
)
from simulations.synthetic.generate import generate_events, make_truth
from simulations.synthetic.realism import price_strata
from simulations.synthetic.truth import Truth
from tests.markets import random_market


def _rated(seed: int, audiences: int = 4) -> jax.Array:
    """random_market with slopes in [-0.5, 1] around each audience's typical price."""
    params = random_market(seed, audiences)
    rng = np.random.default_rng(seed + 100)
    return dataclasses.replace(
        params,
        rate_slope=jnp.asarray(rng.uniform(-0.5, 1.0, audiences)),
        rate_ref=jnp.asarray(np.asarray(params.price_loc).mean(1) + 0.3),
    )


def test_rated_share_matches_sampled_prices():
    """E[(P / e^r)^g ; P < b] against 400,000 log-normal prices."""
    rng = np.random.default_rng(0)
    m, s, r, g = -5.0, 0.7, -4.8, 0.6
    price = np.exp(m + s * rng.standard_normal(400_000))
    params = dataclasses.replace(
        random_market(0, 1), rate_slope=jnp.asarray(g), rate_ref=jnp.asarray(r)
    )
    for b in (0.003, 0.007, 0.02):
        sample = (price / np.exp(r)) ** g * (price < b)
        d = (np.log(b) - m) / s
        closed = float(rated_share(params, jnp.asarray(d), m, s))
        assert abs(sample.mean() - closed) < 4 * sample.std() / np.sqrt(len(price))


def test_zero_slope_is_no_price_effect():
    params = random_market(3)
    zero = dataclasses.replace(
        params,
        rate_slope=jnp.zeros(5),
        rate_ref=jnp.full(5, -5.0),
    )
    bid = jnp.asarray(np.random.default_rng(3).uniform(0.003, 0.03, 5))
    for first in (False, True):
        a = expected_outcomes(params, bid, 7.0, None, first)
        b = expected_outcomes(zero, bid, 7.0, None, first)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-12)


def test_price_rates_change_clicks_not_spend():
    """A positive slope moves clicks toward dear impressions: a low bid buys fewer
    clicks per impression than the average, spend and wins do not change."""
    params = _rated(5)
    params = dataclasses.replace(params, rate_slope=jnp.full(4, 0.8))
    flat = dataclasses.replace(params, rate_slope=None, rate_ref=None)
    bid = jnp.exp(params.rate_ref - 1.0)
    rated, plain = (expected_outcomes(p, bid, 7.0, None) for p in (params, flat))
    np.testing.assert_allclose(rated.spend, plain.spend, rtol=1e-12)
    np.testing.assert_allclose(rated.impressions, plain.impressions, rtol=1e-12)
    assert np.all(np.asarray(rated.clicks) < np.asarray(plain.clicks))


@pytest.mark.parametrize("first_price", [False, True])
@pytest.mark.parametrize("rule", [False, True])
def test_log_marginal_matches_autodiff(first_price, rule):
    """The allocator's closed-form marginal equals d gain / d spend by autodiff."""
    params = _rated(7)
    if rule:
        factor = np.random.default_rng(7).normal(0.0, 0.4, params.weight.shape)
        params = with_rule(params, jnp.asarray(factor), jnp.full(4, 0.05))
    config = SolveConfig("conversions", first_price)
    for a in range(params.n_audiences):
        p = jax.tree.map(lambda x, a=a: x[a], params)
        for u in np.log([0.002, 0.006, 0.015]):
            u = jnp.asarray(u)
            d_gain = jax.grad(response.gain, argnums=1)(p, u, config)
            d_spend = jax.grad(response.spend, argnums=1)(p, u, config)
            closed = response.log_marginal(p, u, config)
            np.testing.assert_allclose(
                float(closed), float(jnp.log(d_gain / d_spend)), atol=1e-8
            )


def _won_impressions(slopes, n, rng, rate=(0.01, 0.05)):
    """Won impressions of len(slopes) audiences, clicks drawn with true slopes."""
    a = len(slopes)
    codes = np.repeat(np.arange(a), n)
    log_price = rng.normal(-5.0, 0.6, a)[codes] + 0.6 * rng.standard_normal(len(codes))
    p = rng.uniform(*rate, len(codes))
    centre = np.bincount(codes, log_price) / np.bincount(codes)
    lift = np.exp(np.asarray(slopes)[codes] * (log_price - centre[codes]))
    clicks = rng.random(len(codes)) < np.minimum(p * lift, 1.0)
    return codes, log_price, clicks.astype(float), p


def test_fit_recovers_known_slopes():
    rng = np.random.default_rng(1)
    truth = np.array([-0.3, 0.0, 0.4, 0.8, 0.2, 0.6])
    fit = fit_price_rates(*_won_impressions(truth, 60_000, rng), len(truth))
    assert fit.estimated
    assert np.all(np.abs(fit.slope - truth) < 3 * fit.sd + 0.02)
    assert np.all(fit.sd < 0.15)  # ~1,800 clicks each: the data decide
    assert abs(fit.pooled - truth.mean()) < 0.15


def test_no_price_effect_fits_near_zero_and_thin_audiences_follow_the_pool():
    """Five audiences of ~50 clicks and no price effect: noise alone would give
    slopes of +-0.3; the hierarchy pools them to one slope near 0."""
    rng = np.random.default_rng(2)
    fit = fit_price_rates(*_won_impressions(np.zeros(5), 1_500, rng), 5)
    assert fit.spread == 0.0
    assert np.all(np.abs(fit.slope) < 0.15) and np.all(fit.sd < 0.15)
    # One audience with 3 clicks among strong ones at slope 0.8: it follows the pool.
    codes, x, clicks, p = _won_impressions(np.full(4, 0.8), 30_000, rng)
    thin = np.flatnonzero(codes == 3)
    keep = np.ones(len(codes), bool)
    keep[thin[np.flatnonzero(clicks[thin])[3:]]] = False
    fit = fit_price_rates(codes[keep], x[keep], clicks[keep], p[keep], 4)
    assert fit.events[3] == 3
    assert abs(fit.slope[3] - fit.pooled) < 0.1 and abs(fit.pooled - 0.8) < 0.15


def _first_price_wins(slopes: np.ndarray, bid_sd: float, rng: np.random.Generator):
    """Won first-price impressions of audiences with log-normal prices (sd 0.5) and
    click rate 0.03 x (price / exp(mu))^slope; log bids mu + 0.2 + N(0, bid_sd)."""
    a, n = len(slopes), 100_000
    mu = rng.uniform(-7.0, -5.0, a)
    codes = np.repeat(np.arange(a), n)
    log_price = mu[codes] + 0.5 * rng.standard_normal(len(codes))
    log_bid = mu[codes] + 0.2 + bid_sd * rng.standard_normal(len(codes))
    won = log_price < log_bid
    codes, log_price, log_bid = codes[won], log_price[won], log_bid[won]
    lift = np.exp(slopes[codes] * (log_price - mu[codes]))
    clicks = (rng.random(len(codes)) < 0.03 * lift).astype(float)
    rows = len(codes)
    centre = np.stack([mu[codes], mu[codes]], 1)
    scale = np.full((rows, 2), 0.5)
    weight = np.tile([1.0, 0.0], (rows, 1))
    return codes, log_bid, centre, scale, weight, clicks, np.full(rows, 0.03)


def test_first_price_fit_recovers_known_slopes_from_the_bids():
    """The price of a won first-price auction is never seen: the slope comes from
    how the click rate moves with the bid, under the landscape."""
    rng = np.random.default_rng(3)
    truth = np.array([-0.3, 0.2, 0.6, 1.0])
    fit = fit_first_price_rates(*_first_price_wins(truth, 0.6, rng), len(truth))
    assert fit.estimated and np.all(fit.events > 1_000)
    assert np.all(np.abs(fit.slope - truth) < 3 * fit.sd + 0.02)
    assert np.all(fit.sd < 0.3)
    # Bids that never vary say nothing about the slope: wide, pulled to the prior.
    flat = fit_first_price_rates(*_first_price_wins(truth, 0.0, rng), len(truth))
    assert np.all(flat.sd > 0.5) and np.all(np.abs(flat.slope) < 0.5)


def _true_slopes(truth: dict, bids: np.ndarray) -> np.ndarray:
    """Per audience, the click-weighted least-squares slope of the truth's log
    click multiplier on log price over the prices a bid of ``bids`` wins."""
    out = []
    for i, aud in enumerate(truth["audiences"]):
        w, mult, price = price_strata(aud, truth["latent"], 0.5)
        w = w * (price < bids[i]) * mult
        x, y = np.log(price), np.log(mult)
        xc = x - np.sum(w * x) / w.sum()
        out.append(np.sum(w * xc * y) / np.sum(w * xc * xc))
    return np.array(out)


@pytest.mark.parametrize("auction", ["second_price", "first_price"])
@pytest.mark.parametrize("realism", ["real", "demo"])
def test_fit_market_finds_the_price_link_of_the_real_world_market(realism, auction):
    """On a --realism real log (a latent quality raises clicks and price) the fit
    finds each audience's slope, from the won prices (second price) or from how
    clicks move with the bid (first price); on the demo market (no link) about none."""
    truth = make_truth(4, 10, seed=21, auction_type=auction, realism=realism)
    for aud in truth["audiences"]:  # 115-535 clicks per audience
        aud["volume_per_day"] *= 8
    events = validate_event_log(generate_events(truth, seed=21))
    t = Truth(truth)
    p_click, p_conv = t.rates_for_rows(events)
    market = fit_market(events, p_click, p_conv, auction)
    fit = market.metrics["price_rates"]
    assert fit["estimated"]
    slope = np.array([fit["audiences"][n]["slope"] for n in market.names])
    sd = np.array([fit["audiences"][n]["sd"] for n in market.names])
    if realism == "demo":
        assert np.all(np.abs(slope) < 3 * sd)
        return
    order = [t.audiences.index(n) for n in market.names]
    true = _true_slopes(truth, np.asarray(t.usual_bids()))[order]
    assert np.all(true > 0.15)
    assert np.all(np.abs(slope - true) < 3 * sd + 0.02)
    assert fit["pooled_slope"] > 0.15 and np.all(sd < 0.15)
    np.testing.assert_allclose(market.params.rate_slope, slope)


def test_plan_summary_says_how_sure_and_why_not():
    entry = {
        "estimated": True,
        "pooled_slope": 0.3,
        "spread": 0.1,
        "audiences": {
            "a": {
                "slope": 0.3,
                "sd": 0.1,
                "reference_price": 0.002,
                "events": 1200,
                "doubling_factor": 2**0.3,
            }
        },
    }
    found = price_rate_summary(entry, ["a", "not in the model"])
    a = found["audiences"]["a"]
    assert list(found["audiences"]) == ["a"]
    assert a["reference_cpm"] == pytest.approx(2.0)
    assert a["doubling_factor_p10"] < 2**0.3 < a["doubling_factor_p90"]
    assert "1.23x as often (P10-P90 1.13x-1.35x, from 1,200 clicks)" in a["says"]
    old = price_rate_summary(None, ["a"])
    assert not old["estimated"] and "retrain" in old["says"]
    first = price_rate_summary({"estimated": False, "why": NO_CLICKS}, ["a"])
    assert first["says"] == NO_CLICKS and first["audiences"] == {}
