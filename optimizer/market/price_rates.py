"""Outcome rates that rise (or fall) with the price paid, beyond the rate network.

On real exchanges cheap auctions click at a fraction of the average rate even
among impressions the features call alike: the competing bidders see quality the
log does not. Per audience a, a won impression i of price P_i clicks with
probability

    p_i x c_a x (P_i / exp(r_a))^g_a,

p_i the network's click rate, r_a the audience's mean log price paid and c_a a
level (profiled out: :func:`~optimizer.market.fit.anchor_factors` sets it). g_a
is fitted on the won impressions of a second-price log, where a won auction's
cost is its price, in two steps: each audience's Poisson likelihood in g (level
profiled out, a weak prior of sd ``SLOPE_BOUND``) by Newton, then a normal
hierarchy over the audiences, g_a ~ N(pooled, spread^2) with the pooled slope
~ N(0, ``POOLED_SD``^2), whose spread is chosen by marginal likelihood
(empirical Bayes, 0 to ``MAX_SPREAD``). Each audience's slope is its posterior
mean: where the audiences' estimates differ no more than their noise, every
audience gets the pooled slope, and a log whose prices say nothing about the
rates gives ~0 (a noisy estimate would move bids for nothing).

A first-price log does not reveal the price of a won auction (the cost is the
bid), so :func:`fit_first_price_rates` fits the same g from how the click rate of
won impressions moves with the bid: a win at bid b is an impression priced below
b, and under the fitted landscape its expected multiplier is
E[(P / exp(r_a))^g | P < b] (closed form per log-normal component). A log whose
bids barely vary within an audience says little, and the slope stays near the
pooled one with a wide stated uncertainty. Conversions follow the clicks' slope
(they are clicks times a post-click rate).
"""

from __future__ import annotations

import dataclasses

import numpy as np

POOLED_SD = 1.0  # prior sd of the pooled slope around 0
MAX_SPREAD = 1.0  # largest sd of the audiences' slopes around the pooled one
SLOPE_BOUND = 2.0  # |g| never above this (the closed forms stay tame)
_ITERATIONS = 40
_SPREADS = np.linspace(0.0, MAX_SPREAD, 101)


@dataclasses.dataclass(frozen=True)
class PriceRates:
    """Fitted slopes of outcome rates on log price, per audience (A,).

    Attributes:
        slope: g_a, rate x (price / exp(ref))^g (log rate per log price).
        sd: posterior standard deviation of g_a.
        ref: r_a, mean log price paid per impression (currency).
        pooled: the pooled slope every audience is shrunk toward.
        spread: sd of the audiences' slopes around ``pooled`` (empirical Bayes).
        events: clicks (or conversions) the fit rests on, per audience.
        estimated: False where the log cannot say (first price, no events).
        why: planner-facing reason when not estimated ("" when estimated).
    """

    slope: np.ndarray
    sd: np.ndarray
    ref: np.ndarray
    pooled: float
    spread: float
    events: np.ndarray
    estimated: bool
    why: str = ""

    def multiplier(self, codes: np.ndarray, log_price: np.ndarray) -> np.ndarray:
        """(n,) rate multiplier of rows of audiences ``codes`` at ``log_price``."""
        return np.exp(self.slope[codes] * (log_price - self.ref[codes]))

    def to_json(self, names: list[str]) -> dict:
        """market.json's ``price_rates`` entry: the pool and each audience."""
        return {
            "estimated": self.estimated,
            **({"why": self.why} if self.why else {}),
            "pooled_slope": self.pooled,
            "spread": self.spread,
            "audiences": {
                name: {
                    "slope": float(self.slope[i]),
                    "sd": float(self.sd[i]),
                    "reference_price": float(np.exp(self.ref[i])),
                    "events": int(self.events[i]),
                    "doubling_factor": float(2.0 ** self.slope[i]),
                }
                for i, name in enumerate(names)
            },
        }


NO_CLICKS = (
    "The log has no clicks on won impressions, so the plan assumes click and "
    "conversion rates do not change with the price."
)


def no_price_rates(ref: np.ndarray, why: str) -> PriceRates:
    """Slopes of 0 (nothing estimated, for reason ``why``) at reference log prices
    ``ref`` (A,)."""
    a = len(ref)
    zero = np.zeros(a)
    return PriceRates(zero, zero, ref, 0.0, 0.0, zero, False, why)


