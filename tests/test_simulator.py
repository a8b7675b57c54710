"""Monte-Carlo simulator: consistency with the closed form, budgets, pacing, output.

Every simulate call here uses a one-day horizon and batches of 64 runs so most
calls share one compiled program (compilation dominates the runtime).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from optimizer.market.params import MarketParams, expected_outcomes
from simulations.simulator import (
    METRICS,
    TOTAL,
    SimulationResult,
    budget_out_summary,
    hourly_paths,
    simulate,
    simulate_one,
    summarize,
)
from simulations.synthetic.generate import make_truth
from simulations.synthetic.truth import Truth

FIELDS = ("auctions", "impressions", "spend", "clicks", "conversions", "value")


@pytest.fixture(scope="module")
def truth_market():
    """(params, usual bids) of a 6-audience synthetic market's true market."""
    truth = Truth(make_truth(6, 7, seed=3))
    return truth.market_params(), jnp.asarray(truth.usual_bids())


def _hand_market() -> tuple[MarketParams, jax.Array]:
    """Two audiences, three strata, a two-component price mixture."""
    f = jnp.float64
    params = MarketParams(
        volume_per_day=jnp.asarray([3000.0, 800.0], f),
        hour_profile=jnp.full((2, 24), 1 / 24, f),
        weight=jnp.asarray([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]], f),
        p_click=jnp.asarray([[0.02, 0.05, 0.1], [0.03, 0.04, 0.2]], f),
        p_conv=jnp.asarray([[0.005, 0.01, 0.05], [0.003, 0.02, 0.1]], f),
        value=jnp.asarray([[40.0, 60.0, 90.0], [20.0, 30.0, 50.0]], f),
        price_loc=jnp.asarray([[-5.0, -4.6, -4.2], [-4.0, -3.8, -3.5]], f),
        mix_weight=jnp.asarray([[0.7, 0.3], [0.4, 0.6]], f),
        mix_loc=jnp.asarray([[0.0, 0.9], [0.0, 0.5]], f),
        mix_scale=jnp.asarray([[0.5, 0.25], [0.6, 0.3]], f),
    )
    return params, jnp.asarray([0.012, 0.03], f)


def _price_rated_market() -> tuple[MarketParams, jax.Array]:
    """The hand market with outcome rates that rise (audience 0) and fall
    (audience 1) with the price paid."""
    params, bid = _hand_market()
    rated = dataclasses.replace(
        params,
        rate_slope=jnp.asarray([0.8, -0.5]),
        rate_ref=jnp.asarray([-4.6, -3.7]),
    )
    return rated, bid


def _run(key, params, bid, budget=jnp.inf, runs=64, **kw):
    kw.setdefault("first_price", False)
    kw.setdefault("path_runs", 0)
    kw.setdefault("chunk", 64)  # fixed, so calls share one compiled program
    return simulate(key, params, bid, budget, 1, runs=runs, batch=64, **kw)


@pytest.mark.parametrize("first_price", [False, True])
@pytest.mark.parametrize("market", ["truth", "hand", "price_rated"])
def test_means_match_closed_form(truth_market, market, first_price):
    """Uncapped Monte-Carlo means agree with the closed form: the totals within 3
    standard errors, each audience within a Bonferroni-corrected bound (family-wise
    chance failure 0.1%; a fixed 3 SE over ~40 per-audience comparisons per case
    would fail a correct simulator for a sizeable share of keys). Fixed key, so the
    check is deterministic."""
    hand = {"hand": _hand_market, "price_rated": _price_rated_market}
    params, bid = truth_market if market == "truth" else hand[market]()
    result = _run(jax.random.key(0), params, bid, runs=256, first_price=first_price)
    expected = expected_outcomes(params, bid, 1, first_price=first_price)
    audiences = np.asarray(bid).shape[0]
    z = float(norm.isf(0.001 / (2 * len(FIELDS) * audiences)))
    for field in FIELDS:
        x = np.asarray(getattr(result, field))
        target = np.asarray(getattr(expected, field))
        se = x.std(0, ddof=1) / np.sqrt(len(x))
        assert np.all(np.abs(x.mean(0) - target) <= z * se), field
        total = x.sum(1)
        total_se = total.std(ddof=1) / np.sqrt(len(total))
        assert abs(total.mean() - target.sum()) <= 3 * total_se, f"total {field}"


