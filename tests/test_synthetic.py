"""Synthetic market: reproducible, rich, and its log matches its truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.io.schema import validate_event_log
from simulations.synthetic.generate import generate_events, make_truth
from simulations.synthetic.truth import Truth


def test_reproducible_from_seed():
    a = generate_events(make_truth(3, 2, seed=5), seed=5)
    b = generate_events(make_truth(3, 2, seed=5), seed=5)
    c = generate_events(make_truth(3, 2, seed=6), seed=6)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_log_follows_the_contract_and_is_rich():
    truth = make_truth(24, 2, seed=1)
    events = validate_event_log(generate_events(truth, seed=1), "synthetic")
    volumes = [a["volume_per_day"] for a in truth["audiences"]]
    prices = [a["price"]["log_median"] for a in truth["audiences"]]
    assert max(volumes) / min(volumes) > 5 and np.ptp(prices) > 1.0
    assert {"device", "placement", "region", "creative", "page_score"} <= set(
        events.columns
    )
    won = events[events["won"] == 1]
    assert 0.002 < won["click"].mean() < 0.03
    assert 0.01 < won["conversion"].sum() / won["click"].sum() < 0.10
    assert 0.1 < events["won"].mean() < 0.9 and events["bid"].std() > 0


def test_sampled_rates_match_truth_within_sampling_error():
    truth = make_truth(4, 10, seed=2)
    events = generate_events(truth, seed=2)
    t = Truth(truth)
    p_click, p_conv = t.rates_for_rows(events)
    won = events["won"].to_numpy() == 1
    for label, p in (("click", p_click), ("conversion", p_conv)):
        y = events[label].to_numpy()[won]
        expected = p[won].sum()
        assert abs(y.sum() - expected) < 4 * np.sqrt(expected), label


def test_win_rate_and_spend_match_exact_expectation():
    """The truth's closed form reproduces the log's win rate and spend at the logged bids."""
    import jax.numpy as jnp

    from optimizer.market.params import per_auction

    truth = make_truth(3, 10, seed=4)
    events = generate_events(truth, seed=4)
    t = Truth(truth)
    params = t.market_params()
    for a, name in enumerate(t.audiences):
        rows = events[events["audience"] == name]
        bids = rows["bid"].to_numpy()[:4000]
        rates = np.asarray(
            per_auction(params.take(jnp.full(len(bids), a)), jnp.asarray(bids))
        )
        n = len(bids)
        won = rows["won"].to_numpy()[:n]
        assert abs(won.mean() - rates[:, 0].mean()) < 4 * np.sqrt(
            rates[:, 0].mean() / n
        )
        spent = rows["cost"].to_numpy()[:n]
        assert abs(spent.mean() - rates[:, 1].mean()) < 4 * spent.std() / np.sqrt(n)


def test_truth_scores_plans_and_knows_the_optimum():
    t = Truth(make_truth(4, 3, seed=8))
    optimum = t.optimal_plan(budget=200.0, days=7)
    assert float(np.sum(optimum.spend)) == pytest.approx(200.0, rel=1e-6)
    out = t.expected_outcome(
        np.exp(np.asarray(optimum.log_bid)), np.asarray(optimum.spend), 7
    )
    assert float(np.sum(out.conversions)) == pytest.approx(
        float(optimum.objective), rel=1e-6
    )
    usual = t.expected_outcome(t.usual_bids(), np.asarray(optimum.spend), 7)
    assert float(np.sum(usual.conversions)) <= float(optimum.objective) * (1 + 1e-9)
