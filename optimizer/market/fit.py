"""Fit the market model from an event log: volumes, hour profiles, landscapes, strata.

The result is a :class:`FittedMarket`: audience names, the auction type, the
:class:`~optimizer.market.params.MarketParams` the allocator and simulator use, what the
log's recent behaviour spends ("current"), and goodness-of-fit metrics.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

from optimizer.errors import InputError
from optimizer.market.landscape import (
    LandscapeData,
    fit_landscapes,
    naive_fit,
    row_win_probability,
    subsample,
)
from optimizer.market.params import (
    MarketParams,
    params_from_json,
    params_to_json,
    stratum_wins,
)
from optimizer.market.spread import BOUNDS as SPREAD_BOUNDS
from optimizer.market.spread import fit_spread, log_shift

N_STRATA = 16
RECENT_DAYS = 7
_HOUR_PSEUDO_COUNT = 120.0  # hour profiles shrink toward the pooled profile
_VALUE_PSEUDO_CONVERSIONS = 5.0  # value per conversion shrinks toward the pooled mean
# Without a max bid from the planner, bids stay within 3x the highest bids the log
# has seen (99th percentile): beyond that the landscape is pure extrapolation.
_CEILING_FACTOR = 3.0
_ANCHOR_EVENTS = (
    20.0  # prior weight, in expected clicks/conversions, of the log-wide level
)
# Grids of the rate-level posterior (rate_level_posterior): the audience spread c
# (coefficient of variation of an audience's rate factor) from 0.1% to 1000%,
# and the log-wide level in posterior sds around its mode given c.
_CV_GRID = np.geomspace(1e-3, 10.0, 60)
_LEVEL_NODES = np.linspace(-6.0, 6.0, 41)
_LEVEL_PRIOR_SD = 1.0  # prior sd of log g, the log-wide level of the network's rates


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

    @property
    def first_price(self) -> bool:
        return self.auction_type == "first_price"


@dataclasses.dataclass(frozen=True)
class LogTotals:
    """Exact totals of a whole log that add up across chunks and processes.

    A streamed log fits the market on a per-audience sample of its rows; these
    totals keep volumes, hour profiles, observed clicks and conversions and value
    exact. Per-audience dicts are keyed by audience name.

    Attributes:
        auctions: auctions per audience.
        hours: (24,) auctions per UTC hour of day, per audience.
        clicks, conversions: on won auctions, per audience.
        revenue: revenue of converting auctions, per audience (currency).
        revenue_total: revenue over all rows, None when the log has no revenue column.
        days: distinct UTC dates (ISO) in the log.
        last: latest timestamp (ISO 8601, UTC).
    """

    auctions: dict[str, int]
    hours: dict[str, list[int]]
    clicks: dict[str, int]
    conversions: dict[str, int]
    revenue: dict[str, float]
    revenue_total: float | None
    days: list[str]
    last: str


def log_totals(events: pd.DataFrame) -> LogTotals:
    """Totals of a validated event log (or one chunk of it)."""
    frame = pd.DataFrame(
        {
            "audience": events["audience"].astype(str).to_numpy(),
            "hour": events["timestamp"].dt.hour.to_numpy(),
            "click": events["click"].to_numpy() * (events["won"].to_numpy() == 1),
            "conversion": events["conversion"].to_numpy()
            * (events["won"].to_numpy() == 1),
            "revenue": (
                events["revenue"].to_numpy() * events["conversion"].to_numpy()
                if "revenue" in events.columns
                else np.zeros(len(events))
            ),
        }
    )
    grouped = frame.groupby("audience", sort=True)
    sums = grouped[["click", "conversion", "revenue"]].sum()
    hours = (
        frame.groupby(["audience", "hour"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=range(24), fill_value=0)
    )
    return LogTotals(
        auctions={k: int(v) for k, v in grouped.size().items()},
        hours={k: [int(x) for x in row] for k, row in hours.iterrows()},
        clicks={k: int(v) for k, v in sums["click"].items()},
        conversions={k: int(v) for k, v in sums["conversion"].items()},
        revenue={k: float(v) for k, v in sums["revenue"].items()},
        revenue_total=(
            float(events["revenue"].sum()) if "revenue" in events.columns else None
        ),
        days=sorted(events["timestamp"].dt.strftime("%Y-%m-%d").unique().tolist()),
        last=events["timestamp"].max().isoformat(),
    )


def merge_totals(parts: list[LogTotals]) -> LogTotals:
    """Totals of the union of the logs (chunks) of ``parts``."""

    def add(field: str, zero):
        out: dict = {}
        for part in parts:
            for k, v in getattr(part, field).items():
                out[k] = np.add(out.get(k, zero), v)
        return out

    revenue_totals = [p.revenue_total for p in parts if p.revenue_total is not None]
    return LogTotals(
        auctions={k: int(v) for k, v in add("auctions", 0).items()},
        hours={k: [int(x) for x in v] for k, v in add("hours", np.zeros(24)).items()},
        clicks={k: int(v) for k, v in add("clicks", 0).items()},
        conversions={k: int(v) for k, v in add("conversions", 0).items()},
        revenue={k: float(v) for k, v in add("revenue", 0.0).items()},
        revenue_total=sum(revenue_totals) if revenue_totals else None,
        days=sorted(set().union(*(p.days for p in parts))),
        last=max(pd.Timestamp(p.last) for p in parts).isoformat(),
    )


def detect_auction_type(events: pd.DataFrame) -> str:
    """'first_price' when won auctions cost exactly the bid, else 'second_price'."""
    won = events["won"].to_numpy() == 1
    if not won.any():
        return "second_price"
    bid, cost = events["bid"].to_numpy()[won], events["cost"].to_numpy()[won]
    paid_bid = np.isclose(cost, bid, rtol=1e-6, atol=1e-9)
    return "first_price" if paid_bid.mean() > 0.99 else "second_price"


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


def rate_uncertainty_shape(market: FittedMarket) -> np.ndarray:
    """(A,) Gamma shape k of each audience's conversion-rate multiplier (mean 1,
    relative sd 1/sqrt(k)): the log's conversions plus the anchoring prior.

    The audiences' multipliers are independent: this is the fallback of
    :func:`rate_uncertainty` for a market.json without the model's expected
    conversions (trained before they were stored).
    """
    anchoring = market.metrics.get("rate_anchoring", {})
    observed = np.array(
        [anchoring.get(n, {}).get("conversions_observed", 0) for n in market.names],
        float,
    )
    return observed + _ANCHOR_EVENTS


@dataclasses.dataclass(frozen=True)
class RateLevelPosterior:
    """What the log says about the level of the rate network's conversion rates.

    Model: audience a's true conversion rate is its predicted rate times a
    factor ``g * u_a``: ``g`` is shared by the whole log (the network's overall
    level) and ``u_a`` (mean 1, coefficient of variation ``c``, Gamma) is the
    audience's own error; the log's conversions are Poisson given the factor.
    The posterior of ``(c, log g)`` is held on a grid (C spreads x L levels).

    Attributes:
        observed: (A,) conversions of each audience's won auctions in the log.
        expected: (A,) the network's (un-anchored) expected conversions for
            the same auctions.
        cv: (C,) grid of the audience spread c.
        log_level: (C, L) grid of log g for each spread.
        prob: (C, L) posterior probability of each cell (sums to 1).
    """

    observed: np.ndarray
    expected: np.ndarray
    cv: np.ndarray
    log_level: np.ndarray
    prob: np.ndarray


def _level_loglik(log_g, kappa, observed, expected, block: int = 2048):
    """Negative-binomial log-likelihood of the log's conversions and its first
    two derivatives in log g (the terms that depend on g).

    ``log_g`` (C, L) and ``kappa`` (C, 1); returns three (C, L) arrays. Summed
    over blocks of audiences so memory stays at C x L x ``block`` numbers.
    """
    ll = d1 = d2 = np.zeros(np.shape(log_g))
    k = kappa[..., None]
    for start in range(0, len(expected), block):
        obs, exp_ = observed[start : start + block], expected[start : start + block]
        mu = np.exp(log_g)[..., None] * exp_  # (C, L, block)
        total = k + mu
        ll = ll + np.sum(obs * np.log(mu) - (obs + k) * np.log(total), axis=-1)
        d1 = d1 + np.sum(k * (obs - mu) / total, axis=-1)
        d2 = d2 - np.sum((obs + k) * k * mu / total**2, axis=-1)
    return ll, d1, d2


def rate_level_posterior(
    observed: np.ndarray, expected: np.ndarray
) -> RateLevelPosterior:
    """Grid posterior of the log-wide rate level g and the audience spread c.

    Marginally each audience's conversions are negative binomial with mean
    ``g * expected`` and shape ``kappa = 1 / c**2``. Priors: log g normal with
    mean 0 and sd 1 (the network is calibrated, so its overall level is 1 give
    or take a factor e; any log with a few dozen conversions outweighs it, and
    it keeps the posterior proper with none) and a half-Cauchy(0, 1) for c, the
    usual weakly informative prior for the spread of a few groups (Gelman
    2006). For each spread the level grid is centred on the conditional mode
    of log g and spans +-6 of its posterior sds, so the cost is O(C x L x A)
    whatever the data.

    Args:
        observed: (A,) conversions per audience in the log.
        expected: (A,) the model's expected conversions for the same auctions
            (> 0; not anchored to the log).

    Returns:
        The posterior on the grid.
    """
    from scipy.special import gammaln

    observed = np.asarray(observed, np.float64)
    expected = np.maximum(np.asarray(expected, np.float64), 1e-12)
    kappa = 1.0 / _CV_GRID[:, None] ** 2  # (C, 1)
    precision = 1.0 / _LEVEL_PRIOR_SD**2
    mode = np.full_like(kappa, np.log((observed.sum() + 0.5) / expected.sum()))
    for _ in range(50):  # Newton, every spread at once; concave in log g
        _, d1, d2 = _level_loglik(mode, kappa, observed, expected)
        step = np.clip((d1 - precision * mode) / (d2 - precision), -1.0, 1.0)
        mode = mode - step
        if np.abs(step).max() < 1e-10:
            break
    ll, _, curvature = _level_loglik(mode, kappa, observed, expected)
    sd = 1.0 / np.sqrt(precision - curvature)  # (C, 1)
    levels = mode + sd * _LEVEL_NODES  # (C, L)
    # log prior: normal in log g, half-Cauchy in c (the c grid is geometric:
    # Jacobian c), and the level grid's spacing (sd) for the integral; the
    # gamma terms are the likelihood's parts that depend on c only.
    c = _CV_GRID[:, None]
    per_spread = (
        np.sum(
            gammaln(observed + kappa) - gammaln(kappa) + kappa * np.log(kappa),
            axis=1,
            keepdims=True,
        )
        - np.log1p(c**2)
        + np.log(c)
        + np.log(sd)
    )
    # Spreads whose Laplace estimate is e^-50 below the best carry no mass:
    # with many audiences most do, and skipping them keeps big logs fast.
    laplace = (ll - 0.5 * precision * mode**2 + per_spread)[:, 0]
    logpost = np.full_like(levels, -np.inf)
    for i in np.flatnonzero(laplace > laplace.max() - 50.0):  # memory O(L x A)
        ll_i = _level_loglik(levels[i : i + 1], kappa[i], observed, expected)[0]
        logpost[i] = ll_i[0]
    logpost += per_spread - 0.5 * precision * levels**2
    prob = np.exp(logpost - logpost.max())
    return RateLevelPosterior(
        observed, expected, _CV_GRID.copy(), levels, prob / prob.sum()
    )


def draw_rate_factors(
    posterior: RateLevelPosterior, rng: np.random.Generator, n: int
) -> np.ndarray:
    """(n, A) draws of each audience's factor on the network's conversion rates.

    Each draw takes (c, g) from the grid posterior and then each audience's
    factor from its conditional posterior, Gamma(kappa + observed, rate
    kappa + g * expected) times g: the audiences share the draw of g, so the
    factors are correlated as the log's overall level is uncertain.
    """
    cells = rng.choice(posterior.prob.size, size=n, p=posterior.prob.ravel())
    ci, li = np.unravel_index(cells, posterior.prob.shape)
    kappa = 1.0 / posterior.cv[ci, None] ** 2
    g = np.exp(posterior.log_level[ci, li])[:, None]
    u = rng.gamma(kappa + posterior.observed, 1.0 / (kappa + g * posterior.expected))
    return g * u


def posterior_mean_factors(posterior: RateLevelPosterior) -> np.ndarray:
    """(A,) posterior mean of each audience's factor on the network's rates."""
    out = np.zeros_like(posterior.expected)
    for c, li in zip(*np.nonzero(posterior.prob), strict=True):  # cells with mass
        kappa = 1.0 / posterior.cv[c] ** 2
        g = np.exp(posterior.log_level[c, li])
        mean = g * (kappa + posterior.observed) / (kappa + g * posterior.expected)
        out += posterior.prob[c, li] * mean
    return out


def _rate_posterior(market: FittedMarket) -> RateLevelPosterior | None:
    """The market's rate-level posterior, None for a market.json without the
    model's expected conversions."""
    anchoring = market.metrics.get("rate_anchoring", {})
    entries = [anchoring.get(name, {}) for name in market.names]
    if not all("conversions_expected" in e for e in entries):
        return None
    return rate_level_posterior(
        np.array([e["conversions_observed"] for e in entries], float),
        np.array([e["conversions_expected"] for e in entries], float),
    )


