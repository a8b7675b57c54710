"""Auctions per day per audience for the planned horizon, from the log's days.

Real volumes drift (a market growing, seasonality, a publisher added), so the
log's average day is not what the next days bring. Each audience's daily counts
are forecast by the method that predicted the log's own later days best
(forward chaining: each day from the days before it, pooled over audiences):
  mean      the log's average day (right for a steady market),
  recent_7  exponentially weighted mean, half-life 7 days,
  recent_3  exponentially weighted mean, half-life 3 days,
  trend     log-linear trend per audience, slope shrunk toward 0, one day ahead.
The choice is made from the data, never tuned to a market; a log with fewer than
``MIN_DAYS_TO_CHOOSE`` whole days keeps the mean. Days the log covers only in
part (its first and last) count by the share of a day's auctions they hold.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

METHODS = ("mean", "recent_7", "recent_3", "trend")
MIN_DAYS_TO_CHOOSE = 6
_TREND_PRIOR_DAYS = 14.0  # shrinkage of the trend slope, in days of evidence
_MIN_EXPOSURE = 0.25  # days holding less of a day's auctions are left out


@dataclasses.dataclass(frozen=True)
class DailyCounts:
    """Auctions per audience and UTC day of the log.

    Attributes:
        counts: (A, D) auctions (the sample scaled to the whole log).
        exposure: (D,) share of a whole day's auctions each day covers (0-1].
    """

    counts: np.ndarray
    exposure: np.ndarray


def daily_counts(
    daily: dict[str, dict[str, int]],
    names: list[str],
    first: pd.Timestamp,
    last: pd.Timestamp,
    hour_share: np.ndarray,
) -> DailyCounts:
    """Counts per (audience, day) of a whole log, from its exact totals.

    Args:
        daily: auctions per audience name and UTC date (ISO 8601).
        names: (A,) audiences, in the market's order.
        first, last: the log's earliest and latest timestamps (UTC).
        hour_share: (24,) share of a day's auctions in each UTC hour (sums to 1).
    """
    days = pd.date_range(first.floor("D"), last.floor("D"), freq="D")
    keys = days.strftime("%Y-%m-%d")
    counts = np.array(
        [[daily.get(name, {}).get(k, 0) for k in keys] for name in names], float
    )
    exposure = np.ones(len(days))
    cum = np.concatenate([[0.0], np.cumsum(hour_share)])
    start_hour = first.hour + first.minute / 60.0
    end_hour = last.hour + (last.minute + 1) / 60.0
    exposure[0] -= np.interp(start_hour, np.arange(25), cum)
    exposure[-1] -= 1.0 - np.interp(end_hour, np.arange(25), cum)
    if len(days) == 1:
        exposure[0] = np.interp(end_hour, np.arange(25), cum) - np.interp(
            start_hour, np.arange(25), cum
        )
    keep = exposure >= _MIN_EXPOSURE
    if not keep.any():  # a log of a few hours: its one day, scaled
        keep = exposure == exposure.max()
    return DailyCounts(counts[:, keep], np.maximum(exposure[keep], 1e-6))


def _forecast(counts: np.ndarray, exposure: np.ndarray, method: str) -> np.ndarray:
    """(A,) auctions on the day after the given days, by ``method``."""
    d = counts.shape[1]
    age = d - 1 - np.arange(d)  # days before the last one
    if method == "mean":
        w = np.ones(d)
    elif method.startswith("recent_"):
        w = 0.5 ** (age / float(method.split("_")[1]))
    else:
        return _trend(counts, exposure)
    return (counts * w).sum(1) / (exposure * w).sum()


def _trend(counts: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """(A,) one-day-ahead log-linear trend, slope shrunk toward 0 (Poisson-weighted
    least squares on log daily rates)."""
    d = counts.shape[1]
    t = np.arange(d) - (d - 1) / 2.0
    rate = (counts + 0.5) / exposure
    y = np.log(rate)
    w = counts + 0.5  # Poisson weight of a log count
    t_mean = (w * t).sum(1) / w.sum(1)
    y_mean = (w * y).sum(1) / w.sum(1)
    sxx = (w * (t - t_mean[:, None]) ** 2).sum(1)
    sxy = (w * (t - t_mean[:, None]) * (y - y_mean[:, None])).sum(1)
    # The prior acts like _TREND_PRIOR_DAYS days of evidence for "no trend".
    shrink = sxx / (sxx + _TREND_PRIOR_DAYS * w.mean(1) * d)
    slope = shrink * sxy / np.maximum(sxx, 1e-12)
    level = y_mean + slope * ((d - 1) / 2.0 + 1.0 - t_mean)
    return np.exp(level)


def forward_errors(daily: DailyCounts) -> dict[str, float]:
    """Mean squared log error of each method's one-day-ahead forecasts of the
    log's second half, each day from the days before it, over audiences."""
    counts, exposure = daily.counts, daily.exposure
    d = counts.shape[1]
    start = max(3, d // 2)
    out = {}
    for method in METHODS:
        errors = []
        for day in range(start, d):
            guess = _forecast(counts[:, :day], exposure[:day], method)
            seen = counts[:, day] / exposure[day]
            errors.append(np.log((seen + 0.5) / (guess + 0.5)) ** 2)
        out[method] = float(np.mean(errors))
    return out


def volume_per_day(daily: DailyCounts) -> tuple[np.ndarray, dict]:
    """(A,) auctions per day for the horizon, and what chose them (for metrics)."""
    if daily.counts.shape[1] < MIN_DAYS_TO_CHOOSE:
        method, errors = "mean", {}
    else:
        errors = forward_errors(daily)
        method = min(METHODS, key=lambda m: errors[m])
    volume = _forecast(daily.counts, daily.exposure, method)
    return volume, {
        "method": method,
        "days": int(daily.counts.shape[1]),
        "forward_log_error": errors,
    }
