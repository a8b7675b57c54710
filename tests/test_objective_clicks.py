"""``--objective clicks``: plans, frontiers and scenarios that maximize clicks (#20.12)."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.plan.batch import run_frontier
from optimizer.plan.output import plan_document, plan_frame, summary_lines
from optimizer.plan.resolve import resolve, solve_plan
from optimizer.plan.scenario import load_scenario
from tests.test_plan_limits import _market


def _clicks(plan) -> float:
    return float(np.sum(np.asarray(plan.outcomes.clicks)))


def _conversions(plan) -> float:
    return float(np.sum(np.asarray(plan.outcomes.conversions)))


def test_clicks_objective_buys_the_most_clicks(tmp_path):
    market = _market()
    toml = tmp_path / "s.toml"
    toml.write_text('objective = "clicks"\nbudget = 300.0\ndays = 7.0\n')
    by_clicks = solve_plan(market, load_scenario(toml))
    by_conv = solve_plan(market, load_scenario(toml, {"objective": "conversions"}))
    assert by_clicks.inputs.config.objective == "clicks"
    assert float(by_clicks.allocation.budget.sum()) == pytest.approx(300.0, rel=1e-6)
    assert _clicks(by_clicks) > _clicks(by_conv) * (1 + 1e-4)
    assert _conversions(by_conv) > _conversions(by_clicks) * (1 + 1e-4)
    frame = plan_frame(by_clicks)
    doc = plan_document(by_clicks, frame, {}, {}, {})
    assert doc["objective"] == "clicks"
    assert doc["certificate"]["relative_gap"] < 1e-3
    current = float(np.sum(np.asarray(by_clicks.current.clicks)))
    assert doc["uplift_vs_current"] == pytest.approx(
        doc["totals"]["expected_clicks"] / current - 1, rel=1e-6
    )
    assert any(line.startswith("  expected clicks") for line in summary_lines(doc))


def test_clicks_frontier_is_increasing_with_cost_per_click():
    market = _market()
    inputs = resolve(
        market, load_scenario(None, {"objective": "clicks", "days": 7.0}), budget=1000.0
    )
    frame = run_frontier(inputs, np.array([50.0, 200.0, 800.0]))
    assert {"expected_clicks", "marginal_cpc"} <= set(frame.columns)
    assert np.all(np.diff(frame["expected_clicks"]) > 0)
    assert np.all(np.diff(frame["marginal_cpc"]) > 0)  # diminishing returns