def rate_uncertainty_summary(market: FittedMarket) -> dict | None:
    """The conversion-rate uncertainty in a few numbers, for planners.

    Returns None for a market.json without the model's expected conversions,
    else: ``conversions_in_log``; ``level_sd``, the relative uncertainty
    (one sd) of the model's overall conversion level; ``audience_spread``, how
    far an audience's own rate typically departs from that level (posterior
    median of c); with the within-audience spread fitted, ``quality_spread_sd``,
    its relative uncertainty (one sd).
    """
    post = _rate_posterior(market)
    if post is None:
        return None
    mean = np.sum(post.prob * post.log_level)
    sd = np.sqrt(np.sum(post.prob * (post.log_level - mean) ** 2))
    by_cv = post.prob.sum(axis=1)
    median = post.cv[np.searchsorted(np.cumsum(by_cv), 0.5)]
    out = {
        "conversions_in_log": int(post.observed.sum()),
        "level_sd": float(np.expm1(sd)),
        "audience_spread": float(median),
    }
    fit = market.metrics.get("rate_spread", {}).get("conversion")
    if fit:
        out["quality_spread_sd"] = float(fit["sd"] / fit["slope"])
    return out


def rate_uncertainty(
    market: FittedMarket, rng: np.random.Generator, n: int
) -> np.ndarray:
    """(n, A) multipliers of the fitted conversion rates, one row per draw.

    With the model's expected conversions in market.json, the multipliers are
    draws of :func:`draw_rate_factors` divided by their posterior mean, so the
    simulated band stays centred on the plan's forecast; otherwise independent
    Gamma multipliers of shape :func:`rate_uncertainty_shape`.
    """
    posterior = _rate_posterior(market)
    if posterior is None:
        shape = rate_uncertainty_shape(market)
        return rng.gamma(shape, 1.0 / shape, size=(n, len(shape)))
    return draw_rate_factors(posterior, rng, n) / posterior_mean_factors(posterior)


