"""Daily reports: the rate network on counts and the day-of-week effects (issue 19)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from optimizer.commands.backtest import calibration, split_days
from optimizer.commands.backtest_daily import compare_daily
from optimizer.io.daily import daily_totals
from optimizer.market.daily import fit_daily_market
from optimizer.rates.counts import fit_count_rates
from simulations.synthetic.daily import (
    DEVICES,
    DailyEffects,
    budget_outcomes,
    synthetic_report,
)
from simulations.synthetic.generate import make_truth
from simulations.synthetic.truth import Truth

N = 8


def _report(
    days: int, seed: int, effects: bool, **kwargs
) -> tuple[pd.DataFrame, DailyEffects]:
    """A synthetic daily report (with ``effects``: weekday and device ones) and the
    effects drawn for it, their ad set rows in the report's sorted name order."""
    truth, report, drawn = synthetic_report(N, days, seed, effects, **kwargs)
    names = [a["audience"] for a in truth.data["audiences"]]
    report["date"] = pd.to_datetime(report["date"])
    order = np.argsort(names)
    return report, drawn.take(order)


@pytest.fixture(scope="module")
def weekly():
    """A 56-day report with weekday and device effects, and its fits."""
    report, effects = _report(56, 4, True)
    rates = fit_count_rates(report, ["device"], 0)
    return (
        report,
        effects,
        rates,
        fit_daily_market(daily_totals(report), [], False, rates),
    )


def test_the_network_recovers_the_device_effects(weekly):
    report, effects, rates, _ = weekly
    found = {e["level"]: e for e in rates.effects["device"]}
    # The truth's factor of a device: its ad sets' factors, weighted by impressions.
    seen = report.pivot_table("impressions", "audience", "device", aggfunc="sum")
    for j, device in enumerate(DEVICES):
        weights = seen[device].sort_index().to_numpy()
        true_conv = np.average(effects.device_conversion[:, j], weights=weights)
        true_click = np.average(effects.device_click[:, j], weights=weights)
        assert found[device]["impressions"] == weights.sum()
        # Within 3 of its own sd (and 5% for the prior's pull): honest uncertainty.
        for head, true in (("click", true_click), ("conversion", true_conv)):
            sd = found[device][f"{head}_sd_log"]
            assert 0 < sd < 0.5
            assert abs(np.log(found[device][f"{head}_factor"] / true)) < 3 * sd + 0.05
    desktop, mobile = (found[d]["conversion_factor"] for d in ("desktop", "mobile"))
    assert desktop > 1.3 and mobile < 0.8


def test_rates_are_calibrated_to_each_ad_sets_counts(weekly):
    report, _, _, market = weekly
    plain = fit_daily_market(daily_totals(report), [])
    # The network spreads the rate over devices and weekdays; the ad set's level
    # stays its counts' (shrunk) rate, here over an average week.
    ratio = np.asarray(market.params.p_conv[:, 0]) / np.asarray(
        plain.params.p_conv[:, 0]
    )
    np.testing.assert_allclose(ratio, 1.0, atol=0.06)
    assert market.metrics["rate_model"] == "network on counts"
    assert plain.metrics["rate_model"] == "counts per ad set"
    weekdays = market.metrics["weekday_rates"][market.names[0]]
    assert len(weekdays["conv"]) == 7 and len(weekdays["click"]) == 7
    notes = " ".join(market.metrics["daily_notes"])
    assert "with device desktop convert at" in notes
    assert "with device mobile convert at" in notes


def test_the_weekday_volume_effect_is_found_and_used(weekly):
    _, effects, _, market = weekly
    week = market.metrics["weekday_volume"]
    assert week["used"] and week["p_value"] < 1e-6
    # Each weekday has 8 dates, each with its market-wide shock (sd 0.05): a factor
    # is known to about 2%, so 8% is 4 sd.
    np.testing.assert_allclose(
        list(week["factors"].values()), effects.weekday_volume, rtol=0.08
    )
    assert np.mean(list(week["factors"].values())) == pytest.approx(1.0, abs=1e-9)
    # The weekend is the busiest or the quietest part of the week: the note names it.
    (note,) = [
        n for n in market.metrics["daily_notes"] if "vary by day of the week" in n
    ]
    assert "Saturdays" in note or "Sundays" in note


def test_held_out_weekends_are_forecast_better_with_their_weekday(weekly):
    report, _, _, _ = weekly
    train, held, n, _ = split_days(report, 14, "", "date", "", 7)
    rates = fit_count_rates(train, ["device"], 0)
    market = fit_daily_market(daily_totals(train), [], False, rates)
    flat = dataclasses.replace(
        market,
        metrics={
            **market.metrics,
            "weekday_volume": {"factors": dict.fromkeys(market.metrics["weekday_volume"]["factors"], 1.0)},
            "weekday_rates": {},
        },
    )  # fmt: skip
    held = daily_totals(held[held["date"].dt.day_of_week >= 5])  # the weekends
    with_week = compare_daily(market, held, n, 60, 0)
    without = compare_daily(flat, held, n, 60, 0)

    def impressions_error(table):
        rows = table[
            (table["metric"] == "impressions") & (table["audience"] != "TOTAL")
        ]
        return float(np.median(np.abs(rows["forecast"] / rows["actual"] - 1)))

    assert impressions_error(with_week) < 0.6 * impressions_error(without)
    assert calibration(with_week[with_week["metric"] != "spend"])["coverage"] >= 0.5


