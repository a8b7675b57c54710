"""Daily volume for the horizon: chosen by forward forecasts of the log's own days."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.market.volume import DailyCounts, daily_counts, volume_per_day

FLAT_HOURS = np.full(24, 1 / 24)


def _counts(rates: np.ndarray, seed: int = 0) -> DailyCounts:
    """Poisson daily counts (A, D) around ``rates``, whole days."""
    rng = np.random.default_rng(seed)
    return DailyCounts(rng.poisson(rates).astype(float), np.ones(rates.shape[1]))


def test_steady_market_gets_its_mean():
    rates = np.full((8, 21), 5000.0)
    volume, choice = volume_per_day(_counts(rates))
    np.testing.assert_allclose(volume, 5000.0, rtol=0.03)
    assert set(choice["forward_log_error"]) >= {"mean", "trend"}


def test_growing_market_is_forecast_at_the_logs_end():
    days = np.arange(21)
    rates = 2000.0 * np.array([1.03, 0.97, 1.05, 1.0])[:, None] ** days[None, :]
    next_day = 2000.0 * np.array([1.03, 0.97, 1.05, 1.0]) ** 21
    volume, choice = volume_per_day(_counts(rates, seed=1))
    mean = rates.mean(1)
    assert choice["method"] != "mean"
    # Closer to the next day's volume than the log's average day is, audience by
    # audience where there is a trend.
    trending = [0, 1, 2]
    assert np.all(
        np.abs(volume[trending] / next_day[trending] - 1)
        < np.abs(mean[trending] / next_day[trending] - 1)
    )


def test_short_log_keeps_the_mean():
    volume, choice = volume_per_day(_counts(np.full((3, 4), 100.0)))
    np.testing.assert_allclose(volume, 100.0, rtol=0.2)
    assert choice["method"] == "mean"


def test_partial_first_and_last_days_count_by_their_share():
    # 3 days of 240 auctions a day, 10 an hour, from 12:00 on day 1 to 11:59 on day 3.
    stamps = pd.Series(
        pd.date_range("2026-01-01 12:00", "2026-01-03 11:59", freq="6min", tz="UTC")
    )
    per_day = stamps.dt.strftime("%Y-%m-%d").value_counts().to_dict()
    daily = daily_counts({"a": per_day}, ["a"], stamps.min(), stamps.max(), FLAT_HOURS)
    np.testing.assert_allclose(daily.exposure, [0.5, 1.0, 0.5], atol=0.01)
    np.testing.assert_allclose(daily.counts[0] / daily.exposure, 240.0, rtol=0.01)
    volume, _ = volume_per_day(daily)
    assert volume[0] == pytest.approx(240.0, rel=0.01)
