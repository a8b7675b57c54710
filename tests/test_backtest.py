"""``adplan backtest``: train without the log's last days, forecast them, calibrate
the band; ``adplan train`` stores the widening and ``simulate`` applies it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.commands.backtest import calibration, compare, split_days
from optimizer.errors import InputError
from optimizer.market.store import load_market
from simulations.simulator.band import band_factors, widen_summary


def _log(days: int) -> pd.DataFrame:
    stamps = pd.date_range("2026-01-05", periods=days * 4, freq="6h", tz="UTC")
    return pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ")})


def test_split_holds_out_the_last_quarter_of_days_at_least_one():
    train, held, n, cutoff = split_days(_log(8), None, "log.csv")
    assert n == 2 and len(held) == 8 and len(train) == 24
    assert str(cutoff.date()) == "2026-01-11"
    assert split_days(_log(3), None, "log.csv")[2] == 1
    assert split_days(_log(8), 5, "log.csv")[2] == 5
    with pytest.raises(InputError, match="covers 1 day"):
        split_days(_log(1), None, "log.csv")
    with pytest.raises(InputError, match="smaller --holdout-days"):
        split_days(_log(4), 4, "log.csv")


def test_widening_makes_eighty_percent_of_outcomes_fall_inside():
    ratio = np.linspace(0.1, 3.0, 30)
    table = pd.DataFrame(
        {
            "audience": np.repeat([f"a{i}" for i in range(6)], 5),
            "bid_band": "all",
            "metric": ["spend", "impressions", "clicks", "conversions", "value"] * 6,
            "band_ratio": ratio,
            "error": ratio - 1.0,
            "events": 100.0,
        }
    )
    cal = calibration(table)
    assert cal["coverage"] == pytest.approx(np.mean(ratio <= 1))
    clicks = ratio[table["metric"] == "clicks"]
    assert cal["widening_by_metric"]["clicks"] == pytest.approx(
        np.quantile(clicks, 0.8)
    )
    assert cal["widening"] == max(cal["widening_by_metric"].values())
    assert 0.7 <= cal["coverage_widened"] <= 0.9
    assert calibration(table.assign(band_ratio=ratio / 10))["widening"] == 1.0
    summary = pd.DataFrame(
        {"audience": "a", "metric": ["spend", "cpa", "spend"], "mean": 10.0,
         "p10": 8.0, "p50": 10.0, "p90": 13.0, "row": ["audience"] * 2 + ["total"]}
    )  # fmt: skip
    factors = band_factors({"widening_by_metric": {"spend": 2.0, "conversions": 3.0}})
    wide = widen_summary(summary, factors, {"a": 20.0})
    assert wide["p10"].tolist() == [6.0, 4.0, 6.0]
    assert wide["p90"].tolist() == [16.0, 19.0, 16.0]
    capped = widen_summary(summary, factors, {"a": 14.0})  # spend never above budget
    assert capped["p90"].tolist() == [14.0, 19.0, 14.0]


@pytest.fixture(scope="module", params=["demo", "real"])
def backtested(request, tmp_path_factory):
    """``adplan backtest`` on a generated 6-audience, 8-day log (2 days held out)."""
    root = tmp_path_factory.mktemp(f"backtest_{request.param}")
    runner = CliRunner()
    args = ["-q", "generate", "--out", str(root / "m"), "--audiences", "6"]
    args += ["--days", "8", "--seed", "3", "--realism", request.param]
    assert runner.invoke(main, args).exit_code == 0
    result = runner.invoke(
        main,
        [
            *("backtest", "--events", str(root / "m" / "events.csv")),
            *("--epochs", "2", "--runs", "100", "--out", str(root / "bt")),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "P10-P90 band held" in result.output
    return root, request.param


def test_backtest_band_holds_most_held_out_outcomes(backtested):
    """Demo market: the model's own band holds 70-90%. Real-world market: its
    volumes drift and prices have atoms, so the model's own band holds less (63%
    measured); widened by the factor the other half of the audiences asks for,
    it holds 70-90%."""
    root, realism = backtested
    doc = json.loads((root / "bt" / "backtest.json").read_text())
    table = pd.read_csv(root / "bt" / "backtest.csv")
    assert doc["holdout_days"] == 2 and doc["outcomes"] == 30
    coverage = doc["coverage" if realism == "demo" else "coverage_widened_crossfit"]
    assert 0.7 <= coverage <= 0.9, doc
    assert set(table["metric"]) == {
        "spend",
        "impressions",
        "clicks",
        "conversions",
        "value",
    }
    assert "TOTAL" in set(table["audience"]) and "high bids" in set(table["bid_band"])
    total = table[(table["audience"] == "TOTAL") & (table["metric"] == "spend")]
    audiences = table[
        (table["audience"] != "TOTAL")
        & (table["bid_band"] == "all")
        & (table["metric"] == "spend")
    ]
    assert total["actual"].item() == pytest.approx(audiences["actual"].sum())


def test_band_widens_when_the_model_is_wrong(backtested):
    """Rates scaled by 2: the backtest sees clicks and conversions far off and asks
    for a much wider band than the fitted model's."""
    root, _ = backtested
    market = load_market(root / "bt" / "model")
    events = pd.read_csv(root / "m" / "events.csv")
    _, held, n, _ = split_days(events, None, "events")
    right = calibration(compare(market, held, n, 60, 0))
    p = market.params
    wrong_params = dataclasses.replace(p, p_click=2 * p.p_click, p_conv=2 * p.p_conv)
    wrong = calibration(
        compare(dataclasses.replace(market, params=wrong_params), held, n, 60, 0)
    )
    assert wrong["coverage"] < right["coverage"]
    clicks = (
        right["widening_by_metric"]["clicks"],
        wrong["widening_by_metric"]["clicks"],
    )
    assert clicks[1] > max(2.0, 1.5 * clicks[0]), clicks
    assert wrong["coverage_by_metric"]["spend"] == pytest.approx(
        right["coverage_by_metric"]["spend"]
    )


def test_train_stores_the_band_check_and_simulate_states_it(trained, tmp_path):
    band = json.loads((trained["model"] / "band.json").read_text())
    assert band["outcomes"] > 0 and band["widening"] >= 1.0
    result = CliRunner().invoke(
        main,
        [
            *("simulate", "--model", str(trained["model"]), "--plan"),
            *(str(trained["plan"]), "--runs", "20", "--out", str(tmp_path / "s")),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "band checked on the log's last" in result.output
    doc = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert doc["band_widening"] == band_factors(band)


def test_report_says_how_accurate_the_forecasts_were(trained, backtested, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main,
        [
            *("report", "--model", str(trained["model"]), "--plan"),
            *(str(trained["plan"]), "--backtest", str(backtested[0] / "bt")),
            *("--out", str(out)),
        ],
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "How accurate were the forecasts" in page
    assert "P10-P90 range held" in page and "chart-backtest" in page
