"""plan.resolve: settings + scenario -> Problem, feasibility, targets, goal seeking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.allocate.config import SolveConfig
from optimizer.errors import InfeasibleError, InputError
from optimizer.market.params import expected_outcomes, shift_market
from optimizer.plan.resolve import resolve, solve_plan, target_budget
from optimizer.plan.scenario import Scenario
from tests.markets import fitted_market

DAYS = 7.0


@pytest.fixture(scope="module")
def market():
    return fitted_market(3)


def _totals(market, scenario, budget):
    """Spend, conversions and value of the optimal plan of ``scenario`` at ``budget``."""
    t = solve_plan(market, scenario, budget=budget).outcomes.totals()
    return float(t["spend"]), float(t["conversions"]), float(t["value"])


def test_settings_and_scenario_make_the_problem(market):
    settings = pd.DataFrame(
        {
            "audience": ["aud1", "aud2"],
            "min_spend": [5.0, np.nan],
            "max_spend": [50.0, 80.0],
            "max_bid": [0.5, np.nan],
            "volume_per_day": [np.nan, 1234.0],
        }
    )
    scenario = Scenario(
        budget=300.0,
        days=DAYS,
        budget_scale=0.5,
        max_bid=0.8,
        price_shift=0.1,
        rate_shift={"aud0": -0.2},
        bounds={"aud2": {"max_spend": 60.0}},
        remove_audiences=("aud3",),
        auction_type="first_price",
        spend_all=True,
    )
    inputs = resolve(market, scenario, settings)
    p = inputs.problem
    assert inputs.names == market.names
    assert inputs.config == SolveConfig("conversions", True, True)
    assert (float(p.budget), float(p.days)) == (150.0, DAYS)  # budget x budget_scale
    np.testing.assert_array_equal(inputs.removed, [False, False, False, True])
    np.testing.assert_array_equal(np.asarray(p.lower), [0.0, 5.0, 0.0, 0.0])
    # The scenario's bound wins over the settings; a removed audience spends 0.
    np.testing.assert_array_equal(np.asarray(p.upper), [np.inf, 50.0, 60.0, 0.0])
    # The planner's max bid, capped by the scenario's.
    np.testing.assert_allclose(np.exp(np.asarray(p.max_log_bid)), [0.8, 0.5, 0.8, 0.8])
    volume = np.asarray(market.params.volume_per_day).copy()
    volume[2] = 1234.0
    np.testing.assert_allclose(np.asarray(p.params.volume_per_day), volume)
    shocked = shift_market(market.params, 0.1, np.array([-0.2, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose(np.asarray(p.params.p_conv), np.asarray(shocked.p_conv))
    np.testing.assert_allclose(
        np.asarray(p.params.mix_loc), np.asarray(shocked.mix_loc)
    )
    assert p.group_cap.shape == (0,) and inputs.groups == []


def test_defaults_follow_the_market(market):
    inputs = resolve(market, Scenario(budget=300.0, days=DAYS), budget=120.0)
    p = inputs.problem
    assert float(p.budget) == 120.0  # the explicit budget wins over the scenario's
    assert inputs.config == SolveConfig()  # the market's second price
    np.testing.assert_allclose(np.exp(np.asarray(p.max_log_bid)), market.bid_ceiling)
    assert np.all(np.asarray(p.lower) == 0) and np.all(np.isinf(np.asarray(p.upper)))
    first = resolve(
        fitted_market(3, auction_type="first_price"), Scenario(days=DAYS), budget=1.0
    )
    assert first.config.first_price


def test_group_caps_index_the_settings_groups(market):
    settings = pd.DataFrame(
        {"audience": ["aud0", "aud1", "aud2"], "group": list("aab")}
    )
    inputs = resolve(
        market, Scenario(budget=300.0, days=DAYS, group_caps={"a": 100.0}), settings
    )
    assert inputs.groups == ["a", "(no cap)"]
    np.testing.assert_array_equal(np.asarray(inputs.problem.group), [0, 0, 1, 1])
    np.testing.assert_array_equal(np.asarray(inputs.problem.group_cap), [100.0, np.inf])


@pytest.mark.parametrize(
    ("scenario", "settings", "error", "words"),
    [
        (Scenario(days=DAYS), None, InputError, "no budget given"),
        (
            Scenario(budget=9.0, days=DAYS, bounds={"nope": {"min_spend": 1.0}}),
            None,
            InputError,
            "unknown audience.*'nope'",
        ),
        (
            Scenario(budget=9.0, days=DAYS, bounds={"aud0": {"max_spend": 1.0}}),
            {"min_spend": [2.0]},
            InputError,
            "'aud0': min_spend 2.00 is above max_spend 1.00",
        ),
        (
            Scenario(budget=9.0, days=DAYS),
            {"min_spend": [10.0]},
            InfeasibleError,
            "minimum spends add up to 10.00 but the budget is 9.00",
        ),
        (
            Scenario(budget=1e9, days=DAYS),
            {"min_spend": [1e8]},
            InfeasibleError,
            "'aud0' has min_spend .* can only spend about",
        ),
        (
            Scenario(budget=9.0, days=DAYS, objective="value"),
            None,
            InputError,
            "needs conversion values",
        ),
        (
            Scenario(budget=9.0, days=DAYS, group_caps={"a": 1.0}),
            None,
            InputError,
            "needs a 'group' column",
        ),
        (
            Scenario(budget=9.0, days=DAYS, group_caps={"a": 1.0}),
            {"min_spend": [2.0], "group": ["a"]},
            InfeasibleError,
            "group 'a' has a cap of 1.00 but its audiences' minimum spends add up to 2.00",
        ),
    ],
)
def test_unsolvable_questions_are_explained(market, scenario, settings, error, words):
    frame = (
        None if settings is None else pd.DataFrame({"audience": ["aud0"], **settings})
    )
    with pytest.raises(error, match=words):
        resolve(market, scenario, frame)


def test_values_from_the_settings_allow_the_value_objective(market):
    settings = pd.DataFrame({"audience": market.names, "value_per_conversion": 50.0})
    inputs = resolve(
        market, Scenario(budget=9.0, days=DAYS, objective="value"), settings
    )
    assert inputs.config.objective == "value"
    np.testing.assert_array_equal(np.asarray(inputs.problem.params.value), 50.0)


def test_solve_plan_spends_the_budget_and_compares_with_current(market):
    plan = solve_plan(market, Scenario(budget=300.0, days=DAYS))
    assert plan.budget_used == 300.0
    assert float(np.sum(np.asarray(plan.allocation.budget))) == pytest.approx(300.0)
    np.testing.assert_allclose(
        np.asarray(plan.outcomes.spend), np.asarray(plan.allocation.budget), rtol=1e-9
    )
    current = expected_outcomes(market.params, market.current_bid, DAYS)
    np.testing.assert_allclose(
        np.asarray(plan.current.conversions), np.asarray(current.conversions)
    )


def test_cpa_target_gives_the_largest_budget_that_meets_it(market):
    base = Scenario(budget=1000.0, days=DAYS)
    assert target_budget(resolve(market, base), base, 1000.0) == 1000.0  # no target
    low, high = _totals(market, base, 100.0), _totals(market, base, 1000.0)
    max_cpa = 0.5 * (low[0] / low[1] + high[0] / high[1])  # CPA rises with budget
    targeted = Scenario(budget=1000.0, days=DAYS, max_cpa=max_cpa)
    found = target_budget(resolve(market, targeted), targeted, 1000.0)
    assert 100.0 < found < 1000.0
    spend, conv, _ = _totals(market, base, found)
    assert spend / conv <= max_cpa * (1 + 1e-9)
    spend, conv, _ = _totals(market, base, found * 1.01)
    assert spend / conv > max_cpa
    plan = solve_plan(market, targeted)
    assert plan.budget_used == found
    assert float(np.sum(np.asarray(plan.allocation.budget))) <= found * (1 + 1e-9)


def test_unreachable_targets_are_explained(market):
    strict = Scenario(budget=1000.0, days=DAYS, max_cpa=0.01)
    with pytest.raises(InfeasibleError, match="no plan meets the target"):
        target_budget(resolve(market, strict), strict, 1000.0)
    with pytest.raises(InfeasibleError, match="no budget reaches"):
        solve_plan(market, Scenario(days=DAYS), target_conversions=1e9)


def test_goal_seek_finds_the_smallest_budget_reaching_the_target(market):
    target = _totals(market, Scenario(days=DAYS), 500.0)[1]
    plan = solve_plan(market, Scenario(days=DAYS), target_conversions=target)
    # The search brackets the budget to about 1e-4 of the audiences' capacity.
    assert float(plan.inputs.problem.budget) == pytest.approx(500.0, abs=0.5)
    reached = float(np.sum(np.asarray(plan.outcomes.conversions)))
    assert reached == pytest.approx(target, rel=1e-4)
