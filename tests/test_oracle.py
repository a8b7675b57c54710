"""Truth oracles for bid rules against brute force on tiny markets."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.stats import norm

from optimizer.market.rules import Rule
from simulations.synthetic.generate import make_truth
from simulations.synthetic.oracle import (
    optimum_for_params,
    rule_outcome,
    truth_rule_market,
)
from simulations.synthetic.truth import Truth
from tests.markets import random_market

DAYS = 7.0


def _brute(params, log_bids):
    """(A,) spend and conversions over DAYS of per-stratum bids (A, K), plain scipy."""
    w = np.asarray(params.weight)[:, :, None] * np.asarray(params.mix_weight)[:, None]
    m = np.asarray(params.price_loc)[:, :, None] + np.asarray(params.mix_loc)[:, None]
    s = np.asarray(params.mix_scale)[:, None, :]
    d = (log_bids[:, :, None] - m) / s
    spend = np.sum(w * np.exp(m + s**2 / 2) * norm.cdf(d - s), axis=(1, 2))
    conv = np.sum(w * np.asarray(params.p_conv)[:, :, None] * norm.cdf(d), axis=(1, 2))
    n = np.asarray(params.volume_per_day) * DAYS
    return n * spend, n * conv


def _best_by_search(params, budget, lower=None, starts=6, seed=0):
    """Best conversions over free per-stratum bids within the budget (SLSQP)."""
    a, k = params.weight.shape
    rng = np.random.default_rng(seed)
    centre = np.asarray(params.price_loc)
    cons = [
        {
            "type": "ineq",
            "fun": lambda x: budget - _brute(params, x.reshape(a, k))[0].sum(),
        }
    ]
    if lower is not None:
        cons.append(
            {
                "type": "ineq",
                "fun": lambda x: _brute(params, x.reshape(a, k))[0] - lower,
            }
        )
    best = -np.inf
    for _ in range(starts):
        x0 = (centre + rng.normal(0, 0.5, centre.shape)).ravel()
        res = minimize(
            lambda x: -_brute(params, x.reshape(a, k))[1].sum() / 1e2,
            x0,
            constraints=cons,
            method="SLSQP",
            options={"maxiter": 400, "ftol": 1e-12},
        )
        spend = _brute(params, res.x.reshape(a, k))[0]
        ok = spend.sum() <= budget * (1 + 1e-6)
        if lower is not None:
            ok &= bool(np.all(spend >= lower * (1 - 1e-6)))
        if ok:
            best = max(best, -res.fun * 1e2)
    return best


def _budget(params, share=0.3):
    spend, _ = _brute(params, np.asarray(params.price_loc) + 1.5)
    return share * float(spend.sum())


def test_per_impression_optimum_beats_every_per_stratum_bid_vector():
    params = random_market(3, audiences=2, strata=3)
    budget = _budget(params)
    sol, ruled = optimum_for_params(params, budget, DAYS)
    bids = np.asarray(sol.log_bid)[:, None] + np.asarray(ruled.log_bid_factor)
    spend, conv = _brute(params, bids)
    assert abs(spend.sum() - budget) < 1e-6 * budget
    np.testing.assert_allclose(conv.sum(), float(sol.objective), rtol=1e-9)
    # Bids proportional to the rate: conv per stratum / bid is one price.
    ratio = np.asarray(params.p_conv) / np.exp(bids)
    np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-5)
    assert _best_by_search(params, budget) <= float(sol.objective) * (1 + 1e-6)


def test_with_bounds_it_is_the_per_audience_kkt_optimum():
    params = random_market(4, audiences=2, strata=3)
    budget = _budget(params)
    free, _ = optimum_for_params(params, budget, DAYS)
    lower = np.array([1.5 * float(free.spend[0]), 0.0])
    lower[0] = min(lower[0], 0.8 * budget)
    sol, _ = optimum_for_params(params, budget, DAYS, lower=lower)
    spend = np.asarray(sol.spend)
    assert spend[0] >= lower[0] * (1 - 1e-6) and spend.sum() <= budget * (1 + 1e-9)
    assert float(sol.objective) < float(free.objective)
    best = _best_by_search(params, budget, lower=lower)
    assert best <= float(sol.objective) * (1 + 1e-5)
    assert best >= float(sol.objective) * (1 - 1e-3)  # the search reaches it


def _rule(truth: Truth, features: dict[str, dict[str, float]]) -> Rule:
    names = truth.audiences
    per = {a: {f: dict(v) for f, v in features.items()} for a in names}
    empty = {a: {f: [] for f in features} for a in names}
    return Rule(names, list(features), per, empty, per, per, {}, (0.01, 100.0))


def test_rule_outcome_is_exact_on_the_truth():
    truth = Truth(make_truth(3, 2, seed=3))
    bid = truth.usual_bids()
    flat = truth.expected_outcome(bid, None, DAYS)
    ones = _rule(truth, {"device": {"mobile": 1.0, "desktop": 1.0, "tablet": 1.0}})
    out = rule_outcome(truth_rule_market(truth, ones), bid, None, DAYS, False)
    np.testing.assert_allclose(out.conversions, flat.conversions, rtol=1e-12)
    # A factor 2 on every hour is the flat plan at twice the bid.
    hours = _rule(truth, {"hour_of_day": {str(h): 2.0 for h in range(24)}})
    out = rule_outcome(truth_rule_market(truth, hours), bid, None, DAYS, False)
    double = truth.expected_outcome(2 * bid, None, DAYS)
    np.testing.assert_allclose(out.spend, double.spend, rtol=1e-9)
    np.testing.assert_allclose(out.conversions, double.conversions, rtol=1e-9)
    # Factor 2 on desktop only: the desktop strata bid twice the base.
    desk = _rule(truth, {"device": {"mobile": 1.0, "desktop": 2.0, "tablet": 1.0}})
    market = truth_rule_market(truth, desk)
    levels = np.asarray(truth.features["device"])[truth._codes["device"]]
    expect = np.where(levels == "desktop", np.log(2.0), 0.0)
    np.testing.assert_allclose(np.asarray(market.log_bid_factor)[0], expect)
    capped = rule_outcome(market, bid, None, DAYS, False, max_bid=bid)
    np.testing.assert_allclose(capped.spend, flat.spend, rtol=1e-9)
    assert pd.notna(float(out.value.sum()))