def test_reproducible_from_key(truth_market):
    """Same key, identical results; another key, different results."""
    params, bid = truth_market
    a, b = (_run(jax.random.key(5), params, bid) for _ in range(2))
    c = _run(jax.random.key(6), params, bid)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.spend, c.spend)


def test_batch_equals_loop_of_single_runs(truth_market):
    """Replication r of a batched run is simulate_one on split(key)[r]."""
    params, bid = truth_market
    budget = 0.3 * expected_outcomes(params, bid, 1).spend
    key = jax.random.key(7)
    batched = _run(key, params, bid, budget, runs=64)
    one = jax.jit(
        simulate_one, static_argnames=("hours", "first_price", "pacing", "chunk")
    )
    chunk = 64
    for r, k in enumerate(jax.random.split(key, 64)[:3]):
        outcomes, out_hour, _ = one(
            k, params, bid, budget, 24, first_price=False, pacing="stop", chunk=chunk
        )
        got = np.stack([np.asarray(getattr(batched, f))[r] for f in FIELDS], 1)
        # Float64 sums may be reordered under vmap: 1e-12 relative.
        np.testing.assert_allclose(got, outcomes, rtol=1e-12)
        np.testing.assert_array_equal(batched.out_hour[r], out_hour)


def test_block_length_keeps_the_law(truth_market):
    """Drawing a day's auctions in one block (the default for few audiences) or
    hour by hour gives the same law with a budget that runs out: means of spend,
    impressions, conversions and the hour the budget ran out agree within 4
    standard errors of their difference (24 correlated comparisons: 4 SE keeps
    chance failures near 0.2%)."""
    params, bid = truth_market
    budget = 0.5 * expected_outcomes(params, bid, 1).spend
    keys = jax.random.split(jax.random.key(9), 512)

    def run(block_hours):
        one = functools.partial(
            simulate_one,
            hours=24,
            first_price=False,
            pacing="stop",
            chunk=64,
            block_hours=block_hours,
            paths=False,
        )
        many = jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))
        outcomes, out_hour, _ = many(keys, params, bid, budget)
        out = np.where(np.isnan(out_hour), 24.0, out_hour)
        return np.stack([outcomes[..., 2], outcomes[..., 1], outcomes[..., 4], out])

    hourly, daily = run(1), run(24)
    assert np.mean(daily[3] < 24) > 0.5  # the budget did run out
    se = np.sqrt((hourly.var(1, ddof=1) + daily.var(1, ddof=1)) / len(keys))
    diff = np.abs(hourly.mean(1) - daily.mean(1))
    assert np.all(diff <= 4 * np.maximum(se, 1e-12))


