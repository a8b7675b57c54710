"""A market fitted from a daily platform report instead of an auction log.

On a daily report the platform sets the bids; what the planner decides is the
budget per ad set. Each ad set becomes a first-price market the existing
allocator and simulator plan as they are: the "bid" is the average price paid
per impression (spend / impressions, which a platform's pacing raises as the
daily budget grows) and the impressions a day buys at that price follow a
log-normal landscape, ``impressions = V * Phi((log cpi - m) / s)``. So cost per
impression rises with daily spend and delivery saturates at V.

Fit, per ad set, from the day-to-day variation of (cost per impression,
impressions): least squares on log impressions over a grid of (s, m), V in
closed form. The curvature ``s`` is partially pooled: a log-normal prior
around the pooled fit (sd ``_S_PRIOR_SD``) weighted by the pooled residual
variance. Where spend never varied (fewer than 3 days or under
``_MIN_SPEND_VARIATION`` sd of log spend) the curve is unidentified: it takes the
pooled ``s`` and the other ad sets' typical place on their curve, and says so.

Day of the week: where the report shows it (an F-test of the curve residuals
by weekday, p < ``_WEEKDAY_P``), log impressions carry a weekday term shared by
the ad sets (factors of mean 1), fitted jointly with the curves; the plan's
volume is the average day, a backtest's held-out day gets its own weekday.

Click and conversion rates per impression: each ad set's level from its counts,
shrunk to the pooled rate with a beta prior worth ``_PRIOR_EVENTS`` events; with
the rate network's cells (:func:`optimizer.rates.counts.fit_count_rates`, passed
in by the command, since the market stage does not import the rate stage) the
network's rates per (ad set, breakdown, weekday) calibrated to that level, and
the plan's rate is the ad set's breakdown mix over an average week.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.special import log_ndtr, ndtr
from scipy.stats import f as f_dist

from optimizer.io.daily import WEEKDAYS
from optimizer.market.fit import FittedMarket, RateEvidence
from optimizer.market.params import MONEY, MarketParams

_S_GRID = np.exp(np.linspace(np.log(0.1), np.log(2.0), 40))
_M_POINTS = 121
_S_PRIOR_SD = 0.5  # sd of log s around the pooled s
_MIN_SPEND_VARIATION = 0.05  # sd of log daily spend below which a curve is unidentified
_PRIOR_EVENTS = 20.0
_RECENT_DAYS = 7
_DEFAULT_S, _DEFAULT_Z = 0.6, 0.0
_WEEKDAY_P = 0.01  # a weekday volume term is used when its F-test is below this
_WEEKDAY_PASSES = 8  # backfitting passes of curves and weekday term (or until settled)
_EFFECT_SD = 3.5  # a rate effect is named this many sd from 1 (~1% false alarms in 20)
_EFFECT_SIZE = 0.10  # ... and at least 10% from 1
_DAY_NAMES = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)


def _grid_fit(
    x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per s of the grid: best m, log V and residual sum of squares (each (S,))."""
    out = np.zeros((3, len(_S_GRID)))
    for j, s in enumerate(_S_GRID):
        lo, hi = x.max() - 2.5 * s, x.min() + 2.5 * s
        if lo > hi:
            lo = hi = 0.5 * (lo + hi)
        m = np.linspace(lo, hi, _M_POINTS)
        lp = log_ndtr((x[:, None] - m[None, :]) / s)
        log_v = np.mean(y[:, None] - lp, axis=0)
        sse = np.sum((y[:, None] - log_v[None, :] - lp) ** 2, axis=0)
        k = int(np.argmin(sse))
        out[:, j] = m[k], log_v[k], sse[k]
    return out[0], out[1], out[2]