def fit_price_rates(
    codes: np.ndarray,
    log_price: np.ndarray,
    events: np.ndarray,
    rate: np.ndarray,
    n_audiences: int,
) -> PriceRates:
    """Hierarchical fit of each audience's slope g_a on its won impressions.

    Args:
        codes: (n,) audience index of each won impression.
        log_price: (n,) log price paid (second price: the cost).
        events: (n,) clicks (0/1) of each impression.
        rate: (n,) the network's click probability of each impression.
        n_audiences: A.

    With the level profiled out, audience a's log-likelihood in g has gradient
    C_a (mean x over events - mean x under weights p e^{g x}) and curvature
    -C_a Var(x), x = log price - r_a, C_a the audience's events.
    """
    a = n_audiences
    ref, total = _reference_and_events(codes, log_price, events, a)
    if total.sum() == 0:
        return no_price_rates(ref, NO_CLICKS)
    x = log_price - ref[codes]
    event_mean = np.bincount(codes, events * x, minlength=a) / np.maximum(total, 1)
    weak = 1.0 / SLOPE_BOUND**2
    slope = np.zeros(a)
    for _ in range(_ITERATIONS):
        w = rate * np.exp(slope[codes] * x)
        mass = np.maximum(np.bincount(codes, w, minlength=a), 1e-300)
        mean = np.bincount(codes, w * x, minlength=a) / mass
        var = np.bincount(codes, w * x * x, minlength=a) / mass - mean**2
        curv = total * np.maximum(var, 0.0) + weak
        step = (total * (event_mean - mean) - weak * slope) / curv
        slope = np.clip(slope + step, -SLOPE_BOUND, SLOPE_BOUND)
    g, sd, pooled, spread = _shrink(slope, 1.0 / curv)
    return PriceRates(g, sd, ref, pooled, spread, total, True)


def fit_first_price_rates(
    codes: np.ndarray,
    log_bid: np.ndarray,
    centre: np.ndarray,
    scale: np.ndarray,
    weight: np.ndarray,
    events: np.ndarray,
    rate: np.ndarray,
    n_audiences: int,
) -> PriceRates:
    """The slopes g_a from the won impressions of a first-price log.

    Args:
        codes: (n,) audience index of each won impression.
        log_bid: (n,) log bid (first price: the price paid).
        centre, scale, weight: (n, J) the fitted landscape of each row: log-price
            location, scale and share of each component.
        events: (n,) clicks (0/1). rate: (n,) the network's click probability.
        n_audiences: A.

    Row i's multiplier is R_i(g) = E[(P / exp(r_a))^g | P < bid_i], r_a the
    audience's mean log bid; the profiled log-likelihood per audience,
    sum_i y_i log R_i - C_a log sum_i p_i R_i, is maximized by Newton steps with
    central-difference derivatives (one slope per audience, so three passes over
    the rows per step).
    """
    a = n_audiences
    ref, total = _reference_and_events(codes, log_bid, events, a)
    if total.sum() == 0:
        return no_price_rates(ref, NO_CLICKS)
    x, d, log_w, base = _first_price_terms(ref[codes], log_bid, centre, scale, weight)
    log_rate = np.log(np.maximum(rate, 1e-300))
    weak = 1.0 / SLOPE_BOUND**2

    def loglik(g: np.ndarray) -> np.ndarray:
        log_r = _log_rated_share(g[codes][:, None], x, d, scale, log_w) - base
        top = log_rate + log_r
        peak = np.full(a, -np.inf)
        np.maximum.at(peak, codes, top)
        mass = np.bincount(codes, np.exp(top - peak[codes]), minlength=a)
        return (
            np.bincount(codes, events * log_r, minlength=a)
            - total * (np.log(np.maximum(mass, 1e-300)) + peak)
            - 0.5 * weak * g**2
        )

    slope, h = np.zeros(a), 1e-4
    for _ in range(_ITERATIONS):
        mid, up, down = loglik(slope), loglik(slope + h), loglik(slope - h)
        grad = (up - down) / (2 * h)
        curv = np.maximum(-(up - 2 * mid + down) / h**2, weak)
        step = np.clip(grad / curv, -0.5, 0.5)
        slope = np.clip(slope + step, -SLOPE_BOUND, SLOPE_BOUND)
        if np.max(np.abs(step)) < 1e-7:
            break
    mid, up, down = loglik(slope), loglik(slope + h), loglik(slope - h)
    curv = np.maximum(-(up - 2 * mid + down) / h**2, weak)
    g, sd, pooled, spread = _shrink(slope, 1.0 / curv)
    return PriceRates(g, sd, ref, pooled, spread, total, True)


def expected_multiplier(
    rates: PriceRates,
    codes: np.ndarray,
    log_bid: np.ndarray,
    centre: np.ndarray,
    scale: np.ndarray,
    weight: np.ndarray,
) -> np.ndarray:
    """(n,) E[(P / exp(r))^g | P < bid] of won first-price rows under the landscape
    (arguments as in :func:`fit_first_price_rates`): the rows' multipliers."""
    x, d, log_w, base = _first_price_terms(
        rates.ref[codes], log_bid, centre, scale, weight
    )
    g = rates.slope[codes][:, None]
    return np.exp(_log_rated_share(g, x, d, scale, log_w) - base)


def _reference_and_events(
    codes: np.ndarray, log_price: np.ndarray, events: np.ndarray, a: int
) -> tuple[np.ndarray, np.ndarray]:
    """(A,) each audience's mean log price paid (the reference r_a) and its events."""
    count = np.maximum(np.bincount(codes, minlength=a), 1)
    ref = np.bincount(codes, log_price, minlength=a) / count
    return ref, np.bincount(codes, events, minlength=a)