def test_no_effect_is_claimed_where_the_report_has_none():
    report, _ = _report(28, 5, False)
    rates = fit_count_rates(report, [], 0)
    assert rates.fields == ("audience", "weekday")
    market = fit_daily_market(daily_totals(report), [], False, rates)
    assert not market.metrics["weekday_volume"]["used"]
    assert set(market.metrics["weekday_volume"]["factors"].values()) == {1.0}
    assert not [n for n in market.metrics["daily_notes"] if "impressions on" in n]
    assert not [n for n in market.metrics["daily_notes"] if "vary by day" in n]


def test_shocks_all_ad_sets_share_on_a_date_do_not_pass_for_a_weekday_effect():
    # A market-wide volume shock per date (sd 0.15, twice the ad sets' own) and no
    # weekly pattern: tested ad set-day by ad set-day it would look weekly in most
    # reports; by date, at most one report in ten (the test's level is 1%).
    claimed, tested = 0, 0
    for seed in range(10):
        report, _ = _report(28, 100 + seed, False, shared_sd=0.15)
        week = fit_daily_market(daily_totals(report), []).metrics["weekday_volume"]
        claimed += week["used"]
        tested += week["p_value"] is not None
    assert tested == 10
    assert claimed <= 1


def test_a_report_under_two_weeks_says_the_weekday_was_not_tested():
    report, _ = _report(10, 3, True)
    market = fit_daily_market(daily_totals(report), [])
    assert market.metrics["weekday_volume"]["p_value"] is None
    assert any("was not tested" in n for n in market.metrics["daily_notes"])


def test_the_fit_reproduces_from_its_seed_and_pads_its_cells(weekly):
    report, _, rates, _ = weekly
    again = fit_count_rates(report, ["device"], 0)
    pd.testing.assert_frame_equal(rates.cells, again.cells)
    fewer = fit_count_rates(
        report[report["audience"] != report["audience"].iloc[0]], ["device"], 0
    )
    assert (
        len(fewer.cells) == len(rates.cells) - 3 * 7
    )  # one ad set x 3 devices x 7 days


def test_the_truth_scores_a_week_of_days_each_at_its_own_bid():
    data = make_truth(3, 7, 0, "first_price", 0.0, "demo")
    params = Truth(data).market_params()
    plain = DailyEffects.draw(3, 0)
    budget = np.array([5.0, 0.0, 20.0])
    flat = dataclasses.replace(
        plain, weekday_volume=np.ones(7), weekday_conversion=np.full(7, 0.5)
    )
    base = budget_outcomes(params, budget, 14.0)
    halved = budget_outcomes(params, budget, 14.0, flat)
    np.testing.assert_allclose(
        halved["conversions"], 0.5 * base["conversions"], rtol=1e-9
    )
    np.testing.assert_allclose(halved["impressions"], base["impressions"], rtol=1e-9)
    weekly = budget_outcomes(params, budget, 14.0, plain)
    np.testing.assert_allclose(
        weekly["spend"], 14.0 * budget, rtol=1e-6
    )  # every day spends it
    assert weekly["conversions"][1] == 0.0
    # Busier days buy more impressions for the same budget, so the week is not the average day.
    assert not np.allclose(weekly["impressions"], base["impressions"], rtol=1e-3)


def test_an_ad_set_that_spent_without_impressions_keeps_the_pooled_rate():
    day = pd.date_range("2026-03-02", periods=10)
    rows = pd.DataFrame(
        {
            "date": np.repeat(day, 2),
            "audience": ["A", "B"] * 10,
            "spend": np.ravel([[10.0 + t, 5.0] for t in range(10)]),
            "impressions": np.ravel([[1000.0 + 50 * t, 0.0] for t in range(10)]),
            "clicks": [10.0, 0.0] * 10,
            "conversions": [1.0, 0.0] * 10,
        }
    )
    rates = fit_count_rates(rows, [], 0)
    market = fit_daily_market(daily_totals(rows), [], False, rates)
    p_conv = np.asarray(market.params.p_conv[:, 0])
    assert np.isfinite(p_conv).all() and (p_conv > 0).all()
    assert p_conv[1] == pytest.approx(p_conv[0], rel=0.05)  # B: the pooled rate


def test_simulate_refuses_a_second_price_truth_for_a_daily_plan():
    from optimizer.commands.simulate import _daily_truth
    from optimizer.errors import InputError

    truth = Truth(make_truth(3, 7, 0, "second_price", 0.0, "demo"))
    with pytest.raises(InputError, match="second-price auction log"):
        _daily_truth(truth, truth.audiences, np.ones(3), 7)