def _landscapes(
    days: pd.DataFrame, names: list[str], guess_all: bool = False
) -> tuple[dict, list[str]]:
    """(s, m, log V, identified) arrays per ad set and plain-words notes.

    ``guess_all``: every curve is the guess an unidentified one gets (pooled s,
    the *other* ad sets' typical place on their curve), to measure how wrong
    that guess is where spend did vary (the backtest's check)."""
    points, dates, varied = {}, {}, []
    for name in names:
        rows = days[(days["audience"] == name) & (days["spend"] > 0)]
        rows = rows[rows["impressions"] > 0]
        x = np.log(rows["spend"].to_numpy() / rows["impressions"].to_numpy())
        y = np.log(rows["impressions"].to_numpy())
        points[name] = (x, y, rows["date"].dt.day_of_week.to_numpy())
        dates[name] = rows["date"].to_numpy()
        if len(x) >= 3 and np.std(np.log(rows["spend"])) >= _MIN_SPEND_VARIATION:
            varied.append(name)
    week = {"log_factor": np.zeros(7), "p_value": None, "used": False}
    for _ in range(_WEEKDAY_PASSES if varied else 0):
        fits = {
            n: _grid_fit(points[n][0], points[n][1] - week["log_factor"][points[n][2]])
            for n in varied
        }
        found = _weekday_effect(fits, points, dates, week["log_factor"])
        if not found["used"]:
            if not week["used"]:  # the first test's verdict: no weekly pattern
                week = week | {"p_value": found["p_value"]}
            break
        settled = np.max(np.abs(found["log_factor"] - week["log_factor"])) < 1e-3
        week = found
        if settled:
            break
    fits = {
        n: _grid_fit(points[n][0], points[n][1] - week["log_factor"][points[n][2]])
        for n in varied
    }
    points = {n: (x, y - week["log_factor"][d], d) for n, (x, y, d) in points.items()}
    a = len(names)
    s, m, log_v = np.zeros(a), np.zeros(a), np.zeros(a)
    known = np.array([n in fits for n in names])
    if fits:
        total = sum(f[2] for f in fits.values())
        n_rows = sum(len(points[n][0]) for n in fits)
        noise = max(float(total.min()) / max(n_rows - 3 * len(fits), 1), 1e-6)
        pooled = float(np.log(_S_GRID[int(np.argmin(total))]))
    else:
        noise, pooled = 1.0, float(np.log(_DEFAULT_S))
    z = {}
    for i, name in enumerate(names):
        if name in fits:
            mi, lvi, sse = fits[name]
            score = sse + noise * (np.log(_S_GRID) - pooled) ** 2 / _S_PRIOR_SD**2
            j = int(np.argmin(score))
            s[i], m[i], log_v[i] = _S_GRID[j], mi[j], lvi[j]
            z[name] = np.mean((points[name][0] - m[i]) / s[i])
    for i in range(a) if guess_all else np.flatnonzero(~known):
        x, y, _ = points[names[i]]
        others = [v for n, v in z.items() if n != names[i]]
        typical = float(np.median(others)) if others else _DEFAULT_Z
        s[i] = np.exp(pooled)
        m[i] = (np.mean(x) if len(x) else np.log(1e-3)) - s[i] * typical
        log_v[i] = np.mean(y) - log_ndtr(typical) if len(y) else 0.0
    notes = [
        f"spend on '{names[i]}' never varied: its curve is a guess from the other ad "
        "sets (wide uncertainty); vary its daily budget for a week to learn it."
        for i in np.flatnonzero(~known)
    ]
    fit = {"s": s, "m": m, "log_v": log_v, "known": known, "points": points}
    return fit | {"weekday": week}, notes


