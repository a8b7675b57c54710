"""A log without conversions (a new campaign) trains, and every output says that
conversions are a guess (robustness issue, point 12)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.rates import calibration
from optimizer.rates.store import load_rate_model


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def no_conversions(small_market, tmp_path_factory):
    """small_market's log with every conversion (and its revenue) removed, trained
    and planned."""
    root = tmp_path_factory.mktemp("no-conversions")
    events = pd.read_csv(small_market / "events.csv")
    clicks = int(events["click"].sum())
    events["conversion"] = 0
    if "revenue" in events:
        events["revenue"] = 0.0
    events.to_csv(root / "events.csv", index=False)
    model, plan = root / "model", root / "plan"
    _run(
        "-q",
        "train",
        "--events",
        str(root / "events.csv"),
        "--out",
        str(model),
        "--epochs",
        "2",
    )
    shown = _run(
        "plan",
        "--model",
        str(model),
        "--budget",
        "300",
        "--days",
        "7",
        "--out",
        str(plan),
    )
    return {
        "root": root,
        "model": model,
        "plan": plan,
        "clicks": clicks,
        "shown": shown,
    }


def test_conversion_head_is_a_post_click_prior(no_conversions, small_market):
    model = load_rate_model(no_conversions["model"])
    prior = model.calibration["conversion"]
    assert isinstance(prior, calibration.PostClickPrior)
    assert prior.conversions == 0 and prior.clicks == no_conversions["clicks"]
    assert prior.rate == pytest.approx(1.0 / (prior.clicks + calibration.PRIOR_CLICKS))
    rates = model.predict(pd.read_csv(small_market / "events.csv").head(500))
    np.testing.assert_allclose(rates["p_conversion_given_click"], prior.rate)
    saved = json.loads(
        (no_conversions["model"] / "rates" / "calibration.json").read_text()
    )
    assert saved["heads"]["conversion"]["post_click_prior"]["rate"] == prior.rate


def test_plan_forecasts_conversions_and_says_they_are_a_guess(no_conversions):
    doc = json.loads((no_conversions["plan"] / "plan.json").read_text())
    assert any("Conversions are a guess" in w for w in doc["warnings"])
    assert "Conversions are a guess" in no_conversions["shown"]
    frame = pd.read_csv(no_conversions["plan"] / "plan.csv")
    # The market fit does not anchor the prior to the log's zero conversions.
    assert frame["expected_conversions"].sum() > 0


def test_conversion_band_is_wide(no_conversions):
    root = no_conversions["root"]
    _run(
        "-q",
        "simulate",
        "--model",
        str(no_conversions["model"]),
        "--plan",
        str(no_conversions["plan"]),
        "--runs",
        "100",
        "--out",
        str(root / "sim"),
    )
    summary = json.loads((root / "sim" / "summary.json").read_text())["uncertainty"]
    # An honest band for a guess: the conversion level is uncertain by more than
    # +-50% (one sd), not the +-20% a few dozen measured conversions would give.
    assert summary["conversions_in_log"] == 0
    assert summary["level_sd"] > 0.5


def test_report_and_clicks_objective(no_conversions):
    root = no_conversions["root"]
    model = str(no_conversions["model"])
    _run(
        "-q",
        "plan",
        "--model",
        model,
        "--budget",
        "300",
        "--days",
        "7",
        "--objective",
        "clicks",
        "--out",
        str(root / "clicks"),
    )
    _run(
        "-q",
        "report",
        "--model",
        model,
        "--plan",
        str(no_conversions["plan"]),
        "--out",
        str(root / "r.html"),
    )
    html = (root / "r.html").read_text()
    assert "conversions are a guess" in html
