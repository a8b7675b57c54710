"""Fit the market model from an event log: volumes, hour profiles, landscapes, strata.

The result is a :class:`FittedMarket`: audience names, the auction type, the
:class:`~optimizer.market.params.MarketParams` the allocator and simulator use, what the
log's recent behaviour spends ("current"), goodness-of-fit metrics, and the
:class:`RateEvidence` the simulator draws its conversion-rate band from.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd

from optimizer.errors import InputError
from optimizer.log.totals import LogTotals, detect_auction_type, log_totals
from optimizer.market.landscape import (
    LandscapeData,
    fit_landscapes,
    naive_fit,
    row_components,
    row_win_probability,
    subsample,
)
from optimizer.market.params import MarketParams
from optimizer.market.price_rates import (
    PriceRates,
    expected_multiplier,
    fit_first_price_rates,
    fit_price_rates,
)
from optimizer.market.rules import rule_rows
from optimizer.market.spread import Spread, fit_spread, log_shift
from optimizer.market.volume import daily_counts, volume_per_day

N_STRATA = 16
RECENT_DAYS = 7
_HOUR_PSEUDO_COUNT = 120.0  # hour profiles shrink toward the pooled profile
_VALUE_PSEUDO_CONVERSIONS = 5.0  # value per conversion shrinks toward the pooled mean
# Without a max bid from the planner, bids stay within 3x the highest bids the log
# has seen (99th percentile): beyond that the landscape is pure extrapolation.
_CEILING_FACTOR = 3.0
ANCHOR_EVENTS = (
    20.0  # prior weight, in expected clicks/conversions, of the log-wide level
)


@dataclasses.dataclass(frozen=True)
class RateEvidence:
    """What the log says about the rate network's conversion rates (A audiences).

    The simulator's conversion-rate band is drawn from it. market.json keeps it
    inside the metrics (``rate_anchoring`` and ``rate_spread.conversion``);
    :mod:`optimizer.market.store` reads it back.

    Attributes:
        conversions_observed: (A,) conversions of each audience's won auctions.
        conversions_expected: (A,) the network's un-anchored expected conversions
            for the same auctions; None for a market.json written before they
            were stored.
        spread: the within-audience conversion spread fitted to the log; None
            for a market.json without it.
    """

    conversions_observed: np.ndarray
    conversions_expected: np.ndarray | None
    spread: Spread | None


@dataclasses.dataclass(frozen=True)
class FittedMarket:
    """Market model learned from a log (A audiences, in ``names`` order)."""

    names: list[str]
    auction_type: str
    params: MarketParams
    current_bid: np.ndarray  # (A,) currency per impression, recent median bid
    current_daily_spend: np.ndarray  # (A,) currency per day, recent average
    bid_ceiling: np.ndarray  # (A,) default max bid: 3 x the 99th percentile logged bid
    has_value: bool  # whether the log carried revenue
    metrics: dict
    evidence: RateEvidence | None = None  # None: a market not fitted to a log
    # Per sampled row: rule features, rate shift, anchored p_click and p_conv,
    # what bid rules are fitted from (rule_rows.parquet); None: not kept.
    rule_rows: pd.DataFrame | None = None

    @property
    def first_price(self) -> bool:
        return self.auction_type == "first_price"


def _hour_profiles(totals: LogTotals, names: list[str]) -> np.ndarray:
    """(A, 24) share of each audience's auctions by UTC hour, shrunk to the pooled profile."""
    counts = np.array([totals.hours[n] for n in names], float)
    pooled = (counts.sum(0) + 1.0) / (counts.sum() + 24.0)
    profile = counts + _HOUR_PSEUDO_COUNT * pooled
    return profile / profile.sum(1, keepdims=True)