@given(
    scale=st.floats(0.05, 1.5),
    bid_scale=st.floats(0.5, 2.0),
    first_price=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_stop_pacing_never_exceeds_budget(
    truth_market, scale, bid_scale, first_price, seed
):
    """Spend <= budget (float64 rounding, 1e-12 relative); a budget that ran out
    left less than one auction's price (< bid) unspent; money stays float64."""
    params, bid = truth_market
    bid = bid * bid_scale
    budget = scale * expected_outcomes(params, bid, 1, first_price=first_price).spend
    result = _run(jax.random.key(seed), params, bid, budget, first_price=first_price)
    spend = np.asarray(result.spend)
    assert spend.dtype == np.float64 and result.value.dtype == jnp.float64
    assert np.all(spend <= np.asarray(budget) * (1 + 1e-12))
    ran_out = ~np.isnan(np.asarray(result.out_hour))
    short = np.broadcast_to(np.asarray(budget - bid), spend.shape)
    assert np.all(spend[ran_out] >= short[ran_out] * (1 - 1e-12))


def test_even_pacing_spreads_spend(truth_market):
    """Even pacing tracks budget x the share of the day's traffic so far; stop
    pacing spends it early. Per-auction spend is the same every hour, so the
    share of spend due by noon is the share of traffic by noon."""
    params, bid = truth_market
    budget = 0.4 * expected_outcomes(params, bid, 1).spend
    even = _run(
        jax.random.key(3), params, bid, budget, runs=8, path_runs=8, pacing="even"
    )
    stop = _run(jax.random.key(3), params, bid, budget, runs=8, path_runs=8)
    half = np.asarray(even.path_spend[:, 11]).mean(0) / np.asarray(budget)
    due = np.cumsum(np.asarray(params.hour_profile), axis=1)[:, 11]
    np.testing.assert_allclose(half, due, atol=0.12)
    assert np.all(np.asarray(even.spend) <= np.asarray(budget) * (1 + 1e-12))
    assert np.all(np.asarray(even.spend).mean(0) > 0.8 * np.asarray(budget))
    assert np.nanmean(np.asarray(stop.out_hour)) < np.nanmean(
        np.where(np.isnan(even.out_hour), 23.0, even.out_hour)
    )


def test_summary_layout(truth_market):
    """Columns, metric order, one block per audience then TOTAL, NaN-aware CPA."""
    params, bid = truth_market
    names = [f"aud{i}" for i in range(6)]
    result = _run(jax.random.key(1), params, bid, runs=64)
    table = summarize(result, names)
    assert list(table.columns) == [
        *("audience", "metric", "mean", "p10", "p50", "p90", "row")
    ]
    assert list(table["audience"]) == [n for n in [*names, TOTAL] for _ in METRICS]
    assert list(table["row"]) == ["audience"] * len(names) * 7 + ["total"] * 7
    assert list(table["metric"]) == list(METRICS) * 7
    assert table[["mean", "p10", "p50", "p90"]].dtypes.eq(np.float64).all()
    spend = table.query("metric == 'spend'").set_index("audience")["mean"]
    np.testing.assert_allclose(spend[TOTAL], spend[names].sum(), rtol=1e-12)
    out = budget_out_summary(result, names)
    assert list(out.columns) == ["audience", "share_out", "mean", "p10", "p50", "p90"]
    assert (out["share_out"] == 0).all()


@given(
    spend=st.lists(st.just(0.0) | st.floats(0.01, 100), min_size=6, max_size=6),
    conversions=st.lists(st.integers(0, 3), min_size=6, max_size=6),
)
def test_total_is_sum_of_audiences_per_run(spend, conversions):
    """TOTAL sums audiences within each replication before the quantiles; CPA of
    runs without conversions is left out (NaN when every run has none)."""
    r, a = 3, 2
    s = np.asarray(spend).reshape(r, a)
    c = np.asarray(conversions, float).reshape(r, a)
    zeros = jnp.zeros((r, a))
    result = SimulationResult(
        zeros,
        zeros,
        jnp.asarray(s),
        zeros,
        jnp.asarray(c),
        jnp.asarray(2 * c),
        jnp.full((r, a), jnp.nan),
        jnp.zeros((0, 24, a)),
        jnp.zeros((0, 24, a)),
    )
    table = summarize(result, ["x", "y"]).set_index(["audience", "metric"])
    total = s.sum(1)
    np.testing.assert_allclose(
        table.loc[(TOTAL, "spend"), ["mean", "p10", "p50", "p90"]].to_numpy(float),
        [total.mean(), *np.quantile(total, [0.1, 0.5, 0.9])],
        rtol=1e-12,
    )
    cpa = table.loc[(TOTAL, "cpa"), "mean"]
    has = c.sum(1) > 0
    if has.any():
        np.testing.assert_allclose(cpa, np.mean(total[has] / c.sum(1)[has]), rtol=1e-12)
    else:
        assert np.isnan(cpa)


def test_hourly_paths_tidy(truth_market):
    """One row per run, hour and audience (plus TOTAL); paths end at the totals."""
    params, bid = truth_market
    result = _run(jax.random.key(2), params, bid, runs=8, path_runs=8)
    names = [f"aud{i}" for i in range(6)]
    paths = hourly_paths(result, names)
    assert list(paths.columns) == [
        "run",
        "hour",
        "audience",
        "cumulative_spend",
        "cumulative_conversions",
        "row",
    ]
    assert len(paths) == 8 * 24 * 7
    assert set(paths.loc[paths["audience"] == TOTAL, "row"]) == {"total"}
    last = paths.query("hour == 24 and audience == @TOTAL")["cumulative_spend"]
    np.testing.assert_allclose(last, np.asarray(result.spend).sum(1), rtol=1e-12)
    assert np.all(np.diff(np.asarray(result.path_spend), axis=1) >= 0)


def test_rejects_bad_plan(truth_market):
    """Contract errors at the boundary name the problem."""
    from optimizer.errors import InputError

    params, bid = truth_market
    with pytest.raises(InputError, match="pacing"):
        _run(jax.random.key(0), params, bid, pacing="fast")
    with pytest.raises(InputError, match="shape"):
        _run(jax.random.key(0), params, bid[:3])
    with pytest.raises(InputError, match="bid"):
        _run(jax.random.key(0), params, dataclasses.replace(params).volume_per_day * 0)