def _first_price_terms(
    ref: np.ndarray,
    log_bid: np.ndarray,
    centre: np.ndarray,
    scale: np.ndarray,
    weight: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per won row of reference ``ref`` (n,): component locations minus it x,
    standardized log bids d, log shares (n, J) and the log won share (n,)."""
    x = centre - ref[:, None]
    d = (log_bid[:, None] - centre) / scale
    log_w = np.log(np.maximum(weight, 1e-300))
    base = _log_rated_share(np.zeros((len(ref), 1)), x, d, scale, log_w)
    return x, d, log_w, base


def _log_rated_share(
    g: np.ndarray, x: np.ndarray, d: np.ndarray, scale: np.ndarray, log_w: np.ndarray
) -> np.ndarray:
    """(n,) log E[(P / exp(r))^g ; P < bid] over a row's log-normal components:
    slopes g (n, 1), locations minus r x, standardized log bids d, scales and log
    shares (n, J) (the closed form of :func:`optimizer.market.params.rated_share`)."""
    from scipy.special import log_ndtr, logsumexp  # here: plans never import scipy

    return logsumexp(
        log_w + g * x + 0.5 * (g * scale) ** 2 + log_ndtr(d - g * scale), axis=1
    )


def _shrink(
    estimate: np.ndarray, noise: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Normal-normal empirical Bayes: estimates (A,) with noise variances (A,)
    to posterior means and sds, the pooled slope and the spread."""

    def pool(spread):
        w = 1.0 / (noise + spread**2)
        precision = w.sum() + 1.0 / POOLED_SD**2
        return float(np.sum(w * estimate) / precision), 1.0 / precision

    def marginal(spread):
        mu, mu_var = pool(spread)
        total = noise + spread**2
        # The pooled slope integrated out (its prior included): a restricted likelihood.
        return -0.5 * (
            np.sum(np.log(total) + (estimate - mu) ** 2 / total)
            + mu**2 / POOLED_SD**2
            - np.log(mu_var)
        )

    spread = float(_SPREADS[np.argmax([marginal(t) for t in _SPREADS])])
    mu, mu_var = pool(spread)
    if spread == 0.0:
        return np.full(len(estimate), mu), np.full(len(estimate), mu_var**0.5), mu, 0.0
    keep = noise / (noise + spread**2)  # share of the pooled slope in each posterior
    post = (1 - keep) * estimate + keep * mu
    var = keep * spread**2 + keep**2 * mu_var
    return post, np.sqrt(var), mu, spread


def _doubling(slope: float, sd: float) -> tuple[float, float, float]:
    """Rate multiplier when the price doubles: estimate and P10-P90 (2^(g -+ 1.28 sd))."""
    z = 1.2816 * sd
    return 2.0**slope, 2.0 ** (slope - z), 2.0 ** (slope + z)


def price_rate_summary(entry: dict | None, names: list[str]) -> dict:
    """plan.json's ``price_rates``: per audience in ``names``, how strongly its click
    and conversion rates rise with the price paid and how sure the fit is.

    ``entry`` is market.json's ``metrics.price_rates`` (None: a model trained
    before price rates).
    """
    if not entry:
        return {
            "estimated": False,
            "says": "This model was trained before adplan fitted how outcome rates "
            "change with the price; retrain it to fit that.",
            "audiences": {},
        }
    if not entry.get("estimated"):
        return {
            "estimated": False,
            "says": entry.get("why", NO_CLICKS),
            "audiences": {},
        }
    audiences = {}
    for name in names:
        fit = entry["audiences"].get(name)
        if fit is None:
            continue
        mid, low, high = _doubling(fit["slope"], fit["sd"])
        audiences[name] = {
            **fit,
            "reference_cpm": 1000.0 * fit["reference_price"],
            "doubling_factor_p10": low,
            "doubling_factor_p90": high,
            "says": f"impressions that cost twice as much click and convert "
            f"{mid:.2f}x as often (P10-P90 {low:.2f}x-{high:.2f}x, from "
            f"{fit['events']:,} clicks), beyond what the rate network predicts",
        }
    mid = 2.0 ** entry["pooled_slope"]
    pooling = (
        "the audiences' own estimates differ no more than their noise, so every "
        "audience uses that."
        if entry.get("spread") == 0.0
        else "audiences with few clicks are pulled toward that."
    )
    return {
        "estimated": True,
        "says": "A won impression's click and conversion rate is the rate "
        "network's prediction x (price paid / reference price)^slope; "
        "doubling_factor = 2^slope is the change when the price doubles. Across "
        f"audiences, impressions that cost twice as much convert {mid:.2f}x as "
        f"often; {pooling}",
        "pooled_slope": entry["pooled_slope"],
        "pooled_doubling_factor": mid,
        "spread": entry.get("spread"),
        "audiences": audiences,
    }