def _strata(
    codes: np.ndarray, shift: np.ndarray, pc: np.ndarray, pv: np.ndarray, a: int, k: int
) -> dict:
    """Equal-count quality strata per audience: weights, mean rates and shifts (A, K)."""
    out = {n: np.zeros((a, k)) for n in ("weight", "p_click", "p_conv", "shift")}
    order = np.lexsort((shift, codes))
    bounds = np.searchsorted(codes[order], np.arange(a + 1))
    for i in range(a):
        rows = order[bounds[i] : bounds[i + 1]]
        parts = [p for p in np.array_split(rows, min(k, len(rows))) if len(p)]
        for j, part in enumerate(parts):
            out["weight"][i, j] = len(part) / len(rows)
            out["p_click"][i, j] = pc[part].mean()
            out["p_conv"][i, j] = pv[part].mean()
            out["shift"][i, j] = shift[part].mean()
    return out


def _value_per_conversion(
    totals: LogTotals, names: list[str]
) -> tuple[np.ndarray, bool]:
    """(A,) revenue per conversion (currency), shrunk to the pooled mean."""
    if not totals.revenue_total or totals.revenue_total <= 0:
        return np.zeros(len(names)), False
    n_conv = np.array([totals.conversions[n] for n in names], float)
    rev = np.array([totals.revenue[n] for n in names], float)
    pooled = rev.sum() / max(n_conv.sum(), 1.0)
    return (rev + _VALUE_PSEUDO_CONVERSIONS * pooled) / (
        n_conv + _VALUE_PSEUDO_CONVERSIONS
    ), True


def _current(
    events: pd.DataFrame, codes: np.ndarray, weight: np.ndarray, last: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray]:
    """Median bid and average daily spend per audience over the log's last days.

    ``weight`` (A,) is auctions per sampled row of each audience (1 when
    ``events`` is the whole log); ``last`` is the log's latest timestamp.
    """
    a = len(weight)
    ts = events["timestamp"]
    cutoff = last - pd.Timedelta(days=RECENT_DAYS)
    recent = (ts > cutoff).to_numpy()
    span_days = max((last - max(cutoff, ts.min())).total_seconds() / 86400.0, 1 / 24)
    frame = pd.DataFrame(
        {
            "a": codes[recent],
            "bid": events["bid"].to_numpy()[recent],
            "cost": events["cost"].to_numpy()[recent],
        }
    )
    grouped = frame.groupby("a")
    bid = grouped["bid"].median().reindex(range(a))
    all_bids = (
        pd.Series(events["bid"].to_numpy()).groupby(codes).median().reindex(range(a))
    )
    spend = grouped["cost"].sum().reindex(range(a)).fillna(0.0) * weight / span_days
    return bid.fillna(all_bids).to_numpy(), spend.to_numpy()


