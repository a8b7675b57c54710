"""plan.output: plan.csv rows, cent rounding, plan.json, warnings and summary."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from optimizer.io.columns import PLAN_COLUMNS
from optimizer.plan.output import (
    plan_document,
    plan_frame,
    response_curves,
    round_cents,
    summary_lines,
    totals,
)
from optimizer.plan.resolve import solve_plan
from optimizer.plan.scenario import Scenario
from tests.markets import fitted_market

BUDGET, DAYS = 300.0, 7.0
METRICS = {
    "landscapes": [
        {"audience": "aud0", "auctions": 500, "max_abs_win_rate_error": 0.0},
        {"audience": "aud1", "auctions": 5000, "max_abs_win_rate_error": 0.1},
        {
            "audience": "aud2",
            "auctions": 5000,
            "max_abs_win_rate_error": 0.0,
            "win_rate_by_bid": [{"bid": 1e-6, "win_rate": 0.5}],
        },
    ]
}


@pytest.fixture(scope="module")
def case():
    """A 6-audience plan with one audience removed, one capped at its max_spend,
    one held at its min_spend and one held at its max bid."""
    market = fitted_market(3, audiences=6)
    scenario = Scenario(budget=BUDGET, days=DAYS, remove_audiences=("aud5",))
    free = solve_plan(market, scenario)
    budget = np.asarray(free.allocation.budget)[:5]
    bid = np.asarray(free.allocation.bid)
    by_budget = np.argsort(budget)  # the least funded first
    held, capped, bid_held = by_budget[0], by_budget[-1], by_budget[-2]
    settings = pd.DataFrame(
        {
            "audience": [f"aud{i}" for i in (held, capped, bid_held)],
            "min_spend": [budget[held] + 10.0, np.nan, np.nan],
            "max_spend": [np.nan, 0.5 * budget[capped], np.nan],
            "max_bid": [np.nan, np.nan, round(0.5 * bid[bid_held], 6)],
        }
    )
    plan = solve_plan(market, scenario, settings)
    return plan, plan_frame(plan), {"held": held, "capped": capped, "bid": bid_held}


@pytest.mark.parametrize("seed", range(20))
def test_round_cents_keeps_the_total_and_never_exceeds_it(seed):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 100, rng.integers(1, 30)) * rng.integers(0, 2, 1)[0]
    values = values if seed % 3 else np.round(values, 3) + 0.005  # half-cent ties
    cents = round_cents(values) * 100
    np.testing.assert_allclose(cents, np.round(cents), atol=1e-6)  # whole cents
    assert round(cents.sum()) == int(np.floor(values.sum() * 100 + 1e-6))
    assert cents.sum() / 100 <= values.sum() + 1e-9
    assert np.all(np.abs(cents / 100 - values) < 0.01 + 1e-9)


def test_round_cents_gives_the_remainder_to_the_largest_fractions():
    np.testing.assert_array_equal(
        round_cents(np.array([1.004, 2.006, 0.0])), [1, 2.01, 0]
    )
    np.testing.assert_array_equal(round_cents(np.array([0.3333] * 3)), [0.33] * 3)


def test_plan_rows(case):
    plan, frame, who = case
    assert list(frame.columns) == [*PLAN_COLUMNS, "bid_cpm"]
    assert frame["audience"].tolist() == plan.inputs.names
    alloc = plan.allocation
    budget = frame["budget"].to_numpy()
    np.testing.assert_array_equal(budget, round_cents(np.asarray(alloc.budget)))
    assert budget.sum() <= float(jnp.sum(alloc.budget)) + 1e-9
    assert budget.sum() <= BUDGET
    assert budget.sum() == pytest.approx(BUDGET, abs=0.01 * len(budget))
    np.testing.assert_array_equal(frame["daily_budget"], np.round(budget / DAYS, 2))
    np.testing.assert_array_equal(frame["bid_cpm"], np.round(frame["bid"] * 1000, 4))
    assert np.all(frame["expected_spend"] <= budget)
    # The removed audience: nothing spent, no bid, no marginal CPA.
    removed = frame.iloc[5]
    assert (removed["budget"], removed["bid"]) == (0.0, 0.0)
    assert np.isnan(removed["marginal_cpa"])
    # Bounds hold, and where none binds the next conversion costs 1 / dual price.
    lower = np.asarray(plan.inputs.problem.lower)
    assert budget[who["held"]] == pytest.approx(lower[who["held"]], abs=0.01)
    # Rounding keeps the total; an audience may gain the cent its remainder earns.
    upper = float(plan.inputs.problem.upper[who["capped"]])
    assert budget[who["capped"]] == pytest.approx(upper, abs=0.01)
    free = sorted(set(range(5)) - set(who.values()))
    np.testing.assert_allclose(
        frame["marginal_cpa"].iloc[free], 1 / float(alloc.dual_price), atol=0.01
    )
    current = np.asarray(plan.current.spend)
    np.testing.assert_allclose(frame["current_spend"], current, atol=0.005)


def test_totals_add_up_the_rows(case):
    _, frame, _ = case
    t = totals(frame)
    assert t["budget"] == pytest.approx(frame["budget"].sum(), abs=1e-9)
    assert t["expected_conversions"] == pytest.approx(
        frame["expected_conversions"].sum(), abs=5e-4
    )
    assert t["cpa"] == pytest.approx(
        t["expected_spend"] / t["expected_conversions"], abs=0.005
    )
    assert t["current_cpa"] == pytest.approx(
        t["current_spend"] / t["current_conversions"], abs=0.005
    )


def test_plan_document_and_warnings(case):
    plan, frame, who = case
    doc = plan_document(plan, frame, {"name": "base"}, {"seed": 1}, METRICS)
    alloc = plan.allocation
    assert (doc["format"], doc["objective"], doc["auction_type"]) == (
        "adplan-plan/1",
        "conversions",
        "second_price",
    )
    assert (doc["budget"], doc["budget_used"], doc["days"]) == (BUDGET, BUDGET, DAYS)
    assert doc["totals"] == totals(frame)
    assert len(doc["audiences"]) == 6 and doc["audiences"][5]["marginal_cpa"] is None
    cert = doc["certificate"]
    assert cert["dual_price"] == float(alloc.dual_price)
    assert cert["marginal_cpa_at_optimum"] == pytest.approx(1 / float(alloc.dual_price))
    assert cert["relative_gap"] < 1e-3
    sens = doc["sensitivities"]
    assert sens["d_objective_d_budget"] == float(alloc.dual_price)
    assert sens["d_objective_d_price_level"] < 0  # dearer auctions, fewer conversions
    assert set(sens["per_audience"]) == set(plan.inputs.names)
    shares = [v["d_spend_d_budget"] for v in sens["per_audience"].values()]
    assert sum(shares) == pytest.approx(1.0, abs=1e-5)  # the budget binds
    assert min(shares) >= 0.0
    assert (doc["scenario"], doc["provenance"]) == ({"name": "base"}, {"seed": 1})
    pacing = doc["pacing"]
    assert pacing["forecast"] == "even" and "--pacing even" in pacing["meaning"]
    # Bounds here are met by lower bids, not by throttling a higher one.
    assert pacing["throttled"] == {}
    notes = "\n".join(doc["warnings"])
    for words in (
        f"'aud{who['held']}': held at its min_spend",
        f"'aud{who['capped']}': capped at its max_spend",
        f"'aud{who['bid']}': bid held at its max bid",
        "'aud0': only 500 auctions in the log",
        "'aud1': the bid landscape fits the log loosely (win rate off by up to 10%)",
        "'aud2': planned bid",
    ):
        assert words in notes
    assert "Targets limit spend" not in notes and "gap above 0.1%" not in notes
    lines = summary_lines(doc)
    assert (
        lines[0]
        == "Plan for 7 days, budget 300.00 currency units (objective: conversions)."
    )
    assert [line for line in lines if line.startswith("  note: ")] == [
        f"  note: {w}" for w in doc["warnings"]
    ]


def test_targets_and_a_loose_certificate_are_flagged(case):
    plan, frame, _ = case
    loose = dataclasses.replace(
        plan,
        budget_used=100.0,
        allocation=dataclasses.replace(
            plan.allocation, duality_gap=plan.allocation.objective * 0.01
        ),
    )
    notes = plan_document(loose, frame, {}, {}, {})["warnings"]
    assert "Targets limit spend to 100.00 of the 300.00 budget." in notes
    assert any("certificate shows a gap above 0.1%" in n for n in notes)


def test_response_curves_rise_with_the_bid(case):
    plan, _, _ = case
    curves = response_curves(plan, points=12)
    assert list(curves) == plan.inputs.names
    for curve in curves.values():
        assert len(curve["bid"]) == 12
        assert np.all(np.diff(curve["bid"]) > 0)
        for key in ("spend", "conversions", "value"):
            assert np.all(np.diff(curve[key]) >= 0), key
        assert curve["conversions"][-1] > curve["conversions"][0]