def _weekday_effect(fits: dict, points: dict, dates: dict, used: np.ndarray) -> dict:
    """The weekday term of log impressions, from the fitted curves' residuals
    (``used``: the term they were fitted with): (7,) log factors (mean of the
    factors 1), the F-test's p-value and whether it is below ``_WEEKDAY_P``.

    The test is a one-way ANOVA of each *date's* mean residual (over the ad sets)
    by weekday, F(6, dates - 7): a shock every ad set shares on a date (a holiday,
    the platform's whole auction volume) counts once, so shared noise on a few
    dates cannot pass for a weekly pattern."""
    resid, when = [], []
    for name, (m, log_v, sse) in fits.items():
        x, y, d = points[name]
        j = int(np.argmin(sse))
        resid.append(y - used[d] - log_v[j] - log_ndtr((x - m[j]) / _S_GRID[j]))
        when.append(dates[name])
    per_date = pd.Series(np.concatenate(resid)).groupby(np.concatenate(when)).mean()
    r = per_date.to_numpy()
    d = pd.DatetimeIndex(per_date.index).day_of_week.to_numpy()
    counts = np.bincount(d, minlength=7)
    if (counts < 2).any():
        return {"log_factor": np.zeros(7), "p_value": None, "used": False}
    means = np.bincount(d, weights=r, minlength=7) / counts
    total = used + means
    within = float(np.sum((r - means[d]) ** 2))
    dof = len(r) - 7
    between = float(np.sum(counts * (total - np.average(total, weights=counts)) ** 2))
    p = (
        None
        if dof < 1 or within <= 0
        else float(f_dist.sf(between / 6.0 / (within / dof), 6, dof))
    )
    log_factor = total - np.log(np.mean(np.exp(total)))
    used_now = p is not None and p < _WEEKDAY_P
    return {"log_factor": log_factor, "p_value": p, "used": used_now}


