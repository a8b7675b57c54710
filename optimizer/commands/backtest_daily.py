"""``adplan backtest`` on a daily platform report: the forecast checked on it.

The report minus its last days is fitted (:func:`fit_daily_market`); for each
held-out day and ad set the model forecasts what that day's actual spend buys
(the price per impression at which its curve spends it, the impressions at
that price, the clicks, conversions and value they bring), with the simulator's
P10-P90, summed per ad set and in total. The table and summary are the auction
log backtest's (:mod:`optimizer.commands.backtest`; ``auctions`` is empty, a
report has none) so the band is calibrated the same way, on every metric but
spend (the forecast is made at the actual spend; its row shows the curve
reproduces it).

An ad set whose spend never varied gets a guessed curve. How good that guess is
can be measured where spend did vary: the same check on a fit where every curve
is guessed from the other ad sets. Its widening (``widening_unidentified_by_metric``)
is what simulate applies to the bands of ad sets whose curve is a guess.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr

from optimizer.commands.backtest import (
    METRICS,
    TARGET_COVERAGE,
    _row,
    _simulate,
    _with_values,
    calibration,
    split_days,
)
from optimizer.market.fit import FittedMarket

MIN_TRAIN_DAYS = 7  # a week of days before the held-out ones: curves need variation
_BISECTIONS = 80


def cost_per_impression(
    market: FittedMarket, a: np.ndarray, spend: np.ndarray, volume_factor=1.0
):
    """(n,) the price per impression at which ad set ``a`` (n,) spends ``spend``
    (n,) on a day whose volume is ``volume_factor`` (n,) times the average day's,
    on the model's curve: V f b Phi((log b - m) / s) = spend."""
    p = market.params
    v = np.asarray(p.volume_per_day, float)[a] * volume_factor
    m = np.asarray(p.mix_loc, float)[a, 0]
    s = np.asarray(p.mix_scale, float)[a, 0]
    lo = m - 12.0 * s
    hi = np.maximum(m + 6.0 * s, np.log(np.maximum(spend, 1e-300) / v)) + 1.0
    for _ in range(_BISECTIONS):  # spend is increasing in the price
        mid = 0.5 * (lo + hi)
        over = v * np.exp(mid) * ndtr((mid - m) / s) > spend
        lo, hi = np.where(over, lo, mid), np.where(over, mid, hi)
    return np.exp(0.5 * (lo + hi))


def _points(market: FittedMarket, held: pd.DataFrame, n_days: int) -> pd.DataFrame:
    """One forecast point per held-out (ad set, day) that spent: its price, its
    share of the held-out days' volume (by the weekday's volume factor) and its
    weekday's click and conversion rate factors."""
    index = {n: i for i, n in enumerate(market.names)}
    rows = held[held["spend"] > 0]
    a = rows["audience"].map(index).to_numpy(int)
    spend = rows["spend"].to_numpy(float)
    weekday = rows["date"].dt.day_of_week.to_numpy()
    volume = market.metrics.get("weekday_volume", {}).get("factors")
    factor = np.asarray(list(volume.values()))[weekday] if volume else 1.0
    rates = market.metrics.get("weekday_rates", {})
    rate = {
        head: np.array(
            [
                rates[n][head][d] if n in rates else 1.0
                for n, d in zip(rows["audience"], weekday, strict=True)
            ]
        )
        for head in ("click", "conv")
    }
    return pd.DataFrame(
        {
            "a": a,
            "audience": rows["audience"].to_numpy(),
            "bid": cost_per_impression(market, a, spend, factor),
            "share": np.full(len(rows), 1.0 / n_days) * factor,
            "click_factor": rate["click"],
            "conv_factor": rate["conv"],
        }
    ).reset_index(drop=True)


def _actual(held: pd.DataFrame) -> pd.DataFrame:
    out = held[["audience", "spend", "impressions", "clicks", "conversions"]].copy()
    out["value"] = held["value"] if "value" in held else np.nan
    return out


