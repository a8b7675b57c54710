"""Report pieces for planners (issue #18): paused audiences, model verdicts,
simulation charts from the table's runs, currency, row flags, what-if breaks,
and the offline budget slider's data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from markupsafe import escape

from reports import sections, text, write_report
from reports.inputs import read_inputs
from tests.test_report import build_folders, parse

NAMES = ["books", "music", "games", "films"]


def _edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.fixture
def folders(tmp_path) -> dict:
    return build_folders(tmp_path, NAMES, ["prices_up"])


def _pause(doc: dict, name: str = "games") -> None:
    row = next(r for r in doc["audiences"] if r["audience"] == name)
    row.update(budget=0.0, daily_budget=0.0, expected_spend=0.0, cpa=14.91, roas=9.5)


def test_paused_audience_has_no_cpa_and_its_own_group(folders, tmp_path):
    _edit(folders["plan_dir"] / "plan.json", _pause)
    html = write_report(out_file=tmp_path / "r.html", **folders).read_text()
    cells = [c for row in parse(html).plan_rows["tbody"] for c in row]
    assert "14.91" not in cells and "9.50" not in cells
    start = html.index('<tbody class="paused-group">')
    group = html[start : html.index("</tbody>", start)]
    assert text.PAUSED_GROUP.format(count=1) in group
    assert ">games<" in group and group.count(f">{text.PAUSED}<") == 3
    active = html[html.index("<tbody>") : start]
    assert ">games<" not in active
    assert f"games ({text.PAUSED})" in html, "charts label the paused audience"


def _metrics(folders: dict, conversion_auc: float, lr_auc: float) -> None:
    def change(doc):
        head = doc["rates"]["heads"]["conversion"]
        head["model"]["auc"] = conversion_auc
        head["baselines"]["logistic_regression"]["auc"] = lr_auc
        head["baselines"]["audience_average"]["auc"] = 0.55

    _edit(folders["model_dir"] / "metrics.json", change)


@pytest.mark.parametrize(
    ("auc", "lr", "phrase"),
    [
        (
            0.6757,
            0.6788,
            "worse than the logistic regression (AUC 0.676 against 0.679)",
        ),
        (0.389, 0.6, "worse than chance (AUC 0.389"),
    ],
)
def test_weak_conversion_model_is_a_warning(folders, tmp_path, auc, lr, phrase):
    _metrics(folders, auc, lr)
    html = write_report(out_file=tmp_path / "r.html", **folders).read_text()
    warnings = html[html.index('id="warnings"') :]
    assert phrase in warnings, "listed with the plan's warnings"
    assert phrase in html[html.index('id="health"') : html.index('id="warnings"')]
    assert "0.6757" not in html and "0.6788" not in html


def test_healthy_model_verdict(folders):
    _metrics(folders, 0.71, 0.68)
    inputs = read_inputs(folders["model_dir"], folders["plan_dir"])
    assert sections.model_warnings(inputs) == []
    (conversion,) = [
        v
        for v in sections.model_health(inputs)["verdicts"]
        if "conversion" in v["text"]
    ]
    assert conversion["ok"] and "AUC 0.710" in conversion["text"]


def test_frontier_splits_add_up_to_the_frontier():
    """frontier.json's per-audience splits are the frontier's own plans."""
    import numpy as np

    from optimizer.allocate.config import SolveConfig
    from optimizer.allocate.problem import make_problem
    from optimizer.plan.batch import frontier_with_splits, run_frontier
    from optimizer.plan.resolve import PlanInputs
    from tests.markets import random_market

    params = random_market(3, audiences=4)
    problem = make_problem(params, 7.0, 1.0)
    inputs = PlanInputs(
        names=list("abcd"),
        problem=problem,
        config=SolveConfig(),
        removed=np.zeros(4, bool),
        groups=[],
        notes=[],
    )
    budgets = np.array([40.0, 5.0, 20.0])
    frame, splits = frontier_with_splits(inputs, budgets)
    assert frame.equals(run_frontier(inputs, budgets))
    assert {k: v.shape for k, v in splits.items()} == {
        "budget": (3, 4),
        "expected_spend": (3, 4),
        "expected_conversions": (3, 4),
    }
    np.testing.assert_allclose(
        splits["expected_conversions"].sum(1), frame["expected_conversions"], atol=1e-3
    )
    np.testing.assert_allclose(
        splits["expected_spend"].sum(1), frame["expected_spend"], atol=1e-2
    )
    assert splits["budget"].sum(1)[0] > splits["budget"].sum(1)[1], "budget order kept"


def test_pacing_chart_shows_shares_not_totals_of_a_few_runs(folders):
    """The sampled paths end 12% above the table's conversions (one rate draw);
    the chart must not show their totals beside the table's."""
    import numpy as np
    import pandas as pd

    from reports.sections.outcomes import fan_bands

    paths = pd.read_csv(folders["simulation_dir"] / "paths.csv")
    paths["cumulative_conversions"] *= 1.12
    paths.to_csv(folders["simulation_dir"] / "paths.csv", index=False)
    inputs = read_inputs(
        folders["model_dir"], folders["plan_dir"], folders["simulation_dir"]
    )
    hours, (spend, conversions) = fan_bands(inputs.simulation, inputs.plan)
    assert len(hours) == 24 * 14
    np.testing.assert_allclose(conversions["p50"][-1], 1.0)
    assert np.all(np.diff(conversions["p50"]) >= 0)
    budget = inputs.plan["budget"]
    assert spend["p90"][-1] == pytest.approx(
        inputs.plan["totals"]["expected_spend"] / budget
    )
    note = sections.simulation(inputs)["fan_note"]
    assert "from the 10 runs that kept hourly paths" in note and "all 200 runs" in note


