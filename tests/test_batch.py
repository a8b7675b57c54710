"""plan.batch: batched what-if and frontier solves equal the single solves."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optimizer import devices
from optimizer.allocate import buckets
from optimizer.allocate.allocator import allocate
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import make_problem
from optimizer.errors import InputError
from optimizer.io.columns import COMPARISON_COLUMNS
from optimizer.plan.batch import (
    allocate_batch,
    parse_budgets,
    run_frontier,
    run_whatif,
)
from optimizer.plan.resolve import resolve, solve_plan
from optimizer.plan.scenario import Scenario
from tests.markets import fitted_market, random_market

DAYS = 7.0


@pytest.fixture(scope="module")
def market():
    return fitted_market(5, audiences=5)


def _conversions(plan) -> float:
    return float(jnp.sum(plan.outcomes.conversions))


def test_batched_solve_equals_the_single_solves():
    params = random_market(6, audiences=5)
    config = SolveConfig("value", first_price=True)
    problems = [
        make_problem(params, DAYS, budget, lower=np.full(5, low))
        for budget, low in ((80.0, 0.0), (250.0, 10.0), (900.0, 0.0))
    ]
    batch = allocate_batch(devices.stack(problems), config)
    for i, problem in enumerate(problems):
        alone = allocate(problem, config)
        for name in ("bid", "budget", "gain", "marginal", "dual_price", "objective"):
            np.testing.assert_allclose(
                np.asarray(getattr(batch, name)[i]),
                np.asarray(getattr(alone, name)),
                rtol=1e-9,
                atol=1e-12,
                err_msg=name,
            )


def test_frontier_rows_are_the_plans_at_each_budget(market):
    inputs = resolve(market, Scenario(budget=1.0, days=DAYS))
    budgets = np.array([400.0, 50.0, 1600.0, 200.0, 800.0])  # unsorted on purpose
    frame = run_frontier(inputs, budgets)
    assert frame["budget"].tolist() == budgets.tolist()  # the order given
    assert "marginal_roas" not in frame.columns
    ordered = frame.sort_values("budget")
    assert np.all(np.diff(ordered["expected_conversions"]) > 0)
    assert np.all(np.diff(ordered["cpa"]) >= 0)  # diminishing returns
    assert np.all(frame["expected_spend"] <= frame["budget"] + 0.01)
    for budget, row in zip(budgets, frame.itertuples(), strict=True):
        plan = solve_plan(market, Scenario(budget=budget, days=DAYS))
        assert row.expected_conversions == pytest.approx(
            _conversions(plan), rel=1e-6, abs=1e-3
        )
        dual = float(plan.allocation.dual_price)
        assert row.marginal_cpa == pytest.approx(1 / dual, rel=1e-5, abs=0.01)
    # 5 and 9 budgets share one compiled path (padded to 16 with repeats)
    compiled = buckets._allocate_path._cache_size()
    more = run_frontier(inputs, np.linspace(50.0, 1600.0, 9))
    assert buckets._allocate_path._cache_size() == compiled and len(more) == 9
    assert more["budget"].iloc[-1] == 1600.0


def test_value_frontier_reports_the_marginal_roas(market):
    scenario = Scenario(budget=1.0, days=DAYS, objective="value")
    inputs = resolve(dataclasses.replace(market, has_value=True), scenario)
    frame = run_frontier(inputs, np.array([100.0, 300.0]))
    assert frame["marginal_cpa"].isna().all()
    roas = frame["marginal_roas"].to_numpy()
    assert np.all(roas > 0) and roas[1] < roas[0]  # each extra unit returns less
    assert np.all(np.diff(frame["expected_value"]) > 0)


def test_whatif_compares_keeping_the_plan_with_reoptimizing(market):
    base = Scenario(budget=300.0, days=DAYS)
    solved = solve_plan(market, base)
    bid, cap = np.asarray(solved.allocation.bid), np.asarray(solved.allocation.budget)
    # A CPA target between the plan's CPA at a tenth of the budget and at all of it.
    low = solve_plan(market, base, budget=30.0).outcomes.totals()
    max_cpa = 0.5 * (low["spend"] / low["conversions"] + 300.0 / _conversions(solved))
    scenarios = [
        Scenario(name="more", budget=300.0, days=DAYS, budget_scale=1.5),
        Scenario(name="pricier", budget=300.0, days=DAYS, price_shift=0.2),
        Scenario(name="no_aud2", budget=300.0, days=DAYS, remove_audiences=("aud2",)),
        Scenario(name="cheap", budget=300.0, days=DAYS, max_cpa=float(max_cpa)),
    ]
    table, plans = run_whatif(market, base, scenarios, None, bid, cap)
    assert list(table.columns) == [*COMPARISON_COLUMNS, "breaks_scenario"]
    assert table["scenario"].tolist() == ["base"] + [
        s.name for s in scenarios for _ in range(2)
    ]
    rows = table.set_index(["scenario", "variant"])
    assert rows.loc[("base", "base_plan"), "expected_conversions"] == pytest.approx(
        _conversions(solved), abs=1e-3
    )
    assert rows.loc[("more", "base_plan"), "budget"] == pytest.approx(
        1.5 * cap.sum(), abs=0.01
    )
    assert rows.loc[("no_aud2", "base_plan"), "budget"] == pytest.approx(
        cap.sum() - cap[2], abs=0.01
    )
    kept_pricier = rows.loc[("pricier", "base_plan"), "expected_conversions"]
    assert kept_pricier < rows.loc[("base", "base_plan"), "expected_conversions"]
    for s in scenarios[:3]:
        kept, reopt = rows.loc[(s.name, "base_plan")], rows.loc[(s.name, "reoptimized")]
        alone = solve_plan(market, s)
        assert reopt["expected_conversions"] == pytest.approx(
            _conversions(alone), rel=1e-6, abs=1e-3
        ), s.name
        assert reopt["budget"] == pytest.approx(
            float(jnp.sum(alone.allocation.budget)), abs=0.01
        )
        # The kept plan fits the scenario's budget: re-optimizing can only gain.
        assert reopt["expected_conversions"] >= kept["expected_conversions"] - 1e-3
    # The target re-solves that scenario at the largest budget meeting it.
    cheap = rows.loc[("cheap", "reoptimized")]
    assert cheap["cpa"] <= max_cpa + 0.005 and 30.0 < cheap["budget"] < 300.0
    assert plans["no_aud2"]["budget"].iloc[2] == 0.0
    assert plans["more"]["budget"].sum() == pytest.approx(450.0, abs=0.05)


def test_whatif_refuses_scenarios_that_do_not_batch(market):
    base = Scenario(budget=300.0, days=DAYS)
    other = Scenario(name="first", budget=300.0, days=DAYS, auction_type="first_price")
    with pytest.raises(InputError, match="differ in objective, auction type"):
        run_whatif(market, base, [other], None, np.full(5, 0.01), np.full(5, 60.0))


def test_parse_budgets():
    np.testing.assert_array_equal(parse_budgets("100:300:3"), [100.0, 200.0, 300.0])
    for text, words in (
        ("100-300", "must look like FROM:TO:STEPS"),
        ("300:100:5", "need 0 < FROM < TO"),
        ("100:300:1", "2 <= STEPS <= 10000"),
    ):
        with pytest.raises(InputError, match=words):
            parse_budgets(text)


def test_stack_adds_a_leading_axis():
    problems = [make_problem(random_market(1, audiences=3), DAYS, b) for b in (1, 2)]
    stacked = devices.stack(problems)
    assert stacked.lower.shape == (2, 3) and stacked.budget.tolist() == [1.0, 2.0]
    assert jax.tree_util.tree_structure(stacked) == jax.tree_util.tree_structure(
        problems[0]
    )
