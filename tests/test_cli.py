"""The adplan command line as a planner uses it: outputs, contracts and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.io.columns import PLAN_COLUMNS


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_generate_writes_the_three_files(small_market):
    for name in ("events.csv", "audiences.csv", "truth.json"):
        assert (small_market / name).is_file()


def test_plan_files_follow_the_contract(trained, small_market):
    plan = pd.read_csv(trained["plan"] / "plan.csv")
    doc = json.loads((trained["plan"] / "plan.json").read_text())
    assert tuple(plan.columns[: len(PLAN_COLUMNS)]) == PLAN_COLUMNS
    assert len(plan) == 6 and plan["audience"].is_unique
    assert plan["budget"].sum() <= 300.0 + 1e-9 and plan["budget"].sum() >= 299.99
    cents = plan["budget"] * 100  # whole cents (up to the float of the CSV text)
    assert np.all(np.abs(np.round(cents) - cents) < 1e-6)
    np.testing.assert_allclose(plan["daily_budget"], plan["budget"] / 7, atol=0.006)
    assert doc["totals"]["budget"] == pytest.approx(plan["budget"].sum())
    assert doc["certificate"]["relative_gap"] < 1e-3
    assert {"d_objective_d_budget", "per_audience"} <= set(doc["sensitivities"])
    assert doc["provenance"]["model_id"] and doc["provenance"]["settings_sha256"]


def test_predict_adds_rates(trained, tmp_path):
    out = tmp_path / "scored.csv"
    code, output = run(
        "predict",
        "--model",
        trained["model"],
        "--events",
        trained["market"] / "events.csv",
        "--out",
        out,
    )
    assert code == 0, output
    scored = pd.read_csv(out)
    assert {"p_click", "p_conversion", "p_conversion_given_click"} <= set(
        scored.columns
    )
    np.testing.assert_allclose(
        scored["p_conversion"],
        scored["p_click"] * scored["p_conversion_given_click"],
        rtol=1e-6,
    )


def test_plan_errors_are_clear_and_leave_no_output(trained, tmp_path):
    settings = tmp_path / "s.csv"
    out = tmp_path / "plan"
    names = pd.read_csv(trained["plan"] / "plan.csv")["audience"].tolist()
    pd.DataFrame({"audience": names[:2], "min_spend": [200.0, 200.0]}).to_csv(
        settings, index=False
    )
    code, output = run(
        "plan",
        "--model",
        trained["model"],
        "--budget",
        300,
        "--days",
        7,
        "--audiences",
        settings,
        "--out",
        out,
    )
    assert (
        code == 1 and "minimum spends add up to 400.00" in output and "300.00" in output
    )
    assert not out.exists()
    pd.DataFrame({"audience": ["nobody"], "min_spend": [1.0]}).to_csv(
        settings, index=False
    )
    code, output = run(
        "plan",
        "--model",
        trained["model"],
        "--budget",
        300,
        "--days",
        7,
        "--audiences",
        settings,
        "--out",
        out,
    )
    assert code == 1 and "'nobody'" in output
    scenario = tmp_path / "x.toml"
    scenario.write_text("budgte = 3\n")
    code, output = run(
        "plan",
        "--model",
        trained["model"],
        "--budget",
        300,
        "--days",
        7,
        "--scenario",
        scenario,
        "--out",
        out,
    )
    assert code == 1 and "unknown key 'budgte'" in output
    code, output = run(
        "plan",
        "--model",
        tmp_path / "nomodel",
        "--budget",
        300,
        "--days",
        7,
        "--out",
        out,
    )
    assert code == 1 and "adplan train" in output
    code, output = run(
        "plan", "--model", trained["model"], "--budget", -5, "--days", 7, "--out", out
    )
    assert code == 2


def test_cpa_target_and_goal_seeking(trained, tmp_path):
    doc = json.loads((trained["plan"] / "plan.json").read_text())
    cpa = doc["totals"]["cpa"]
    code, output = run(
        "plan",
        "--model",
        trained["model"],
        "--budget",
        300,
        "--days",
        7,
        "--max-cpa",
        0.9 * cpa,
        "--out",
        tmp_path / "cpa",
    )
    assert code == 0, output
    target = json.loads((tmp_path / "cpa" / "plan.json").read_text())["totals"]
    assert target["cpa"] <= 0.9 * cpa + 0.01 and target["budget"] < 300
    goal = 0.5 * doc["totals"]["expected_conversions"]
    code, output = run(
        "plan",
        "--model",
        trained["model"],
        "--days",
        7,
        "--target-conversions",
        goal,
        "--out",
        tmp_path / "goal",
    )
    assert code == 0, output
    reached = json.loads((tmp_path / "goal" / "plan.json").read_text())["totals"]
    assert reached["expected_conversions"] >= goal * (1 - 1e-3)
    assert (
        reached["budget"] < 300
    )  # half the conversions need less than the full budget
    code, output = run(
        "plan",
        "--model",
        trained["model"],
        "--days",
        7,
        "--target-conversions",
        1e9,
        "--out",
        tmp_path / "nope",
    )
    assert code == 1 and "no budget reaches" in output


def test_simulate_is_reproducible_and_matches_contract(trained, tmp_path):
    args = [
        "simulate",
        "--model",
        trained["model"],
        "--plan",
        trained["plan"],
        "--runs",
        16,
        "--seed",
        4,
    ]
    assert (
        run(
            *args, "--truth", trained["market"] / "truth.json", "--out", tmp_path / "a"
        )[0]
        == 0
    )
    assert run(*args, "--out", tmp_path / "b")[0] == 0
    a, b = (
        pd.read_csv(tmp_path / "a" / "summary.csv"),
        pd.read_csv(tmp_path / "b" / "summary.csv"),
    )
    assert list(a.columns) == ["audience", "metric", "mean", "p10", "p50", "p90", "row"]
    pd.testing.assert_frame_equal(a, b)
    assert set(a["metric"]) == {
        "spend",
        "impressions",
        "clicks",
        "conversions",
        "value",
        "cpa",
        "roas",
    }
    assert (
        "TOTAL" in set(a["audience"])
        and (tmp_path / "a" / "truth_summary.csv").is_file()
    )
    spend = a[(a["audience"] == "TOTAL") & (a["metric"] == "spend")]["p90"].iloc[0]
    assert spend <= 300.0 + 1e-6


def test_whatif_batch_equals_one_by_one(trained, tmp_path):
    scenario = tmp_path / "up.toml"
    scenario.write_text('name = "up"\nbudget_scale = 1.5\nprice_shift = 0.1\n')
    code, output = run(
        "whatif",
        "--model",
        trained["model"],
        "--plan",
        trained["plan"],
        "--scenario",
        scenario,
        "--budget-scale",
        "0.5",
        "--out",
        tmp_path / "w",
    )
    assert code == 0, output
    table = pd.read_csv(tmp_path / "w" / "comparison.csv")
    assert list(table.columns) == [
        "scenario",
        "variant",
        "budget",
        "expected_spend",
        "expected_conversions",
        "expected_value",
        "cpa",
        "roas",
        "breaks_scenario",
        "plan_file",
    ]
    assert set(table["scenario"]) == {"base", "up", "inline"}
    up = table[(table["scenario"] == "up") & (table["variant"] == "reoptimized")].iloc[
        0
    ]
    scen = tmp_path / "alone.toml"
    scen.write_text("price_shift = 0.1\n")
    code, output = run(
        "plan",
        "--model",
        trained["model"],
        "--budget",
        450,
        "--days",
        7,
        "--audiences",
        trained["market"] / "audiences.csv",
        "--scenario",
        scen,
        "--out",
        tmp_path / "alone",
    )
    assert code == 0, output
    alone = json.loads((tmp_path / "alone" / "plan.json").read_text())["totals"]
    assert up["expected_conversions"] == pytest.approx(
        alone["expected_conversions"], rel=1e-4
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("price_shfit = 0.1\n")
    code, output = run(
        "whatif",
        "--model",
        trained["model"],
        "--plan",
        trained["plan"],
        "--scenario",
        bad,
        "--out",
        tmp_path / "w2",
    )
    assert code == 1 and "price_shfit" in output


def test_frontier_and_report(trained, tmp_path):
    code, output = run(
        "frontier",
        "--model",
        trained["model"],
        "--budgets",
        "50:600:12",
        "--days",
        7,
        "--plan",
        trained["plan"],
        "--out",
        tmp_path / "f",
    )
    assert code == 0, output
    frontier = pd.read_csv(tmp_path / "f" / "frontier.csv")
    assert list(frontier.columns[:6]) == [
        "budget",
        "expected_spend",
        "expected_conversions",
        "expected_value",
        "cpa",
        "marginal_cpa",
    ]
    assert (
        len(frontier) == 12 and frontier["expected_conversions"].is_monotonic_increasing
    )
    assert frontier["marginal_cpa"].dropna().is_monotonic_increasing
    code, output = run(
        "frontier",
        "--model",
        trained["model"],
        "--budgets",
        "600:50:3",
        "--days",
        7,
        "--out",
        tmp_path / "g",
    )
    assert code == 1 and "FROM < TO" in output
    out = tmp_path / "r.html"
    code, output = run(
        "report",
        "--model",
        trained["model"],
        "--plan",
        trained["plan"],
        "--frontier",
        tmp_path / "f",
        "--out",
        out,
    )
    assert code == 0, output
    assert out.stat().st_size > 10_000 and "http://" not in out.read_text()


def test_train_rejects_a_broken_log(tmp_path, small_market):
    events = pd.read_csv(small_market / "events.csv").head(500)
    events.loc[3, "cost"] = -1
    path = tmp_path / "bad.csv"
    events.to_csv(path, index=False)
    code, output = run("train", "--events", path, "--out", tmp_path / "m")
    assert code == 1 and "'cost'" in output and "row 4" in output
    assert not (tmp_path / "m").exists()


def test_rate_uncertainty_widens_the_band(trained, tmp_path):
    args = [
        "simulate",
        "--model",
        trained["model"],
        "--plan",
        trained["plan"],
        "--runs",
        200,  # P10-P90 of fewer runs is too noisy to compare two bands
        "--seed",
        2,
    ]
    assert run(*args, "--no-rate-uncertainty", "--out", tmp_path / "luck")[0] == 0
    assert run(*args, "--out", tmp_path / "both")[0] == 0

    def band(folder):
        frame = pd.read_csv(folder / "summary.csv")
        row = frame[
            (frame["audience"] == "TOTAL") & (frame["metric"] == "conversions")
        ].iloc[0]
        return row["p90"] - row["p10"], row["mean"]

    (narrow, mean_luck), (wide, mean_both) = (
        band(tmp_path / "luck"),
        band(tmp_path / "both"),
    )
    assert wide > narrow
    assert (
        json.loads((tmp_path / "both" / "summary.json").read_text())["rate_uncertainty"]
        is True
    )
    assert mean_both == pytest.approx(mean_luck, rel=0.15)  # multipliers have mean 1


def test_simulate_says_when_its_pacing_differs_from_the_forecast(trained, tmp_path):
    import shutil

    plan = tmp_path / "plan"
    shutil.copytree(trained["plan"], plan)
    doc = json.loads((plan / "plan.json").read_text())
    assert doc["pacing"]["forecast"] == "even"
    first = doc["audiences"][0]["audience"]
    doc["pacing"]["throttled"] = {first: 0.5}  # as a plan that throttles a bid
    (plan / "plan.json").write_text(json.dumps(doc))
    args = ["simulate", "--model", trained["model"], "--plan", plan, "--runs", 4]
    args += ["--no-rate-uncertainty"]
    code, stop = run(*args, "--out", tmp_path / "stop")
    assert code == 0 and "1 audience(s) bid higher on a share" in stop
    code, even = run(*args, "--pacing", "even", "--out", tmp_path / "even")
    assert code == 0 and "bid higher on a share" not in even
