"""Conversion-rate uncertainty of a simulation: the rate posterior, its draws, the band.

The log's conversions say how far the rate network's overall level and each
audience's own level may be off, and the within-audience spread fit how much
better pricier impressions convert; both come from the market's
:class:`~optimizer.market.fit.RateEvidence`. The simulator replays a plan in
groups of runs, each group on a market whose conversion rates are one draw, and
splits the band's relative sd into rates and auction luck.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from optimizer.market.fit import ANCHOR_EVENTS, FittedMarket, RateEvidence
from optimizer.market.params import MarketParams, stratum_rated_wins, with_rule
from optimizer.market.spread import BOUNDS as SPREAD_BOUNDS
from simulations.simulator.run import simulate

_RATE_DRAWS = 20  # market draws per simulation when rate uncertainty is on
# Grids of the rate-level posterior (rate_level_posterior): the audience spread c
# (coefficient of variation of an audience's rate factor) from 0.1% to 1000%,
# and the log-wide level in posterior sds around its mode given c.
_CV_GRID = np.geomspace(1e-3, 10.0, 60)
_LEVEL_NODES = np.linspace(-6.0, 6.0, 41)
_LEVEL_PRIOR_SD = 1.0  # prior sd of log g, the log-wide level of the network's rates


def _evidence(market: FittedMarket) -> RateEvidence:
    """The market's rate evidence; for a market not fitted to a log, no
    conversions seen and neither expected conversions nor a spread fit."""
    if market.evidence is not None:
        return market.evidence
    return RateEvidence(np.zeros(len(market.names)), None, None)


def rate_uncertainty_shape(market: FittedMarket) -> np.ndarray:
    """(A,) Gamma shape k of each audience's conversion-rate multiplier (mean 1,
    relative sd 1/sqrt(k)): the log's conversions plus the anchoring prior.

    The audiences' multipliers are independent: this is the fallback of
    :func:`rate_uncertainty` for a market.json without the model's expected
    conversions (trained before they were stored).
    """
    return _evidence(market).conversions_observed + ANCHOR_EVENTS


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
    evidence = _evidence(market)
    if evidence.conversions_expected is None:
        return None
    return rate_level_posterior(
        evidence.conversions_observed, evidence.conversions_expected
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
    fit = _evidence(market).spread
    if fit is not None:
        out["quality_spread_sd"] = float(fit.sd / fit.slope)
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
    fit = _evidence(market).spread
    if fit is None or fit.sd <= 0:
        return np.ones((n, *params.p_conv.shape))
    drawn = np.clip(rng.normal(fit.slope, fit.sd, n), *SPREAD_BOUNDS)
    delta = drawn / fit.slope - 1.0
    p_conv = np.asarray(params.p_conv)
    live = p_conv > 0  # strata of zero rate (and padding) stay as they are
    log_p = np.log(np.where(live, p_conv, 1.0))
    weight = np.asarray(params.weight) * live
    centre = (weight * log_p).sum(-1) / np.maximum(weight.sum(-1), 1e-300)
    tilt = np.where(live, np.exp(delta[:, None, None] * (log_p - centre[:, None])), 1.0)
    flat = with_rule(params, None)  # the log's bids were flat
    at_bid = np.asarray(stratum_rated_wins(flat, market.current_bid)) * p_conv  # (A, K)
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
    conv = np.asarray(stratum_rated_wins(params, bid)) * np.asarray(params.p_conv)
    return (multipliers * conv).sum(-1) / np.maximum(conv.sum(-1), 1e-300)


def simulate_rate_draws(
    market, multipliers, bid, budget, days, first_price, pacing, runs, seed
):
    """Replications in groups, group g on the market whose conversion rates are
    multiplied by ``multipliers[g]``, per audience (G, A) or per stratum
    (G, A, K); ``runs`` are split evenly."""
    groups = len(multipliers)
    per_group = -(-runs // groups)
    parts = []
    p = market.params
    p_conv, p_click = np.asarray(p.p_conv), np.asarray(p.p_click)  # host, once
    for g, factor in enumerate(np.asarray(multipliers)):
        factor = factor if factor.ndim == 2 else factor[:, None]
        drawn = dataclasses.replace(
            p, p_conv=jax.device_put(np.minimum(p_conv * factor, p_click))
        )
        parts.append(
            simulate(
                jax.random.key(seed + 1000 * g),
                drawn,
                bid,
                budget,
                days,
                first_price=first_price,
                pacing=pacing,
                runs=per_group,
                # Only the first group's hourly paths are kept; the others skip
                # recording them (same outcomes, about a third less work).
                **({} if g == 0 else {"path_runs": 0}),
            )
        )
    joined = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:runs], *parts)
    return dataclasses.replace(
        joined,
        path_spend=parts[0].path_spend,
        path_conversions=parts[0].path_conversions,
    )


def rate_draws(market, groups: int, seed: int) -> np.ndarray:
    """(G, A, K) conversion-rate multipliers of the strata, one per group of
    runs: each audience's level (:func:`rate_uncertainty`) times the
    within-audience spread (:func:`spread_tilts`)."""
    rng = np.random.default_rng([seed, 7])
    levels = rate_uncertainty(market, rng, groups)
    return levels[:, :, None] * spread_tilts(market, rng, groups)


def simulate_with_rate_uncertainty(
    market, bid, budget, days, first_price, pacing, runs, seed
):
    """Replications in groups, each group on a market whose conversion rates are
    drawn from what the log says about them (:func:`rate_draws`): the model's
    overall level, shared by every audience, each audience's own level, and
    how much better the pricier impressions convert. The spread then covers
    what the model does not know, not only auction luck.

    Returns the replications and the band's parts: :func:`band_parts` and,
    where the market has them, the numbers of :func:`rate_uncertainty_summary`.
    """
    draws = rate_draws(market, min(_RATE_DRAWS, runs), seed)
    result = simulate_rate_draws(
        market, draws, bid, budget, days, first_price, pacing, runs, seed
    )
    factors = audience_factors(market.params, draws, bid)
    return result, band_parts(result, factors) | (
        rate_uncertainty_summary(market) or {}
    )


def band_parts(result, multipliers: np.ndarray) -> dict:
    """Relative sd (1 sd / mean) of total conversions from each source.

    ``rate``: the drawn conversion rates alone, i.e. the sd over groups of
    ``multipliers @ C`` with ``multipliers`` (G, A) each audience's factor on
    its conversions (:func:`audience_factors`) and C (A,) the mean conversions
    per audience; ``luck``:
    auction luck alone, the pooled sd of runs within a group (None with fewer
    than two runs per group).
    """
    conversions = np.asarray(result.conversions)
    runs, groups = conversions.shape[0], len(multipliers)
    per_group = -(-runs // groups)
    mean = conversions.mean(axis=0)
    rate = np.std(multipliers @ mean) / max(mean.sum(), 1e-300)
    luck = None
    if per_group >= 2:
        total = conversions.sum(axis=1)
        group = np.arange(runs) // per_group
        spread = total - (np.bincount(group, total) / np.bincount(group))[group]
        dof = max(runs - group.max() - 1, 1)
        luck = float(np.sqrt(np.sum(spread**2) / dof) / max(total.mean(), 1e-300))
    return {"rate_sd": float(rate), "luck_sd": luck}


def uncertainty_text(uncertainty: dict) -> str:
    """Plain words on what the simulated band holds (for the simulate output)."""
    luck = uncertainty.get("luck_sd")
    luck_part = "auction luck" + (
        f" (about +-{luck:.0%} on its own)" if luck is not None else ""
    )
    rate_part = (
        "what the log leaves open about conversion rates "
        f"(about +-{uncertainty['rate_sd']:.0%} for this plan)"
    )
    if "audience_spread" not in uncertainty:
        return (
            f"  uncertainty: the band holds {luck_part} and {rate_part}, each "
            "audience's rate drawn from how many conversions the log had for it. "
            "Retrain the model to also draw the overall conversion level."
        )
    quality = uncertainty.get("quality_spread_sd")
    quality_part = (
        ", and how much better an audience's pricier impressions convert (known "
        f"to about +-{quality:.0%}; it matters where the plan bids away from the log)"
        if quality is not None
        else ""
    )
    return (
        f"  uncertainty: the band holds {luck_part} and {rate_part}: their overall "
        "level, shared by every audience, and each audience's own level (audiences "
        f"depart from the model by about {uncertainty['audience_spread']:.0%}; the "
        f"log's {uncertainty['conversions_in_log']:,} conversions narrow that most "
        f"where an audience has many){quality_part}."
    )