def anchor_factors(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """(A,) factors that anchor each audience's predicted total to the log's.

    The rate network's calibration is fitted on the few validation days, so with
    rare conversions its level can be off by tens of percent. ``observed`` (A,)
    is each audience's count of clicks (or conversions) over its won auctions and
    ``expected`` (A,) the model's predicted total for the same auctions. Audience
    a's factor is (observed + tau * g) / (expected + tau), where g is the factor
    of the whole log and tau = 20 expected events: large audiences follow their
    own totals, small ones the log's. A log without any such event leaves the
    predictions as they are (factor 1): the rate model's prior already counts
    the zero (see :class:`optimizer.rates.calibration.PostClickPrior`).
    """
    if observed.sum() == 0:  # nothing to anchor to (the rates are a prior)
        return np.ones_like(expected)
    overall = observed.sum() / max(expected.sum(), 1e-12)
    return (observed + ANCHOR_EVENTS * overall) / (expected + ANCHOR_EVENTS)


def _fit_metrics(
    fit: dict, naive: dict | None, data: LandscapeData, names: list[str]
) -> list[dict]:
    """Per audience: fitted vs empirical win rate by bid decile, and the max gap."""
    fitted = row_win_probability(fit, data)
    naive_p = row_win_probability(naive, data) if naive is not None else None
    rows = []
    for i, name in enumerate(names):
        idx = np.flatnonzero(data.audience == i)
        buckets = np.array_split(
            idx[np.argsort(data.log_bid[idx])], min(10, max(len(idx), 1))
        )
        table = []
        for b in (b for b in buckets if len(b)):
            entry = {
                "bid": float(np.exp(np.median(data.log_bid[b]))),
                "auctions": len(b),
                "empirical_win_rate": float(data.won[b].mean()),
                "fitted_win_rate": float(fitted[b].mean()),
            }
            if naive_p is not None:
                entry["naive_win_rate"] = float(naive_p[b].mean())
            table.append(entry)
        gap = max(
            (abs(t["empirical_win_rate"] - t["fitted_win_rate"]) for t in table),
            default=float("nan"),
        )
        row = {
            "audience": name,
            "auctions": len(idx),
            "won": int(data.won[idx].sum()),
            "family": str(fit["family"][i]),
            "log_price_location": float(fit["mu"][i]),
            "log_price_scale": float(fit["scale"][i, 0]),
            "quality_slope": float(fit["beta"][i]),
            "max_abs_win_rate_error": gap,
            "win_rate_by_bid": table,
        }
        if naive_p is not None:
            row["naive_max_abs_win_rate_error"] = max(
                abs(t["empirical_win_rate"] - t["naive_win_rate"]) for t in table
            )
        rows.append(row)
    return rows


def _price_rates(
    data: LandscapeData, fit: dict, clicks: np.ndarray, p_click: np.ndarray
) -> tuple[PriceRates, np.ndarray]:
    """How click rates move with the price paid, and each won row's multiplier.

    Second price: from the costs of won auctions; first price: from how the click
    rate moves with the bid, under the fitted landscape ``fit``."""
    won = data.won
    codes, events, rate = data.audience[won], clicks[won].astype(float), p_click[won]
    a = data.n_audiences
    if data.first_price:
        parts = [part[won] for part in row_components(fit, data)]
        log_bid = data.log_bid[won]
        rates = fit_first_price_rates(codes, log_bid, *parts, events, rate, a)
        return rates, expected_multiplier(rates, codes, log_bid, *parts)
    log_cost = data.log_cost[won]
    rates = fit_price_rates(codes, log_cost, events, rate, a)
    return rates, rates.multiplier(codes, log_cost)


def fit_market(
    events: pd.DataFrame,
    p_click: np.ndarray,
    p_conversion: np.ndarray,
    auction_type: str | None = None,
    n_strata: int = N_STRATA,
    totals: LogTotals | None = None,
    progress: bool = False,
) -> FittedMarket:
    """Fit the market model from a validated event log and per-row predicted rates.

    Args:
        events: validated event log (n rows), or a uniform sample of each
            audience's rows of a bigger log described by ``totals``.
        p_click: (n,) predicted click probability per won impression, for every row.
        p_conversion: (n,) predicted conversion probability per won impression.
        auction_type: 'second_price', 'first_price' or None to detect from the log.
        n_strata: quality strata per audience in the response model.
        totals: exact totals of the whole log; None computes them from ``events``.
        progress: show the landscape fit's bar on a terminal.
    """
    totals = totals or log_totals(events)
    names = sorted(totals.auctions)
    codes = pd.Categorical(events["audience"], categories=names).codes.astype(np.int32)
    a = len(names)
    sampled = np.bincount(codes, minlength=a)
    if (sampled == 0).any():
        raise InputError("the market sample misses an audience of the log totals.")
    # Auctions of the log per row of ``events``: the same within an audience, so
    # per-audience means, medians and quantiles need no weights.
    weight = np.array([totals.auctions[n] for n in names], float) / sampled
    auction_type = auction_type or detect_auction_type(events)
    first_price = auction_type == "first_price"
    won = events["won"].to_numpy() == 1
    shift = log_shift(np.clip(p_conversion, 1e-9, 1.0), codes, a)
    click_shift = log_shift(p_click, codes, a)
    spreads = {
        "click": fit_spread(
            codes[won], p_click[won], click_shift[won], events["click"].to_numpy()[won]
        ),
        "conversion": fit_spread(
            codes[won],
            p_conversion[won],
            shift[won],
            events["conversion"].to_numpy()[won],
        ),
    }
    p_click = np.clip(spreads["click"].apply(p_click, click_shift), 0.0, 1.0)
    p_conversion = spreads["conversion"].apply(p_conversion, shift)
    cost = events["cost"].to_numpy()
    if not first_price and (won & (cost <= 0)).any():
        raise InputError(
            "event log: some won auctions have cost 0 under second-price; a second-price win reveals a positive price. Validate the log first (optimizer.io.schema.validate_event_log with bad rows drops them)."
        )
    data = LandscapeData(
        audience=codes,
        log_bid=np.log(events["bid"].to_numpy()),
        log_cost=np.log(np.where(won & (cost > 0), cost, 1.0)),
        won=won,
        shift=shift,
        n_audiences=a,
        first_price=first_price,
    )
    fit = fit_landscapes(subsample(data), progress=progress)
    price_rates, won_tilt = _price_rates(data, fit, events["click"].to_numpy(), p_click)
    tilt = np.ones(len(codes))
    tilt[won] = won_tilt
    observed_clicks = np.array([totals.clicks[n] for n in names], float)
    observed_conv = np.array([totals.conversions[n] for n in names], float)
    click_factor = anchor_factors(
        observed_clicks,
        weight * np.bincount(codes[won], p_click[won] * tilt[won], minlength=a),
    )
    expected_conv = weight * np.bincount(
        codes[won], p_conversion[won] * tilt[won], minlength=a
    )
    conv_factor = anchor_factors(observed_conv, expected_conv)
    p_click = np.clip(p_click * click_factor[codes], 0.0, 1.0)
    p_conversion = np.minimum(p_conversion * conv_factor[codes], p_click)
    strata = _strata(codes, shift, p_click, p_conversion, a, n_strata)
    value, has_value = _value_per_conversion(totals, names)
    n_days = max(len(totals.days), 1)
    hours = np.array([totals.hours[n] for n in names], float).sum(0)
    volume, volume_choice = volume_per_day(
        daily_counts(
            totals.daily,
            names,
            pd.Timestamp(totals.first),
            pd.Timestamp(totals.last),
            hours / hours.sum(),
        )
    )
    params = MarketParams(  # host arrays, placed in one go below
        volume_per_day=np.asarray(volume),
        hour_profile=np.asarray(_hour_profiles(totals, names)),
        weight=np.asarray(strata["weight"]),
        p_click=np.asarray(strata["p_click"]),
        p_conv=np.asarray(strata["p_conv"]),
        value=np.asarray(np.repeat(value[:, None], n_strata, 1)),
        price_loc=np.asarray(
            fit["mu"][:, None] + fit["beta"][:, None] * strata["shift"]
        ),
        mix_weight=np.asarray(fit["weight"]),
        mix_loc=np.asarray(fit["loc"]),
        mix_scale=np.asarray(fit["scale"]),
        rate_slope=np.asarray(price_rates.slope) if price_rates.estimated else None,
        rate_ref=np.asarray(price_rates.ref) if price_rates.estimated else None,
    )
    params = jax.device_put(params)
    bid, spend = _current(events, codes, weight, pd.Timestamp(totals.last))
    p99 = (
        pd.Series(events["bid"].to_numpy())
        .groupby(codes)
        .quantile(0.99)
        .reindex(range(a))
    )
    ceiling = _CEILING_FACTOR * p99.to_numpy()
    metrics = {
        "auction_type": auction_type,
        "days_in_log": int(n_days),
        "volume": volume_choice,
        "rate_spread": {head: fit.to_json() for head, fit in spreads.items()},
        "price_rates": price_rates.to_json(names),
        "rate_anchoring": {
            name: {
                "click": float(click_factor[i]),
                "conversion": float(conv_factor[i]),
                "conversions_observed": int(observed_conv[i]),
                "conversions_expected": float(expected_conv[i]),
            }
            for i, name in enumerate(names)
        },
        "landscapes": _fit_metrics(
            fit, None if first_price else naive_fit(data), data, names
        ),
    }
    evidence = RateEvidence(observed_conv, expected_conv, spreads["conversion"])
    rows = rule_rows(events, shift, p_click, p_conversion)
    return FittedMarket(
        names,
        auction_type,
        params,
        bid,
        spend,
        ceiling,
        has_value,
        metrics,
        evidence,
        rows,
    )
