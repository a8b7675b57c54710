"""Throttled plans: a higher bid on a random share of the auctions where a bound
holds an audience's spend below what that better-converting bid would buy."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from optimizer.allocate.buckets import allocate_one
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import (
    bid_for_spend,
    capacity,
    gain_at,
    log_bid_bounds,
    make_problem,
    spend_at,
)
from optimizer.market.params import expected_outcomes
from optimizer.plan.pacing import pacing, pacing_notes
from tests.markets import random_market

DAYS = 7.0


def _market(slope: float):
    """Two audiences; the second converts poorly, with rates rising as price^slope."""
    params = random_market(3, audiences=2)
    conv = params.p_conv.at[1].multiply(0.05)
    return dataclasses.replace(
        params,
        p_conv=conv,
        rate_slope=jnp.asarray([0.0, slope]),
        rate_ref=params.price_loc[:, 0],
    )


def _best_throttled_gain(problem, audience: int, cap: float) -> float:
    """Brute force: max over 4,000 bids spending >= cap of cap x gain / spend."""
    low, high = (np.asarray(x)[audience] for x in log_bid_bounds(problem))
    grid = np.linspace(low, high, 4000)
    u = jnp.zeros((grid.size, 2)).at[:, audience].set(grid)
    spend = np.asarray(jax.vmap(lambda r: spend_at(problem, r, SolveConfig()))(u))
    gain = np.asarray(jax.vmap(lambda r: gain_at(problem, r, SolveConfig()))(u))
    spend, gain = spend[:, audience], gain[:, audience]
    ok = spend >= cap
    return float(cap * np.max(gain[ok] / spend[ok]))


def _plan(slope: float):
    params = _market(slope)
    cap = np.asarray(capacity(make_problem(params, DAYS, 1.0), SolveConfig()))
    lower = np.array([0.0, 0.2 * cap[1]])
    # The budget binds: the first audience could use more than it gets.
    problem = make_problem(params, DAYS, lower[1] + 0.5 * cap[0], lower=lower)
    return problem, allocate_one(problem), lower


def test_min_spend_audience_bids_higher_on_a_share_of_its_auctions():
    """Rates rising faster than the price: the audience held at its min spend bids
    higher, throttled to that spend, and earns the best a throttled plan can."""
    problem, alloc, lower = _plan(slope=2.0)
    spend = np.asarray(alloc.spend)
    assert spend[1] == pytest.approx(lower[1], rel=1e-6)
    u_min = float(bid_for_spend(problem, jnp.asarray(lower), SolveConfig())[1])
    assert float(np.log(alloc.bid[1])) > u_min + 0.1  # a higher bid than just spends it
    best = _best_throttled_gain(problem, 1, lower[1])
    assert float(alloc.gain[1]) == pytest.approx(best, rel=1e-4)
    plain = float(gain_at(problem, jnp.full(2, u_min), SolveConfig())[1])
    assert float(alloc.gain[1]) > 1.5 * plain
    # The plan's own outcomes (bid and cap through the market model) agree.
    out = expected_outcomes(problem.params, alloc.bid, DAYS, alloc.budget)
    assert float(jnp.sum(out.conversions)) == pytest.approx(
        float(alloc.objective), rel=1e-9
    )
    assert float(jnp.sum(out.spend)) <= float(problem.budget) * (1 + 1e-9)
    # The certificate covers throttled plans: the best one is under its bound.
    rest = float(alloc.gain[0])
    assert float(alloc.objective + alloc.duality_gap) >= (rest + best) * (1 - 1e-9)
    assert float(alloc.marginal[1]) == pytest.approx(float(alloc.gain[1]) / lower[1])


def test_no_throttle_when_rates_do_not_rise_with_price():
    """Without the price-rate link the lowest bid that spends the minimum is best."""
    problem, alloc, lower = _plan(slope=0.0)
    u_min = float(bid_for_spend(problem, jnp.asarray(lower), SolveConfig())[1])
    assert float(np.log(alloc.bid[1])) == pytest.approx(u_min, abs=1e-6)
    assert float(alloc.duality_gap) <= 1e-8 * float(alloc.objective)


def test_plan_json_lists_the_throttled_audience_and_the_share_it_joins():
    """plan.json's "pacing": the forecast assumes even pacing and names the
    audience whose higher bid is throttled, with the share of auctions it joins."""
    problem, alloc, lower = _plan(slope=2.0)
    inputs = SimpleNamespace(names=["a", "b"], problem=problem, config=SolveConfig())
    frame = pd.DataFrame({"budget": np.asarray(alloc.budget)})
    out = pacing(SimpleNamespace(inputs=inputs, allocation=alloc), frame)
    assert out["forecast"] == "even" and set(out["throttled"]) == {"b"}
    uncapped = float(spend_at(problem, jnp.log(alloc.bid), SolveConfig())[1])
    assert out["throttled"]["b"] == pytest.approx(lower[1] / uncapped, abs=1e-4)
    assert out["throttled"]["b"] < 0.9
    (note,) = pacing_notes(out)
    share = f"{out['throttled']['b']:.0%}"
    assert note.startswith(f"'b': bids higher on {share} of its auctions")
