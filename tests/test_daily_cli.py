"""End to end from a Meta Ads Manager style export: train -> plan -> report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main

META = {
    "date": "Day",
    "audience": "Ad set name",
    "spend": "Amount spent (EUR)",
    "impressions": "Impressions",
    "clicks": "Link clicks",
    "conversions": "Results",
    "value": "Results value",
    "daily_budget": "Ad set budget",
}


_WITH_BACKTEST = {"ADPLAN_NO_BACKTEST": None}  # as planners run train


def _run(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_meta_export_to_plan_and_report(tmp_path):
    market = tmp_path / "market"
    _run("generate", "--daily", "--out", market, "--audiences", "4", "--days", "21")
    export = tmp_path / "meta_export.csv"
    frame = pd.read_csv(market / "daily.csv").rename(columns=META)
    flat = frame["Ad set name"] == frame["Ad set name"].iloc[0]  # never varied
    measures = [c for c in META.values() if c not in ("Day", "Ad set name")]
    frame.loc[flat, measures] = frame.loc[flat, measures].iloc[0].to_numpy()
    frame.to_csv(export, index=False)
    model, plan = tmp_path / "model", tmp_path / "plan"
    out = _run("train", "--events", export, "--out", model, env=_WITH_BACKTEST)
    assert "preset meta, currency EUR" in out
    assert "at the daily spend the report shows" in out  # the band was checked
    info = json.loads((model / "model.json").read_text())
    assert info["input_kind"] == "daily" and info["preset"] == "meta"
    assert info["breakdowns"] == ["device"]
    market = json.loads((model / "metrics.json").read_text())["market"]
    assert market["rate_model"] == "network on counts"
    assert {e["level"] for e in market["rate_effects"]["device"]} == {
        "mobile",
        "desktop",
        "tablet",
    }
    band = json.loads((model / "band.json").read_text())
    assert band["unidentified"] == [frame["Ad set name"].iloc[0]]
    # predict scores the export's rows with the rates of their cells.
    scored = tmp_path / "scored.csv"
    out = _run("predict", "--model", model, "--events", export, "--out", scored)
    assert "rates per impression by audience, device, weekday" in out
    rows = pd.read_csv(scored)
    assert list(rows.columns[: len(frame.columns)]) == list(frame.columns)
    assert rows["p_conversion"].between(0, 1).all() and rows["p_click"].gt(0).all()
    np.testing.assert_allclose(
        rows["expected_clicks"].sum(), rows["Link clicks"].sum(), rtol=0.1
    )
    assert (
        len(pd.read_csv(model / "rates_by_cell.csv"))
        == rows.groupby(
            ["Ad set name", "device", pd.to_datetime(rows["Day"]).dt.day_of_week]
        ).ngroups
    )
    budget = 14 * frame["Amount spent (EUR)"].sum() / 21
    out = _run(
        "plan",
        "--model",
        model,
        "--budget",
        round(budget, 2),
        "--days",
        14,
        "--out",
        plan,
    )
    assert "certified" in out
    table = pd.read_csv(plan / "plan.csv")
    assert table["bid"].isna().all() and table["bid_cpm"].isna().all()
    assert table["budget"].sum() <= budget + 0.05
    assert table["budget"].gt(0).any()
    doc = json.loads((plan / "plan.json").read_text())
    assert any("platform sets the bids" in w for w in doc["warnings"])
    assert doc["currency"] == "EUR"
    sim = tmp_path / "sim"
    out = _run("simulate", "--model", model, "--plan", plan, "--runs", 40, "--out", sim)
    assert "band checked on the log's last 5 day(s)" in out
    assert "1 ad set(s) with a guessed spend curve" in out
    sim = json.loads((sim / "summary.json").read_text())
    assert list(sim["band_widening_guessed_curves"]) == band["unidentified"]
    # On the true market the platform spends each daily budget: the Monte-Carlo
    # runs there agree with the exact expectation (each weekday at its own bid).
    truth = tmp_path / "market" / "truth.json"
    out = _run("simulate", "--model", model, "--plan", plan, "--runs", 40,
               "--truth", truth, "--out", tmp_path / "sim_truth")  # fmt: skip
    assert "exact expectation there" in out
    sim = json.loads((tmp_path / "sim_truth" / "summary.json").read_text())
    exact = sim["truth_exact"]
    assert exact["spend"] == pytest.approx(table["budget"].sum(), rel=0.01)
    mc = {r["metric"]: r["mean"] for r in sim["truth"] if r["row"] == "total"}
    assert mc["spend"] == pytest.approx(exact["spend"], rel=0.03)
    assert mc["conversions"] == pytest.approx(exact["conversions"], rel=0.1)
    report = tmp_path / "report.html"
    _run("report", "--model", model, "--plan", plan, "--out", report)
    html = report.read_text()
    assert "platform sets the bids" in html
    # The rate network's tables: the export's device breakdown and the weekdays.
    assert "Rates by device" in html and "By day of the week" in html
    assert '<th scope="col" class="num">Converts</th>' in html
    assert "Predictor" not in html


def test_a_bad_daily_report_stops_train_with_one_message(tmp_path):
    export = tmp_path / "daily.csv"
    export.write_text(
        "date,audience,spend,impressions,clicks,conversions\n2026-03-01,A,-1,10,1,0\n"
    )
    result = CliRunner().invoke(
        main, ["train", "--events", str(export), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert (
        "column 'spend' is negative in 1 row(s) (first at data row 1)" in result.output
    )
    assert "Traceback" not in result.output


def test_predict_refuses_a_model_of_the_other_input_kind(tmp_path):
    market, model = tmp_path / "market", tmp_path / "model"
    _run("generate", "--daily", "--out", market, "--audiences", 3, "--days", 14)
    _run("train", "--events", market / "daily.csv", "--out", model, "--no-backtest")
    _run("generate", "--out", tmp_path / "log", "--audiences", 3, "--days", 2)
    result = CliRunner().invoke(
        main,
        ["predict", "--model", str(model), "--events", str(tmp_path / "log" / "events.csv"),
         "--out", str(tmp_path / "p.csv")],
    )  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "trained on a daily report" in result.output
    auctions = tmp_path / "auction_model"
    auctions.mkdir()
    (auctions / "model.json").write_text(json.dumps({"input_kind": "auctions"}))
    result = CliRunner().invoke(
        main,
        ["predict", "--model", str(auctions), "--events", str(market / "daily.csv"),
         "--out", str(tmp_path / "p.csv")],
    )  # fmt: skip
    assert result.exit_code == 1 and "trained on an auction log" in result.output
    assert not (tmp_path / "p.csv").exists()


def test_blank_breakdowns_and_an_ad_set_that_never_spent(tmp_path):
    export = tmp_path / "meta.csv"
    export.write_text(
        "Day,Ad set name,Age,Amount spent (EUR),Impressions,Link clicks,Results\n"
        "2026-03-01,Prospecting,18-24,12.50,1000,20,2\n"
        "2026-03-01,Prospecting,,7.50,600,9,1\n"
        "2026-03-01,Retargeting,18-24,5.00,300,8,3\n"
        "2026-03-02,Prospecting,25-34,8.00,620,10,0\n"
        "2026-03-02,Retargeting,18-24,5.00,310,2,4\n"
        "2026-03-03,Paused,18-24,0,0,0,0\n"
    )
    model, scored = tmp_path / "model", tmp_path / "scored.csv"
    out = _run("train", "--events", export, "--out", model, "--no-backtest")
    assert "'Paused' never spent" in out and "0.00x" not in out
    cells = pd.read_csv(model / "rates_by_cell.csv", keep_default_na=False)
    assert "(blank)" in set(cells["Age"]) and "Paused" not in set(cells["audience"])
    out = _run("predict", "--model", model, "--events", export, "--out", scored)
    assert "1 row(s) of ad sets the model never saw" in out  # the paused ad set's row
    assert "in a cell the model never saw" not in out
    rows = pd.read_csv(scored)
    blank = rows[rows["Age"].isna()].iloc[0]
    cell = cells[cells["Age"] == "(blank)"].iloc[0]
    assert blank["p_conversion"] == pytest.approx(cell["p_conversion"])
    assert rows["expected_conversions"].notna().all()


def test_a_numeric_breakdown_scores_the_cells_it_was_trained_on(tmp_path):
    # Trained on ages read as 25.0/35.0 (a blank row makes the column decimal);
    # scored on a file without the blank, read as 25/35: the same cells.
    rows = [
        "2026-03-0{d},Prospecting,25,12.50,1000,20,2",
        "2026-03-0{d},Prospecting,35,7.50,600,9,1",
        "2026-03-0{d},Retargeting,25,5.00,300,8,3",
    ]
    header = "Day,Ad set name,Age,Amount spent (EUR),Impressions,Link clicks,Results\n"
    body = "\n".join(r.format(d=d) for d in range(1, 8) for r in rows)
    train, score = tmp_path / "train.csv", tmp_path / "score.csv"
    train.write_text(header + body + "\n2026-03-08,Retargeting,,5.00,300,8,3\n")
    score.write_text(header + body + "\n")
    model = tmp_path / "model"
    _run("train", "--events", train, "--out", model, "--no-backtest")
    out = _run(
        "predict", "--model", model, "--events", score, "--out", tmp_path / "s.csv"
    )
    assert "never saw" not in out
    # A file with one age per ad set and day is scored by the model's breakdowns
    # (read alone, its Age would split nothing and not be one).
    one = tmp_path / "one.csv"
    one.write_text(
        header + "\n".join(r.format(d=d) for d in range(1, 8) for r in rows[::2])
    )
    out = _run(
        "predict", "--model", model, "--events", one, "--out", tmp_path / "o.csv"
    )
    assert "never saw" not in out
    no_age = tmp_path / "no_age.csv"
    no_age.write_text(score.read_text().replace(",Age,", ",Age group,"))
    result = CliRunner().invoke(
        main, ["predict", "--model", str(model), "--events", str(no_age), "--out",
               str(tmp_path / "x.csv")]
    )  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "was trained with breakdowns Age. Export the report" in result.output
    (model / "rates_by_cell.csv").unlink()  # a model from before predict scored cells
    result = CliRunner().invoke(
        main, ["predict", "--model", str(model), "--events", str(score), "--out",
               str(tmp_path / "x.csv")]
    )  # fmt: skip
    assert result.exit_code == 1 and "Retrain with" in result.output
    bad = tmp_path / "bad.csv"
    text = body.replace(",25,", ",x,").replace(",35,", ",y,")  # weekday as labels
    bad.write_text(header.replace("Age", "weekday") + text + "\n")
    result = CliRunner().invoke(
        main, ["train", "--events", str(bad), "--out", str(model)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "column 'weekday' is a breakdown" in result.output
