"""Within-audience spread calibration: recovers a known squeeze, honest sd, and
fixes the forecast at higher bids when better impressions cost more."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.io.schema import validate_event_log
from optimizer.market import spread as rate_spread
from optimizer.market.fit import fit_market
from optimizer.market.params import per_auction
from optimizer.market.spread import fit_spread, log_shift
from simulations.synthetic.generate import generate_events, make_truth
from simulations.synthetic.truth import Truth


def _won_log(slope: float, n: int, seed: int, audiences: int = 8):
    """Won impressions whose true log-rate spread is ``slope`` x the predicted one."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, audiences, n)
    base = np.exp(rng.uniform(np.log(0.005), np.log(0.03), audiences))
    s = rng.normal(0.0, 0.6, n)
    predicted = base[codes] * np.exp(s) * rng.uniform(0.5, 2.0, audiences)[codes]
    true = base[codes] * np.exp(slope * s)
    events = rng.uniform(size=n) < np.minimum(true, 1.0)
    return codes, predicted, events


@pytest.mark.parametrize("slope", [0.7, 1.0, 1.5])
def test_recovers_known_slope(slope):
    codes, p, y = _won_log(slope, 400_000, seed=3)
    fit = fit_spread(codes, p, log_shift(p, codes, 8), y)
    assert fit.sd < 0.06
    assert abs(fit.slope - slope) < 3 * fit.sd
    assert fit.events == int(y.sum())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.02, 1.0), min_size=8, max_size=8))
def test_audience_levels_do_not_change_the_slope(factors):
    codes, p, y = _won_log(1.3, 20_000, seed=4)
    scaled = p * np.asarray(factors)[codes]
    a = fit_spread(codes, p, log_shift(p, codes, 8), y)
    b = fit_spread(codes, scaled, log_shift(scaled, codes, 8), y)
    assert b.slope == pytest.approx(a.slope, abs=1e-8)


def test_few_events_keep_the_network_spread():
    codes, p, y = _won_log(2.0, 300, seed=5)
    fit = fit_spread(codes, p, log_shift(p, codes, 8), y)
    assert fit.events < 20
    assert abs(fit.slope - 1.0) < 0.3
    assert fit.sd == pytest.approx(rate_spread.PRIOR_SD, rel=0.2)


def test_no_events_is_the_prior():
    codes, p, _ = _won_log(1.0, 1000, seed=6)
    fit = fit_spread(codes, p, log_shift(p, codes, 8), np.zeros(1000, bool))
    assert fit.slope == 1.0
    assert fit.sd == pytest.approx(rate_spread.PRIOR_SD)


def test_sd_is_calibrated():
    """With the truth at the prior mean, |error| < 1.645 sd in ~90% of logs."""
    inside = []
    for seed in range(200):
        codes, p, y = _won_log(1.0, 20_000, seed=100 + seed)
        fit = fit_spread(codes, p, log_shift(p, codes, 8), y)
        inside.append(abs(fit.slope - 1.0) < 1.645 * fit.sd)
    assert 0.83 <= np.mean(inside) <= 0.97


def _gain_of_doubling(params, bid):
    """(A,) conversions per won impression at 2 x bid over those at bid: what
    bidding higher buys in quality (the audience's rate level cancels)."""
    rates = [
        np.asarray(per_auction(params, jnp.asarray(b), False)) for b in (bid, 2 * bid)
    ]
    low, high = (r[:, 3] / r[:, 0] for r in rates)
    return high / low


def test_squeezed_network_forecast_at_higher_bids():
    """Predictions squeezed to 60% of the true within-audience spread: the fitted
    spread undoes most of it, and what doubling the bid buys in conversions per
    won impression (better impressions cost more) comes out much closer to the
    truth than without the correction."""
    truth_dict = make_truth(10, 14, seed=21, competition_slope=0.6)
    events = validate_event_log(generate_events(truth_dict, seed=21), "synthetic")
    truth = Truth(truth_dict)
    p_click, p_conv = truth.rates_for_rows(events)
    codes = np.unique(events["audience"].to_numpy(), return_inverse=True)[1]
    squeezed = p_conv * np.exp(-0.4 * log_shift(p_conv, codes, codes.max() + 1))
    market = fit_market(events, p_click, squeezed)
    fitted = market.metrics["rate_spread"]["conversion"]
    assert abs(fitted["slope"] - 1 / 0.6) < 3 * fitted["sd"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rate_spread, "PRIOR_SD", 1e-9)  # no spread correction
        plain = fit_market(events, p_click, squeezed)
    assert plain.metrics["rate_spread"]["conversion"]["slope"] == pytest.approx(1.0)
    order = [truth.audiences.index(n) for n in market.names]
    bid = truth.usual_bids()[order]
    true = _gain_of_doubling(truth.market_params().take(jnp.asarray(order)), bid)
    err = np.abs(np.log(_gain_of_doubling(market.params, bid) / true))
    err_plain = np.abs(np.log(_gain_of_doubling(plain.params, bid) / true))
    assert np.median(err) < 0.5 * np.median(err_plain)
