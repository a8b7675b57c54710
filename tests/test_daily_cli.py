"""End to end from a Meta Ads Manager style export: train -> plan -> report."""

from __future__ import annotations

import json

import pandas as pd
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


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_meta_export_to_plan_and_report(tmp_path):
    market = tmp_path / "market"
    _run("generate", "--daily", "--out", market, "--audiences", "4", "--days", "21")
    export = tmp_path / "meta_export.csv"
    frame = pd.read_csv(market / "daily.csv").rename(columns=META)
    frame.to_csv(export, index=False)
    model, plan = tmp_path / "model", tmp_path / "plan"
    out = _run("train", "--events", export, "--out", model)
    assert "preset meta, currency EUR" in out
    info = json.loads((model / "model.json").read_text())
    assert info["input_kind"] == "daily" and info["preset"] == "meta"
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
    report = tmp_path / "report.html"
    _run("report", "--model", model, "--plan", plan, "--out", report)
    html = report.read_text()
    assert "platform sets the bids" in html


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