def _shrunk(events: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Per ad set rate events / trials shrunk to the pooled rate (beta prior)."""
    pooled = max(events.sum(), 0.5) / max(trials.sum(), 1.0)
    strength = _PRIOR_EVENTS / pooled
    return (events + strength * pooled) / (trials + strength)


def _landscape_metrics(names, fit, n_days) -> list[dict]:
    rows = []
    for i, name in enumerate(names):
        x, y, _ = fit["points"][name]
        v = np.exp(fit["log_v"][i])
        fitted = ndtr((x - fit["m"][i]) / fit["s"][i])
        order = np.argsort(x)
        table = [
            {
                "bid": float(np.exp(x[k])),
                "empirical_win_rate": float(np.exp(y[k]) / v),
                "fitted_win_rate": float(fitted[k]),
            }
            for k in order
        ]
        err = max(
            (abs(t["empirical_win_rate"] - t["fitted_win_rate"]) for t in table),
            default=0.0,
        )
        rows.append(
            {
                "audience": name,
                "auctions": int(v * n_days),
                "won": int(np.exp(y).sum()),
                "family": "lognormal" if fit["known"][i] else "pooled prior",
                "identified": bool(fit["known"][i]),
                "sigma": float(fit["s"][i]),
                "max_abs_win_rate_error": float(err),
                "win_rate_by_bid": table,
            }
        )
    return rows


def _network_rates(
    count_rates, names: list[str], p_click, p_conv, day_volume: np.ndarray
) -> dict:
    """The network's cells calibrated per ad set to the shrunk counts ``p_click``,
    ``p_conv`` (A,); the plan's rates (the ad set's breakdown mix of the report
    over a week, each weekday weighted by its volume factor ``day_volume`` (7,)),
    each (ad set, weekday)'s rate over the plan's, notes, and the calibrated cells
    as records (``rate_cells``: train moves them to the model's rates_by_cell.csv)."""
    cells = count_rates.cells[count_rates.cells["audience"].isin(names)].copy()
    mix = [f for f in count_rates.fields if f != "weekday"]  # audience + breakdowns
    n = cells["impressions"]
    cells["share"] = n.groupby([cells[f] for f in mix]).transform("sum") / n.groupby(
        cells["audience"]
    ).transform("sum").clip(lower=1e-300)
    out = {"notes": _effect_notes(count_rates.effects), "weekday_factor": {}}
    factors = {}
    for head, col, level in (
        ("click", "p_click", p_click),
        ("conv", "p_conversion", p_conv),
    ):
        fitted = (n * cells[col]).groupby(cells["audience"]).sum() / n.groupby(
            cells["audience"]
        ).sum().clip(lower=1e-300)
        target = pd.Series(level, index=names).loc[fitted.index]
        ratio = (target / fitted).replace([np.inf, -np.inf], np.nan).fillna(1.0)
        cells[col] *= cells["audience"].map(ratio)
        # (audience, weekday) rate of the ad set's mix; an average week of it
        day = (cells["share"] * cells[col]).groupby(
            [cells["audience"], cells["weekday"]]
        ).sum() / cells["share"].groupby([cells["audience"], cells["weekday"]]).sum()
        day = day.unstack().reindex(columns=list(WEEKDAYS))
        seen = day.notna().to_numpy() * day_volume[None, :]
        week = (day.fillna(0.0) * seen).sum(axis=1) / seen.sum(axis=1).clip(1e-300)
        week = week.where(seen.sum(axis=1) > 0)  # no impressions: the counts' level
        out[f"p_{head}"] = week.reindex(names).fillna(pd.Series(level, index=names))
        factors[head] = day.div(week, axis=0).fillna(1.0)
    out["weekday_factor"] = {
        a: {h: factors[h].loc[a].tolist() for h in ("click", "conv")}
        for a in factors["click"].index
    }
    keep = [*count_rates.fields, "impressions", "clicks", "conversions"]
    keep += ["p_click", "p_click_sd_log", "p_conversion", "p_conversion_sd_log"]
    out["cells"] = cells[keep].to_dict("records")
    return out


def _effect_notes(effects: dict) -> list[str]:
    """Plain-words notes of the breakdown and weekday levels whose rates differ
    from their ad sets' average by more than ``_EFFECT_SD`` sd and 10%."""
    notes = []
    for field, levels in effects.items():
        for e in levels:
            said = [
                f"{what} at {e[f'{head}_factor']:.2f}x (± {e[f'{head}_factor'] * e[f'{head}_sd_log']:.2f})"
                for head, what in (("conversion", "convert"), ("click", "click"))
                if abs(e[f"{head}_factor"] - 1) >= _EFFECT_SIZE
                and abs(np.log(e[f"{head}_factor"])) > _EFFECT_SD * e[f"{head}_sd_log"]
            ]
            if said:
                who = (
                    f"on {_DAY_NAMES[WEEKDAYS.index(e['level'])]}s"
                    if field == "weekday"
                    else f"with {field} {e['level']}"
                )
                notes.append(
                    f"impressions {who} {' and '.join(said)} their ad sets' average "
                    "rate (the rate network on the report's counts)."
                )
    return notes


def fit_daily_market(
    days: pd.DataFrame,
    report_notes: list[str],
    guess_curves: bool = False,
    count_rates=None,
) -> FittedMarket:
    """The market of every ad set that spent, from per-(audience, date) totals
    (:func:`optimizer.io.daily.daily_totals`); ``guess_curves``: every spend curve
    guessed as an unidentified one is (see :func:`_landscapes`); ``count_rates``:
    the rate network's :class:`~optimizer.rates.counts.CountRates` of the same
    report, or None for the shrunk counts alone."""
    spent = days.groupby("audience")["spend"].sum()
    names = sorted(spent.index[spent.to_numpy() > 0])
    per = days.groupby("audience")[
        ["spend", "impressions", "clicks", "conversions"]
    ].sum()
    per = per.loc[names]
    fit, notes = _landscapes(days, names, guess_curves)
    a = len(names)
    impressions = per["impressions"].to_numpy()
    p_click = _shrunk(per["clicks"].to_numpy(), impressions)
    p_conv = _shrunk(per["conversions"].to_numpy(), impressions)
    network = None
    if count_rates is not None:
        day_volume = np.exp(fit["weekday"]["log_factor"])
        network = _network_rates(count_rates, names, p_click, p_conv, day_volume)
        p_click = network["p_click"].to_numpy(float)
        p_conv = network["p_conv"].to_numpy(float)
    has_value = "value" in days and float(days["value"].sum()) > 0
    value = np.ones(a)
    if has_value:
        v = days.groupby("audience")["value"].sum().loc[names].to_numpy()
        conv = per["conversions"].to_numpy()
        pooled = v.sum() / max(conv.sum(), 1e-9)
        value = (v + 5.0 * pooled) / (conv + 5.0)
    last = days["date"].max() - pd.Timedelta(days=_RECENT_DAYS - 1)
    recent = (
        days[days["date"] >= last].groupby("audience")[["spend", "impressions"]].sum()
    )
    recent = recent.reindex(names, fill_value=0.0)
    n_recent = min(_RECENT_DAYS, days["date"].nunique())
    cpi = np.where(
        recent["impressions"] > 0,
        recent["spend"] / np.maximum(recent["impressions"], 1e-300),
        per["spend"] / np.maximum(per["impressions"], 1e-300),
    )
    ceiling = [
        3.0 * np.exp(fit["points"][n][0].max()) if len(fit["points"][n][0]) else 1.0
        for n in names
    ]
    params = MarketParams(
        volume_per_day=jnp.asarray(np.exp(fit["log_v"]), MONEY),
        hour_profile=jnp.full((a, 24), 1.0 / 24, MONEY),
        weight=jnp.ones((a, 1), MONEY),
        p_click=jnp.asarray(p_click[:, None], MONEY),
        p_conv=jnp.asarray(p_conv[:, None], MONEY),
        value=jnp.asarray(value[:, None], MONEY),
        price_loc=jnp.zeros((a, 1), MONEY),
        mix_weight=jnp.ones((a, 1), MONEY),
        mix_loc=jnp.asarray(fit["m"][:, None], MONEY),
        mix_scale=jnp.asarray(fit["s"][:, None], MONEY),
    )
    conversions = per["conversions"].to_numpy()
    week = fit["weekday"]
    if week["used"]:
        high, low = (
            int(np.argmax(week["log_factor"])),
            int(np.argmin(week["log_factor"])),
        )
        notes.append(
            f"impressions vary by day of the week: {_DAY_NAMES[high]}s deliver "
            f"{np.exp(week['log_factor'][high]):.2f}x an average day, {_DAY_NAMES[low]}s "
            f"{np.exp(week['log_factor'][low]):.2f}x; the plan's daily budget is for an "
            "average day of the week."
        )
    elif (
        np.bincount(days["date"].drop_duplicates().dt.day_of_week, minlength=7).min()
        < 2
    ):
        notes.append(
            "the report holds fewer than two of some day of the week: whether volume "
            "changes by weekday was not tested (export at least two weeks)."
        )
    if network is not None:
        notes += network["notes"]
    metrics = {
        "input_kind": "daily",
        "landscapes": _landscape_metrics(names, fit, days["date"].nunique()),
        "weekday_volume": {
            "factors": dict(
                zip(WEEKDAYS, np.exp(week["log_factor"]).tolist(), strict=True)
            ),
            "p_value": week["p_value"],
            "used": bool(week["used"]),
        },
        "rate_model": "network on counts" if network else "counts per ad set",
        "weekday_rates": network["weekday_factor"] if network else {},
        "rate_effects": count_rates.effects if network else {},
        "rate_fields": list(count_rates.fields) if network else [],
        "rate_cells": network["cells"] if network else [],
        "daily_notes": [*report_notes, *notes],
        "price_rates": {
            "estimated": False,
            "why": "A daily report has no price per impression, so the plan "
            "assumes conversion rates do not change with the cost per impression.",
        },
        "rate_anchoring": {
            n: {"conversions_observed": float(c)}
            for n, c in zip(names, conversions, strict=True)
        },
    }
    return FittedMarket(
        names=names,
        auction_type="first_price",
        params=params,
        current_bid=np.asarray(cpi, float),
        current_daily_spend=recent["spend"].to_numpy() / n_recent,
        bid_ceiling=np.asarray(ceiling, float),
        has_value=has_value,
        metrics=metrics,
        evidence=RateEvidence(conversions, None, None),
    )
