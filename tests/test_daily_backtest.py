"""The forecast of a daily-report model checked on held-out days (issue 19)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.commands.backtest import calibration, split_days
from optimizer.commands.backtest_daily import compare_daily, cost_per_impression
from optimizer.io.daily import daily_totals, read_daily_report
from optimizer.market.daily import fit_daily_market
from reports.sections.backtest import backtest as backtest_section
from simulations.simulator.band import guessed_curve_factors, widen_summary


def _run(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A 28-day synthetic daily report of 6 ad sets (spend varies day to day)."""
    out = tmp_path_factory.mktemp("daily")
    _run(
        "generate", "--daily", "--out", out, "--audiences", 6, "--days", 28, "--seed", 3
    )
    return out / "daily.csv"


def test_backtest_of_a_daily_report_writes_the_log_backtest_table(report, tmp_path):
    out = _run("backtest", "--events", report, "--out", tmp_path / "bt", "--runs", 60)
    assert "at the daily spend the report shows" in out
    table = pd.read_csv(tmp_path / "bt" / "backtest.csv")
    assert list(table.columns) == [
        "audience", "bid_band", "bid_low", "bid_high", "auctions", "metric",
        "forecast", "p10", "p90", "actual", "error", "events", "inside", "band_ratio",
    ]  # fmt: skip
    assert table["audience"].nunique() == 7  # 6 ad sets and TOTAL
    frame = daily_totals(read_daily_report(report)[0])
    held = frame[frame["date"] >= frame["date"].max() - pd.Timedelta(days=6)]
    rows = table.set_index(["audience", "metric"])
    # The forecast is made at the held-out days' actual spend, and it spends it.
    np.testing.assert_allclose(
        rows.loc[("TOTAL", "spend"), "actual"], held["spend"].sum(), rtol=1e-9
    )
    spend = table[table["metric"] == "spend"]  # mean of 60 runs with curve draws
    np.testing.assert_allclose(spend["forecast"], spend["actual"], rtol=0.02)
    # Curves learned from 21 days forecast the next 7 days' delivery closely.
    impressions = table[
        (table["metric"] == "impressions") & (table["audience"] != "TOTAL")
    ]
    assert np.median(np.abs(impressions["error"])) < 0.1
    summary = json.loads((tmp_path / "bt" / "backtest.json").read_text())
    assert summary["input_kind"] == "daily" and summary["holdout_days"] == 7
    assert summary["outcomes"] == 6 * 4  # every metric but spend, per ad set
    assert 0.4 <= summary["coverage"] <= 1.0
    assert summary["widening_unidentified_by_metric"]["conversions"] >= 1.0
    words = " ".join(backtest_section(summary)["sentences"])  # the report's section
    assert "daily spend the report shows" in words and "spend was given" in words
    assert "spend curve guessed from the other ad sets" in words


def test_too_short_a_report_is_refused_with_the_fix(report, tmp_path):
    short = tmp_path / "short.csv"
    frame = pd.read_csv(report)
    frame[frame["date"] < sorted(frame["date"].unique())[6]].to_csv(short, index=False)
    out = _run("backtest", "--events", short, "--out", tmp_path / "bt", code=1)
    assert "daily report" in out and "covers 6 day(s)" in out
    assert "smaller --holdout-days" in out
    assert not (tmp_path / "bt").exists()


def test_band_widens_when_the_held_out_days_drift(report):
    days = daily_totals(read_daily_report(report)[0])
    train, held, n, _ = split_days(days, None, "r", "date", "daily report", 7)
    market = fit_daily_market(train, [])
    honest = calibration(compare_daily(market, held, n, 60, 0))
    drifted = held.copy()
    for column in ("impressions", "clicks", "conversions", "value"):
        drifted[column] *= 1.6  # the same spend buys 60% more than it did
    wrong = calibration(compare_daily(market, drifted, n, 60, 0))
    assert wrong["coverage"] < honest["coverage"]
    assert wrong["widening_by_metric"]["impressions"] > 3.0
    assert wrong["widening_by_metric"]["impressions"] > (
        2 * honest["widening_by_metric"]["impressions"]
    )


def test_the_price_found_spends_the_days_spend(report):
    market = fit_daily_market(daily_totals(read_daily_report(report)[0]), [])
    a = np.repeat(np.arange(len(market.names)), 3)
    spend = np.tile([0.5, 20.0, 5000.0], len(market.names))
    cpi = cost_per_impression(market, a, spend)
    p = market.params
    from scipy.special import ndtr

    v = np.asarray(p.volume_per_day)[a]
    z = (np.log(cpi) - np.asarray(p.mix_loc)[a, 0]) / np.asarray(p.mix_scale)[a, 0]
    np.testing.assert_allclose(v * cpi * ndtr(z), spend, rtol=1e-9)


def test_guessed_curves_get_the_wider_band():
    band = {
        "widening_by_metric": {"impressions": 1.2, "conversions": 2.0},
        "widening_unidentified_by_metric": {"impressions": 3.0, "conversions": 1.5},
    }
    market = type("M", (), {})()
    market.metrics = {
        "landscapes": [
            {"audience": "varied", "identified": True},
            {"audience": "flat", "identified": False},
        ]
    }
    own = guessed_curve_factors(band, market)
    assert list(own) == ["flat"]
    assert own["flat"]["impressions"] == 3.0 and own["flat"]["conversions"] == 2.0
    summary = pd.DataFrame(
        {
            "audience": ["varied", "flat"],
            "metric": ["impressions", "impressions"],
            "mean": [100.0, 100.0],
            "p10": [90.0, 90.0],
            "p50": [100.0, 100.0],
            "p90": [110.0, 110.0],
            "row": ["audience", "audience"],
        }
    )
    out = widen_summary(summary, {"impressions": 1.2}, {}, own)
    np.testing.assert_allclose(out["p90"] - out["p10"], [24.0, 60.0])