def spread_tilts(market: FittedMarket, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, A, K) multipliers of the strata's conversion rates: draws of the
    within-audience spread fitted to the log (:mod:`optimizer.market.spread`).

    A draw of the slope s' ~ N(slope, sd^2) rescales each audience's log
    strata rates by s' / slope, renormalized so that the audience's conversions
    at its current bid (where the log anchored them) stay the same: the draws
    widen the band only where the plan bids away from the log's bids. All ones
    for a market.json without the fit.
    """
    params = market.params
    fit = market.metrics.get("rate_spread", {}).get("conversion")
    if not fit or fit.get("sd", 0.0) <= 0:
        return np.ones((n, *params.p_conv.shape))
    drawn = np.clip(rng.normal(fit["slope"], fit["sd"], n), *SPREAD_BOUNDS)
    delta = drawn / fit["slope"] - 1.0
    p_conv = np.asarray(params.p_conv)
    live = p_conv > 0  # strata of zero rate (and padding) stay as they are
    log_p = np.log(np.where(live, p_conv, 1.0))
    weight = np.asarray(params.weight) * live
    centre = (weight * log_p).sum(-1) / np.maximum(weight.sum(-1), 1e-300)
    tilt = np.where(live, np.exp(delta[:, None, None] * (log_p - centre[:, None])), 1.0)
    at_bid = np.asarray(stratum_wins(params, market.current_bid)) * p_conv  # (A, K)
    norm = (tilt * at_bid).sum(-1) / np.maximum(at_bid.sum(-1), 1e-300)
    return tilt / np.where(norm > 0, norm, 1.0)[..., None]


def audience_factors(
    params: MarketParams, multipliers: np.ndarray, bid: np.ndarray
) -> np.ndarray:
    """(G, A) factor on each audience's conversions at ``bid`` (A,) of rate
    multipliers that are per audience (G, A) or per stratum (G, A, K)."""
    multipliers = np.asarray(multipliers)
    if multipliers.ndim == 2:
        return multipliers
    conv = np.asarray(stratum_wins(params, bid)) * np.asarray(params.p_conv)
    return (multipliers * conv).sum(-1) / np.maximum(conv.sum(-1), 1e-300)


def anchor_factors(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """(A,) factors that anchor each audience's predicted total to the log's.

    The rate network's calibration is fitted on the few validation days, so with
    rare conversions its level can be off by tens of percent. ``observed`` (A,)
    is each audience's count of clicks (or conversions) over its won auctions and
    ``expected`` (A,) the model's predicted total for the same auctions. Audience
    a's factor is (observed + tau * g) / (expected + tau), where g is the factor
    of the whole log and tau = 20 expected events: large audiences follow their
    own totals, small ones the log's.
    """
    overall = observed.sum() / max(expected.sum(), 1e-12)
    return (observed + _ANCHOR_EVENTS * overall) / (expected + _ANCHOR_EVENTS)


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


def fit_market(
    events: pd.DataFrame,
    p_click: np.ndarray,
    p_conversion: np.ndarray,
    auction_type: str | None = None,
    n_strata: int = N_STRATA,
    totals: LogTotals | None = None,
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
            "event log: some won auctions have cost 0 under second-price; a second-price win reveals a positive price. Check 'cost', or train with --auction-type first_price."
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
    fit = fit_landscapes(subsample(data))
    observed_clicks = np.array([totals.clicks[n] for n in names], float)
    observed_conv = np.array([totals.conversions[n] for n in names], float)
    click_factor = anchor_factors(
        observed_clicks, weight * np.bincount(codes[won], p_click[won], minlength=a)
    )
    expected_conv = weight * np.bincount(codes[won], p_conversion[won], minlength=a)
    conv_factor = anchor_factors(observed_conv, expected_conv)
    p_click = np.clip(p_click * click_factor[codes], 0.0, 1.0)
    p_conversion = np.minimum(p_conversion * conv_factor[codes], p_click)
    strata = _strata(codes, shift, p_click, p_conversion, a, n_strata)
    value, has_value = _value_per_conversion(totals, names)
    n_days = max(len(totals.days), 1)
    params = MarketParams(
        volume_per_day=jnp.asarray(weight * sampled / n_days),
        hour_profile=jnp.asarray(_hour_profiles(totals, names)),
        weight=jnp.asarray(strata["weight"]),
        p_click=jnp.asarray(strata["p_click"]),
        p_conv=jnp.asarray(strata["p_conv"]),
        value=jnp.asarray(np.repeat(value[:, None], n_strata, 1)),
        price_loc=jnp.asarray(
            fit["mu"][:, None] + fit["beta"][:, None] * strata["shift"]
        ),
        mix_weight=jnp.asarray(fit["weight"]),
        mix_loc=jnp.asarray(fit["loc"]),
        mix_scale=jnp.asarray(fit["scale"]),
    )
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
        "rate_spread": {head: fit.to_json() for head, fit in spreads.items()},
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
    return FittedMarket(
        names, auction_type, params, bid, spend, ceiling, has_value, metrics
    )


def save_market(model_dir: Path, market: FittedMarket) -> None:
    """Write market.json into ``model_dir`` (caller handles atomicity)."""
    data = {
        "format": "adplan-market/1",
        "audiences": market.names,
        "auction_type": market.auction_type,
        "has_value": market.has_value,
        "current_bid": market.current_bid.tolist(),
        "current_daily_spend": market.current_daily_spend.tolist(),
        "bid_ceiling": market.bid_ceiling.tolist(),
        "params": params_to_json(market.params),
        "metrics": market.metrics,
    }
    (Path(model_dir) / "market.json").write_text(json.dumps(data), encoding="utf-8")


def load_market(model_dir: str | Path) -> FittedMarket:
    """Read market.json from a model folder written by ``adplan train``."""
    path = Path(model_dir) / "market.json"
    if not path.is_file():
        raise InputError(
            f"model {model_dir}: no market.json. Train a model first: adplan train --events FILE --out {model_dir}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != "adplan-market/1":
            raise ValueError("unknown format")
        params = params_from_json(data["params"])
        a = len(data["audiences"])
        if (
            params.volume_per_day.shape != (a,)
            or params.weight.ndim != 2
            or params.weight.shape[0] != a
        ):
            raise ValueError("array shapes do not match the audience list")
        if not all(
            bool(jnp.all(jnp.isfinite(getattr(params, f.name))))
            for f in dataclasses.fields(params)
        ):
            raise ValueError("non-finite parameters")
        return FittedMarket(
            names=list(data["audiences"]),
            auction_type=data["auction_type"],
            params=params,
            current_bid=np.asarray(data["current_bid"], float),
            current_daily_spend=np.asarray(data["current_daily_spend"], float),
            bid_ceiling=np.asarray(data["bid_ceiling"], float),
            has_value=bool(data["has_value"]),
            metrics=data["metrics"],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"model {model_dir}: market.json is damaged or from another tool ({exc}). Retrain with adplan train."
        ) from exc