def compare_daily(
    market: FittedMarket, held: pd.DataFrame, n_days: int, runs: int, seed: int
) -> pd.DataFrame:
    """Forecast against outcome per ad set (bid band 'all') and TOTAL; bid_low and
    bid_high are the held-out days' actual cost per impression."""
    held = held[held["audience"].isin(market.names)]
    points = _points(market, held, n_days)
    sims = _simulate(market, points, n_days, runs, seed)
    actual = _actual(held)
    cpi = held["spend"] / held["impressions"].where(held["impressions"] > 0)
    rows = []
    for name, group in points.groupby("audience", sort=False):
        cols = group.index.to_numpy()
        mine = actual[actual["audience"] == name]
        paid = cpi[held["audience"] == name].dropna().to_numpy(float)
        span = (float(paid.min()), float(paid.max())) if len(paid) else (np.nan,) * 2
        whole = {m: sims[m][:, cols].sum(axis=1) for m in METRICS}
        rows += _row(name, "all", span, whole, mine[list(METRICS)].sum(), None)
    total = {m: sims[m].sum(axis=1) for m in METRICS}
    paid = cpi.dropna().to_numpy(float)
    span = (float(paid.min()), float(paid.max())) if len(paid) else (np.nan,) * 2
    rows += _row("TOTAL", "all", span, total, actual[list(METRICS)].sum(), None)
    return pd.DataFrame(rows)


def backtest_daily(
    path: Path,
    preset: str | None,
    mapping: Path | None,
    *,
    holdout_days: int | None,
    audiences: Path | None,
    seed: int,
    runs: int,
    show: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """Read the report at ``path`` and :func:`backtest_days` it."""
    from optimizer.io.daily import daily_totals, fail_if_empty, read_daily_report

    frame, info = read_daily_report(path, preset, mapping)
    fail_if_empty(daily_totals(frame), Path(path))
    return backtest_days(frame, info, path, holdout_days, audiences, seed, runs, show)


def backtest_days(
    rows: pd.DataFrame,
    info: dict,
    path: Path,
    holdout_days: int | None,
    audiences: Path | None,
    seed: int,
    runs: int,
    show: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """Fit a validated report's rows (``info``: its ``breakdowns`` and ``notes``)
    minus their last days, check the forecast of those days; return the comparison
    table and its summary (band.json's content). ``path`` names the report in
    messages; ``show``: the rate network's progress bar."""
    from optimizer.io.daily import daily_totals, fail_if_empty
    from optimizer.market.daily import fit_daily_market
    from optimizer.rates.counts import fit_count_rates

    train_rows, held_rows, n_days, cutoff = split_days(
        rows, holdout_days, path, "date", "daily report", MIN_TRAIN_DAYS
    )
    train, held = daily_totals(train_rows), daily_totals(held_rows)
    fail_if_empty(train, Path(path))
    rates = fit_count_rates(train_rows, info["breakdowns"], seed, show)
    market = _with_values(
        fit_daily_market(train, info["notes"], count_rates=rates), audiences
    )
    table = compare_daily(market, held, n_days, runs, seed)
    identified = [
        f["audience"] for f in market.metrics["landscapes"] if f["identified"]
    ]
    guessed = _with_values(
        fit_daily_market(train, [], guess_curves=True, count_rates=rates), audiences
    )
    check = compare_daily(
        guessed, held[held["audience"].isin(identified)], n_days, runs, seed
    )
    guess = calibration(check[check["metric"] != "spend"])
    summary = {
        "input_kind": "daily",
        "holdout_days": n_days,
        "holdout_from": cutoff.isoformat(),
        "train_days": int(train["date"].nunique()),
        "train_rows": len(train),
        "holdout_rows": len(held),
        "runs": runs,
        "target_coverage": TARGET_COVERAGE,
        "unidentified": sorted(set(market.names) - set(identified)),
    } | calibration(table[table["metric"] != "spend"])
    if guess.get("outcomes"):
        summary |= {
            "widening_unidentified_by_metric": guess["widening_by_metric"],
            "coverage_unidentified_guess": guess["coverage"],
            "median_abs_error_unidentified_guess": guess["median_abs_error"],
        }
    return table, summary
