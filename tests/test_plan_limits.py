"""Plans at the edges: a budget the audiences cannot absorb (--spend-all) and money
so small that cents and 6-decimal bids would round it away (issue #20.9, #20.10)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from optimizer.market.fit import FittedMarket
from optimizer.plan.output import paused, plan_document, plan_frame, round_bids
from optimizer.plan.resolve import solve_plan, spendable
from optimizer.plan.scenario import Scenario
from tests.markets import random_market

A = 4


def _market(price_scale: float = 1.0) -> FittedMarket:
    params = random_market(5, audiences=A)
    params = dataclasses.replace(
        params, price_loc=params.price_loc + jnp.log(price_scale)
    )
    return FittedMarket(
        names=[f"a{i}" for i in range(A)],
        auction_type="second_price",
        params=params,
        current_bid=np.full(A, 0.01 * price_scale),
        current_daily_spend=np.full(A, 10.0 * price_scale),
        bid_ceiling=np.full(A, 0.1 * price_scale),
        has_value=False,
        metrics={},
    )


def _doc(plan):
    frame = plan_frame(plan)
    return frame, plan_document(plan, frame, {}, {}, {})


def test_spend_all_beyond_capacity_says_so_and_certifies_the_plan_made():
    market = _market()
    plan = solve_plan(market, Scenario(budget=1e7, days=7.0, spend_all=True))
    most = plan.spendable
    assert most is not None and 0 < most < 1e6
    assert float(plan.allocation.budget.sum()) == pytest.approx(most, rel=1e-4)
    _, doc = _doc(plan)
    assert doc["spendable_budget"] == most
    assert doc["certificate"]["relative_gap"] < 1e-3
    assert "cannot be spent" in doc["warnings"][0]
    assert f"{most:,.2f}" in doc["warnings"][0]
    assert not any("Targets limit" in w for w in doc["warnings"])


def test_spend_all_within_capacity_is_unchanged():
    market = _market()
    probe = solve_plan(market, Scenario(budget=1e7, days=7.0, spend_all=True))
    budget = 0.5 * probe.spendable
    plan = solve_plan(market, Scenario(budget=budget, days=7.0, spend_all=True))
    assert plan.spendable is None and plan.budget_used == budget
    assert spendable(plan.inputs) == pytest.approx(probe.spendable)
    assert float(plan.allocation.budget.sum()) == pytest.approx(budget, rel=1e-6)


def test_tiny_money_never_contradicts_the_plan():
    market = _market(price_scale=1e-4)  # bids near 1e-6 per impression
    plan = solve_plan(market, Scenario(budget=0.05, days=7.0))
    frame, doc = _doc(plan)
    planned = np.asarray(plan.allocation.bid)
    live = frame["budget"].to_numpy() > 0
    assert live.any() and (planned[live] < 1e-4).all()
    np.testing.assert_allclose(frame["bid"][live], planned[live], rtol=1e-3)
    # A row with money has a bid; a row without has neither bid nor outcomes.
    assert ((frame["bid"] > 0) == live).all()
    for col in ("expected_spend", "expected_conversions", "expected_impressions"):
        assert (frame.loc[~live, col] == 0).all()
    assert (frame.loc[live, "daily_budget"] > 0).all()
    if paused(plan, frame):
        assert any("less than one cent are paused" in w for w in doc["warnings"])


def test_pause_note_names_audiences_under_a_cent():
    market = _market(price_scale=1e-4)
    plan = solve_plan(market, Scenario(budget=0.02, days=7.0))
    frame, doc = _doc(plan)
    rounded = (np.asarray(plan.allocation.budget) > 0) & (frame["budget"] == 0)
    names = paused(plan, frame)
    assert names and set(names) <= {f"a{i}" for i in np.flatnonzero(rounded)}
    assert frame.loc[rounded, "cpa"].isna().all()
    assert frame.loc[rounded, "roas"].isna().all()
    note = next(w for w in doc["warnings"] if "paused" in w)
    assert all(f"'{n}'" in note for n in names)


def test_round_bids_keeps_significant_figures():
    bids = np.array([0.0123456, 4.23456e-7, 1.5e-9, 0.0])
    assert round_bids(bids).tolist() == [0.012346, 4.235e-07, 1.5e-09, 0.0]
    usual = np.random.default_rng(0).uniform(1e-3, 1.0, 100)
    np.testing.assert_array_equal(round_bids(usual), np.round(usual, 6))