def test_whatif_rows_that_break_their_scenario_are_flagged(folders, tmp_path):
    import types

    import numpy as np
    import pandas as pd

    from optimizer.plan.batch import breaks_scenario
    from optimizer.plan.scenario import Scenario

    inputs = types.SimpleNamespace(
        names=["books", "tech"],
        removed=np.array([False, False]),
        problem=types.SimpleNamespace(
            lower=np.array([0.0, 400.0]), upper=np.array([300.0, np.inf])
        ),
    )
    scenario = Scenario(name="cpa_target_5", budget=1000.0, days=14.0, max_cpa=5.0)
    totals = {"spend": 943.0, "conversions": 100.0, "value": 2000.0}
    reason = breaks_scenario(scenario, inputs, np.array([350.0, 120.0]), totals)
    assert reason == (
        "CPA 9.43 above the target 5.00; 'books' gets 350.00, above its maximum "
        "300.00; 'tech' gets 120.00, below its minimum 400.00"
    )
    kept = {"spend": 400.0, "conversions": 100.0, "value": 2000.0}
    assert breaks_scenario(scenario, inputs, np.array([300.0, 400.0]), kept) == ""

    path = folders["whatif_dir"] / "comparison.csv"
    frame = pd.read_csv(path)
    frame["breaks_scenario"] = ["", "CPA 9.43 above the target 5.00", ""][: len(frame)]
    frame.to_csv(path, index=False)
    html = write_report(out_file=tmp_path / "r.html", **folders).read_text()
    assert "Breaks its scenario: CPA 9.43 above the target 5.00." in html
    assert str(escape(text.WHATIF_BROKEN.format(count=1))) in html


def test_currency_on_money_figures_and_bids_as_cpm(folders, tmp_path):
    def change(doc):
        doc["currency"] = "SEK"
        doc["warnings"] = ["'books': planned bid 0.0234 is well above (up to 0.0100)."]

    _edit(folders["plan_dir"] / "plan.json", change)
    html = write_report(out_file=tmp_path / "r.html", **folders).read_text()
    assert "Money is in SEK." in html
    for shown in ("Budget (SEK)", "SEK, per day", "SEK, CPM", "Total budget (SEK)"):
        assert shown in html, shown
    assert "planned bid 23.40 SEK CPM" in html and "0.0234" not in html
    assert "currency units" not in html
    other = write_report(out_file=tmp_path / "o.html", currency="EUR", **folders)
    assert "Budget (EUR)" in other.read_text() and "SEK" not in other.read_text()


def test_currency_defaults_to_a_neutral_label(folders):
    inputs = read_inputs(folders["model_dir"], folders["plan_dir"])
    assert inputs.currency == text.DEFAULT_CURRENCY == "currency units"


def test_plan_rows_carry_their_flags(folders, tmp_path):
    def plan(doc):
        books = next(r for r in doc["audiences"] if r["audience"] == "books")
        books["bid"] = 0.023
        doc["warnings"] = [
            "'music': capped at its max_spend 300.00; it would take more budget.",
            "'books': bid held at its max bid 0.0230 (by default 3x ...).",
        ]

    def metrics(doc):
        for fit in doc["market"]["landscapes"]:
            fit["auctions"] = 500 if fit["audience"] == "games" else 50_000
            for point in fit["win_rate_by_bid"]:
                point["bid"] = min(point["bid"], 0.01)
        doc["market"]["rate_anchoring"] = {"films": {"conversions_observed": 3}}

    _edit(folders["plan_dir"] / "plan.json", plan)
    _edit(folders["model_dir"] / "metrics.json", metrics)
    html = write_report(out_file=tmp_path / "r.html", **folders).read_text()
    keys = [k for k, _, _ in text.COLUMNS]
    rows = {r[0]: r[keys.index("flags")] for r in parse(html).plan_rows["tbody"]}
    assert rows["books"].startswith("bid 2.3x the highest bid in the log")
    assert text.FLAG_MAX_BID in rows["books"]
    assert text.FLAG_MAX_SPEND in rows["music"]
    assert "thin data: 500 auctions in the log" in rows["games"]
    assert "forecast rests on 3 conversion(s) in the log" in rows["films"]
