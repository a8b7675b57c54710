"""Landscape fits recover the true win-rate curve; censoring matters."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from optimizer.io.schema import validate_event_log
from optimizer.log.totals import detect_auction_type
from optimizer.market import landscape
from optimizer.market.fit import fit_market
from optimizer.market.params import per_auction
from simulations.synthetic.generate import generate_events, make_truth
from simulations.synthetic.truth import Truth
from tests.markets import second_price_rows


def _fit(auction_type: str, seed: int):
    truth = make_truth(6, 7, seed=seed, auction_type=auction_type)
    events = validate_event_log(generate_events(truth, seed=seed), "synthetic")
    t = Truth(truth)
    p_click, p_conv = t.rates_for_rows(events)
    market = fit_market(events, p_click, p_conv)
    true_params = t.market_params().take(
        jnp.asarray([t.audiences.index(n) for n in market.names])
    )
    return events, market, true_params


def _curve_error(events, market, true_params, i: int) -> float:
    bids = events.loc[events["audience"] == market.names[i], "bid"]
    grid = np.exp(
        np.linspace(np.log(bids.quantile(0.01)), np.log(bids.quantile(0.99)), 25)
    )
    a = market.params.n_audiences
    fitted = [
        float(per_auction(market.params, jnp.full(a, b), market.first_price)[i, 0])
        for b in grid
    ]
    true = [
        float(per_auction(true_params, jnp.full(a, b), market.first_price)[i, 0])
        for b in grid
    ]
    return float(np.max(np.abs(np.subtract(fitted, true))))


@pytest.mark.parametrize(
    ("auction_type", "seed"), [("second_price", 11), ("first_price", 12)]
)
def test_fitted_win_rate_curves_recover_truth(auction_type, seed):
    events, market, true_params = _fit(auction_type, seed)
    assert market.auction_type == auction_type == detect_auction_type(events)
    # The demo market has no price link beyond the features: a slope within its
    # noise of 0 (first price: fitted from the bids, wider).
    rates = market.metrics["price_rates"]
    assert rates["estimated"] and market.params.rate_slope is not None
    sd = max(fit["sd"] for fit in rates["audiences"].values())
    assert abs(rates["pooled_slope"]) < 3 * sd
    checked = 0
    for i, entry in enumerate(market.metrics["landscapes"]):
        if entry["auctions"] >= 5000:
            checked += 1
            assert _curve_error(events, market, true_params, i) < 0.03, entry[
                "audience"
            ]
    assert checked >= 2


def test_censored_fit_beats_naive_and_finds_quality_slope():
    _, market, _ = _fit("second_price", 11)
    fits = market.metrics["landscapes"]
    censored = np.median([f["max_abs_win_rate_error"] for f in fits])
    naive = np.median([f["naive_max_abs_win_rate_error"] for f in fits])
    assert censored < 0.05 < naive
    slopes = [f["quality_slope"] for f in fits if f["auctions"] >= 5000]
    assert np.median(slopes) == pytest.approx(
        0.3, abs=0.1
    )  # truth: competition_slope 0.3


def test_padding_rows_to_a_bucket_leaves_the_fit_unchanged():
    """Fits pad their rows to a few sizes (one compiled fit per size, not per log):
    the weight-0 padding must not move the estimate."""
    rng = np.random.default_rng(5)
    n = 1500  # padded to 2048
    audience = rng.integers(0, 2, n).astype(np.int32)
    log_price = rng.normal(np.where(audience == 0, 0.0, 0.7), 0.4)
    data = second_price_rows(audience, rng.normal(0.3, 0.5, n), log_price)
    padded, ll_padded = landscape._fit(data, False, 200)
    rows = {k: getattr(data, k) for k in ("audience", "log_bid", "log_cost", "won", "shift")}  # fmt: skip
    plain, ll_plain = landscape._solve(
        rows,
        np.ones(n),
        landscape._init(data),
        np.bool_(False),
        n_audiences=2,
        first_price=False,
        iterations=200,
        tolerance=1e-9,
    )
    np.testing.assert_allclose(ll_padded, ll_plain, rtol=1e-9)
    for key in ("mu", "beta", "scale"):
        np.testing.assert_allclose(padded[key], plain[key], rtol=1e-6, atol=1e-9)
    sizes = [landscape._row_bucket(x) for x in (10, 1025, 3000, 4097, 100_000)]
    assert sizes == [1024, 1280, 3072, 5120, 114_688]


def test_fits_in_one_block_share_a_compiled_row_size():
    """``adplan train`` fits the full log, then its band check's shorter log:
    inside :func:`sharing_row_sizes` the second pads to the first's size (one
    compiled program, no new one) and finds the same estimate as on its own."""
    rng = np.random.default_rng(8)

    def rows(n):
        audience = rng.integers(0, 2, n).astype(np.int32)
        log_price = rng.normal(np.where(audience == 0, 0.0, 0.7), 0.4)
        return second_price_rows(audience, rng.normal(0.3, 0.5, n), log_price)

    full, short = rows(3000), rows(2300)  # buckets 3072 and 2560
    with landscape.sharing_row_sizes():
        landscape._fit(full, False, 200)
        programs = landscape._solve._cache_size()
        shared, ll_shared = landscape._fit(short, False, 200)
        assert landscape._solve._cache_size() == programs  # no new program
        assert landscape._SHARED_SIZES.get() == [3072, 3072]
        assert landscape._padded_size(1000) == 1024  # 3072 would pad over 50%
    assert landscape._padded_size(2300) == 2560  # outside a block: its own bucket
    alone, ll_alone = landscape._fit(short, False, 200)
    np.testing.assert_allclose(ll_shared, ll_alone, rtol=1e-9)
    for key in ("mu", "beta", "scale"):
        np.testing.assert_allclose(shared[key], alone[key], rtol=1e-6, atol=1e-9)
