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
Click and conversion rates per impression come from the counts, shrunk to the
pooled rate with a beta prior worth ``_PRIOR_EVENTS`` events.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.special import log_ndtr, ndtr

from optimizer.market.fit import FittedMarket, RateEvidence
from optimizer.market.params import MONEY, MarketParams

_S_GRID = np.exp(np.linspace(np.log(0.1), np.log(2.0), 40))
_M_POINTS = 121
_S_PRIOR_SD = 0.5  # sd of log s around the pooled s
_MIN_SPEND_VARIATION = 0.05  # sd of log daily spend below which a curve is unidentified
_PRIOR_EVENTS = 20.0
_RECENT_DAYS = 7
_DEFAULT_S, _DEFAULT_Z = 0.6, 0.0


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
    fits, points = {}, {}
    for name in names:
        rows = days[(days["audience"] == name) & (days["spend"] > 0)]
        rows = rows[rows["impressions"] > 0]
        x = np.log(rows["spend"].to_numpy() / rows["impressions"].to_numpy())
        y = np.log(rows["impressions"].to_numpy())
        points[name] = (x, y)
        varied = len(x) >= 3 and np.std(np.log(rows["spend"])) >= _MIN_SPEND_VARIATION
        if varied:
            fits[name] = _grid_fit(x, y)
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
        x, y = points[names[i]]
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
    return {"s": s, "m": m, "log_v": log_v, "known": known, "points": points}, notes


def _shrunk(events: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Per ad set rate events / trials shrunk to the pooled rate (beta prior)."""
    pooled = max(events.sum(), 0.5) / max(trials.sum(), 1.0)
    strength = _PRIOR_EVENTS / pooled
    return (events + strength * pooled) / (trials + strength)


def _landscape_metrics(names, fit, n_days) -> list[dict]:
    rows = []
    for i, name in enumerate(names):
        x, y = fit["points"][name]
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


def fit_daily_market(
    days: pd.DataFrame, report_notes: list[str], guess_curves: bool = False
) -> FittedMarket:
    """The market of every ad set that spent, from per-(audience, date) totals
    (:func:`optimizer.io.daily.daily_totals`); ``guess_curves``: every spend curve
    guessed as an unidentified one is (see :func:`_landscapes`)."""
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
    metrics = {
        "input_kind": "daily",
        "landscapes": _landscape_metrics(names, fit, days["date"].nunique()),
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
