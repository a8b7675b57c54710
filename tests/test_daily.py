"""Daily platform reports: presets, mapping files, the checks, and the fitted curves."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from optimizer.commands.daily import PRESET_NAMES, detect_input_kind
from optimizer.errors import InputError
from optimizer.io.daily import PRESETS, daily_totals, read_daily_report
from optimizer.market.daily import fit_daily_market
from optimizer.market.params import MarketParams
from simulations.synthetic.daily import budget_outcomes, daily_report

META = (
    "Day,Ad set name,Age,Amount spent (EUR),Impressions,Link clicks,Results,Results value\n"
    "2026-03-01,Prospecting,18-24,12.50,1000,20,2,80\n"
    "2026-03-01,Prospecting,25-34,7.50,600,9,1,40\n"
    "2026-03-01,Retargeting,18-24,5.00,300,8,3,120\n"
    "2026-03-02,Prospecting,18-24,15.00,1150,25,1,40\n"
    "2026-03-02,Prospecting,25-34,8.00,620,10,0,0\n"
    "2026-03-02,Retargeting,18-24,5.00,310,2,4,160\n"
)
GOOGLE = (
    "Day,Campaign,Cost,Impr.,Clicks,Conversions,Conv. value\n"
    "2026-03-01,Brand,10.00,500,40,4,200\n"
    "2026-03-02,Brand,11.00,520,42,5,250\n"
)
DV360 = (
    "Date,Line Item,Revenue (Adv Currency),Impressions,Clicks,Total Conversions\n"
    "2026/03/01,LI-1,30.0,10000,12,1\n"
    "2026/03/02,LI-1,33.0,10500,15,2\n"
)


def _write(tmp_path, text, name="report.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_preset_names_match_the_presets():
    assert tuple(sorted(PRESETS)) == PRESET_NAMES


@pytest.mark.parametrize(
    ("text", "preset", "currency", "spend", "breakdowns"),
    [
        (META, "meta", "EUR", 53.0, ["Age"]),
        (GOOGLE, "google_ads", None, 21.0, []),
        (DV360, "dv360", None, 63.0, []),
    ],
)
def test_each_preset_is_recognized(tmp_path, text, preset, currency, spend, breakdowns):
    frame, info = read_daily_report(_write(tmp_path, text))
    assert info["preset"] == preset
    assert info["currency"] == currency
    assert info["breakdowns"] == breakdowns
    assert frame["spend"].sum() == pytest.approx(spend)
    assert frame["date"].dt.day.tolist()[:1] == [1]
    assert detect_input_kind(tmp_path / "report.csv", "auto", None, None) == "daily"


def test_breakdown_rows_sum_per_day_and_view_through_is_accepted(tmp_path):
    frame, info = read_daily_report(_write(tmp_path, META))
    days = daily_totals(frame)
    first = days[(days["audience"] == "Prospecting")].iloc[0]
    assert first["spend"] == pytest.approx(20.0)
    assert first["impressions"] == 1600
    assert any("more conversions than clicks" in n for n in info["notes"])


def test_forcing_a_preset_that_does_not_fit_names_what_is_missing(tmp_path):
    with pytest.raises(
        InputError, match=r"closest: dv360, missing date, audience, spend, clicks, conv"
    ):
        read_daily_report(_write(tmp_path, META), preset="dv360")
    with pytest.raises(InputError, match="--preset 'tiktok'"):
        read_daily_report(_write(tmp_path, META), preset="tiktok")


def test_mapping_file_maps_any_export(tmp_path):
    text = "When,Name,Money,Views,Taps,Sales\n2026-03-01,A,5,100,3,1\n2026-03-02,A,6,110,4,0\n"
    mapping = _write(
        tmp_path,
        'currency = "USD"\n[columns]\ndate = "When"\naudience = "Name"\n'
        'spend = "Money"\nimpressions = "Views"\nclicks = "Taps"\nconversions = "Sales"\n',
        "map.toml",
    )
    frame, info = read_daily_report(_write(tmp_path, text), mapping=mapping)
    assert info["preset"] == "mapping map.toml"
    assert info["currency"] == "USD"
    assert frame["conversions"].tolist() == [1.0, 0.0]
    bad = _write(tmp_path, '[columns]\nbudget = "Money"\n', "bad.toml")
    with pytest.raises(InputError, match="unknown: budget"):
        read_daily_report(tmp_path / "report.csv", mapping=bad)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("12.50", "-12.50"),
            r"column 'Amount spent \(EUR\)' is negative in 1 row\(s\) \(first at data row 1\)",
        ),
        (
            lambda t: t.replace("2026-03-02,Retargeting", ",Retargeting"),
            r"column 'Day' is empty in 1 row\(s\) \(first at data row 6\)",
        ),
        (
            lambda t: t.replace(
                "2026-03-02,Prospecting,25-34", "yesterday,Prospecting,25-34"
            ),
            r"column 'Day' is not a date in 1 row\(s\) \(first at data row 5\)",
        ),
        (
            lambda t: t.replace(
                "2026-03-02,Prospecting,25-34", "2026-03-02,Prospecting,18-24"
            ),
            r"repeats an earlier row's .* in 1 row\(s\) \(first at data row 5\)",
        ),
        (
            lambda t: t.replace(",1150,", ",many,"),
            r"column 'Impressions' is not a number in 1 row\(s\) \(first at data row 4\)",
        ),
    ],
)
def test_bad_rows_are_named(tmp_path, edit, message):
    path = _write(tmp_path, edit(META))
    with pytest.raises(InputError, match=message) as info:
        read_daily_report(path)
    assert str(path) in str(info.value)


def test_an_ad_set_that_never_spent_is_a_note(tmp_path):
    text = META + "2026-03-01,Paused,18-24,0,0,0,0,0\n"
    frame, info = read_daily_report(_write(tmp_path, text))
    assert any("'Paused' never spent" in n for n in info["notes"])
    market = fit_daily_market(daily_totals(frame), info["notes"])
    assert "Paused" not in market.names


def _with_column(text: str, header: str, values: list) -> str:
    """``text`` (a CSV) with one more column."""
    lines = text.strip().split("\n")
    out = [f"{lines[0]},{header}"] + [
        f"{line},{v}" for line, v in zip(lines[1:], values, strict=True)
    ]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    ("header", "values", "why"),
    [
        ("Landing page views", [14, 7.5, 3, 18, 9, 2], "holds numbers"),
        ("Week starting", ["2026-03-01"] * 3 + ["2026-03-02"] * 3, "holds dates"),
        ("Ad name", [f"ad {i}" for i in range(6)], None),
    ],
)
def test_columns_that_are_not_breakdowns_are_left_out_with_a_note(
    tmp_path, header, values, why, monkeypatch
):
    if why is None:  # more distinct text values than a breakdown may have
        monkeypatch.setattr("optimizer.io.daily.MAX_LEVELS", 5)
        why = "has 6 different values"
    frame, info = read_daily_report(
        _write(tmp_path, _with_column(META, header, values))
    )
    assert info["breakdowns"] == ["Age"]
    assert header not in frame
    assert any(f"column '{header}' {why}" in n for n in info["notes"])


def test_a_numeric_breakdown_reads_as_the_same_labels_however_stored(tmp_path):
    # Age as whole numbers, one row blank: pandas reads the column as 25.0, 35.0 ...
    text = META.replace("18-24", "25").replace("25-34", "35")
    text = text.replace("2026-03-02,Retargeting,25", "2026-03-02,Retargeting,")
    frame, info = read_daily_report(_write(tmp_path, text))
    assert info["breakdowns"] == ["Age"]
    assert frame["Age"].tolist()[:5] == ["25", "35", "25", "25", "35"]
    assert pd.isna(frame["Age"].iloc[5])
    # A one-row-per-day report's whole numbers are a measure, not a breakdown.
    one = "\n".join(
        line
        for line in text.split("\n")
        if ",35," not in line and "Retargeting" not in line
    )
    _, info = read_daily_report(_write(tmp_path, one, "one.csv"))
    assert info["breakdowns"] == []


@pytest.mark.parametrize(
    ("header", "values", "why"),
    [
        ("Post-click conversions", [1, 0, 2, 1, 0, 3], "holds numbers"),
        (
            "Search impr. share",
            ["< 10%", "--", "12.50%", "11%", "--", "9%"],
            "holds numbers",
        ),
        ("Status", ["Active"] * 6, "has one value per ad set and day"),
        ("Advertiser ID", [1234] * 6, "holds numbers"),
        ("Notes", [""] * 6, "is empty"),
        ("Video plays", [900, 500, 280, 1000, 560, 300], "holds numbers"),
    ],
)
def test_measures_and_attributes_of_a_split_report_are_not_breakdowns(
    tmp_path, header, values, why
):
    _, info = read_daily_report(_write(tmp_path, _with_column(META, header, values)))
    assert info["breakdowns"] == ["Age"]
    assert any(f"column '{header}' {why}" in n for n in info["notes"])


def test_hours_are_a_breakdown_and_too_many_regions_are_summed_over(
    tmp_path, monkeypatch
):
    hours = ["00:00", "09:00", "00:00", "00:00", "09:00", "00:00"]
    _, info = read_daily_report(_write(tmp_path, _with_column(META, "Hour", hours)))
    assert info["breakdowns"] == ["Age", "Hour"]
    # Split by region as well, with more regions than a breakdown may have: the rows
    # are summed over it (each day's Prospecting 18-24 row from two regions).
    monkeypatch.setattr("optimizer.io.daily.MAX_LEVELS", 2)
    lines = META.strip().split("\n")
    text = "\n".join(
        [lines[0] + ",Region"] + [f"{line},R{i}" for i, line in enumerate(lines[1:])]
    )
    text += "\n2026-03-01,Prospecting,18-24,2.50,100,1,1,40,R9\n"
    frame, info = read_daily_report(_write(tmp_path, text, "regions.csv"))
    assert info["breakdowns"] == ["Age"]
    assert any(
        "7 rows summed to 6, over column(s) 'Region'" in n for n in info["notes"]
    )
    first = frame[(frame["audience"] == "Prospecting") & (frame["Age"] == "18-24")]
    assert (
        first["spend"].tolist() == [15.0, 15.0] and first["impressions"].iloc[0] == 1100
    )


def test_a_measure_named_like_an_adplan_column_is_left_out_not_refused(tmp_path):
    # DV360's preset maps no reach column: its Reach is a measure, not a breakdown.
    _, info = read_daily_report(
        _write(tmp_path, _with_column(DV360, "Reach", [900, 950]))
    )
    assert info["breakdowns"] == []
    assert any("column 'Reach' holds numbers" in n for n in info["notes"])


@pytest.mark.parametrize("header", ["weekday", "Clicks", "share"])
def test_a_breakdown_named_like_an_adplan_column_is_refused(tmp_path, header):
    text = _with_column(META, header, ["a", "b"] * 3)
    with pytest.raises(InputError, match=f"column '{header}' is a breakdown"):
        read_daily_report(_write(tmp_path, text))


def _known_market(n: int) -> MarketParams:
    a = jnp.ones((n, 1))
    return MarketParams(
        volume_per_day=jnp.asarray(np.linspace(20000, 60000, n)),
        hour_profile=jnp.full((n, 24), 1 / 24),
        weight=a,
        p_click=0.02 * a,
        p_conv=jnp.asarray(np.linspace(0.001, 0.003, n))[:, None],
        value=50.0 * a,
        price_loc=0.0 * a,
        mix_weight=a,
        mix_loc=jnp.asarray(np.log(np.linspace(0.004, 0.01, n)))[:, None],
        mix_scale=0.5 * a,
    )


def test_known_curves_are_recovered_and_a_flat_one_is_flagged():
    n = 4
    truth = _known_market(n)
    names = [f"ad_{i}" for i in range(n)]
    usual = np.exp(np.asarray(truth.mix_loc[:, 0]))  # median price: ~50% win rate
    # No market-wide shock per date: the test is how well day-to-day spend
    # variation alone identifies the curves' shape.
    report = daily_report(truth, names, usual, 60, 0, "2026-01-01", shared_sd=0.0)
    report["date"] = pd.to_datetime(report["date"])
    flat = report["audience"] == "ad_3"  # its budget never moved: one spend level
    fixed = float(report.loc[flat, "daily_budget"].median())
    exact = budget_outcomes(truth, np.full(n, fixed), 60.0)
    report.loc[flat, "spend"] = round(exact["spend"][3] / 60, 2)
    report.loc[flat, "impressions"] = round(exact["impressions"][3] / 60)
    market = fit_daily_market(daily_totals(report), [])
    fits = {f["audience"]: f for f in market.metrics["landscapes"]}
    assert [fits[f"ad_{i}"]["identified"] for i in range(n)] == [
        True,
        True,
        True,
        False,
    ]
    assert any("'ad_3' never varied" in note for note in market.metrics["daily_notes"])
    # The learned curves give the true conversions at budgets 0.6x and 1.6x the usual.
    usual_budget = report.groupby("audience")["spend"].mean().loc[names].to_numpy()
    for factor in (0.6, 1.6):
        budget = factor * usual_budget[:3]
        true = budget_outcomes(truth.take(jnp.arange(3)), budget, 1.0)["conversions"]
        got = budget_outcomes(market.params.take(jnp.arange(3)), budget, 1.0)[
            "conversions"
        ]
        np.testing.assert_allclose(got, true, rtol=0.12)
    np.testing.assert_allclose(
        np.asarray(market.params.mix_scale[:3, 0]), 0.5, rtol=0.35
    )


def test_truth_spends_exactly_the_daily_budget():
    truth = _known_market(3)
    out = budget_outcomes(truth, np.array([10.0, 0.0, 50.0]), 7.0)
    np.testing.assert_allclose(out["spend"], [70.0, 0.0, 350.0], rtol=1e-9)
    assert out["conversions"][1] == 0.0
