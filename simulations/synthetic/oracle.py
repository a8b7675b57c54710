"""Truth oracles for bid rules: the per-impression optimum and any rule's exact outcome.

Under the truth every stratum of :meth:`Truth.market_params` is one kind of
impression (a feature combination and a quadrature node of the numeric feature).
In a second-price auction the best bid for an impression is its expected
objective divided by one budget price lambda: bid_k = g_k / lambda (g_k =
p_conv_k, x value for the value objective, p_click for clicks). That is a bid
rule with log factors log g_k and one base bid per audience; with spend bounds
the bases differ (each audience's own KKT price), which the exact solver finds
by bisection on lambda. In first-price auctions the same form is the best
*proportional* rule (bid shading is not modelled), still exact among those.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd

from optimizer.allocate.config import SolveConfig
from optimizer.allocate.exact import ExactSolution, solve_exact
from optimizer.allocate.problem import make_problem
from optimizer.errors import InputError
from optimizer.market.params import MarketParams, Outcomes, expected_outcomes, with_rule
from optimizer.market.rules import Rule
from simulations.synthetic.truth import Truth


def value_log_factor(params: MarketParams, objective: str) -> jnp.ndarray:
    """(A, K) log of each stratum's objective per won impression, centred so the
    auction-weighted mean is 0 (the per-impression optimum's bid multipliers)."""
    if objective == "clicks":
        g = params.p_click
    elif objective == "value":
        g = params.p_conv * params.value
    else:
        g = params.p_conv
    log_g = jnp.log(jnp.maximum(g, 1e-300))
    centre = jnp.sum(params.weight * log_g, axis=1, keepdims=True)
    return jnp.where(params.weight > 0, log_g - centre, 0.0)


def per_impression_optimum(
    truth: Truth,
    budget: float,
    days: float,
    objective: str = "conversions",
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> tuple[ExactSolution, MarketParams]:
    """The exact per-impression optimum under the truth, and the truth market
    bidding it (its ``log_bid_factor`` = the optimum's multipliers per stratum).

    Args:
        budget: total budget over ``days``, currency.
        lower, upper: (A,) spend bounds over the horizon, currency (None: none).
    """
    if truth.is_real:
        raise InputError(
            "the per-impression oracle needs a demo market (its strata are impressions); "
            "--realism real markets have price-point strata."
        )
    first_price = truth.auction_type == "first_price"
    return optimum_for_params(
        truth.market_params(), budget, days, objective, first_price, lower, upper
    )


def optimum_for_params(
    params: MarketParams,
    budget: float,
    days: float,
    objective: str = "conversions",
    first_price: bool = False,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> tuple[ExactSolution, MarketParams]:
    """:func:`per_impression_optimum` for a market whose strata are impression kinds."""
    ruled = with_rule(params, value_log_factor(params, objective))
    problem = make_problem(ruled, days, budget, lower, upper)
    return solve_exact(problem, SolveConfig(objective, first_price)), ruled


def truth_rule_market(truth: Truth, rule: Rule) -> MarketParams:
    """The truth market with ``rule``'s multipliers on every true impression kind.

    A rule on hour of day splits each stratum into 24 by the audience's hour
    profile (the truth's rates do not depend on the hour, its volume does)."""
    params = truth.market_params()
    k = params.weight.shape[1]
    cols = {
        f: np.asarray(levels)[truth._codes[f]] for f, levels in truth.features.items()
    }
    hourly = "hour_of_day" in rule.features
    if hourly:
        cols = {f: np.tile(v, 24) for f, v in cols.items()}
        cols["hour_of_day"] = np.repeat(np.arange(24).astype(str), k)
    n = len(next(iter(cols.values())))
    frame = pd.DataFrame(cols)
    factors = []
    for name in truth.audiences:
        frame["audience"] = name
        factors.append(rule.row_log_factor(frame)[0])
    log_factor = np.stack(factors).reshape(len(truth.audiences), n)
    if hourly:
        hour = np.asarray(params.hour_profile)
        params = MarketParams(
            volume_per_day=params.volume_per_day,
            hour_profile=params.hour_profile,
            weight=jnp.asarray(
                (hour[:, :, None] * np.asarray(params.weight)[:, None, :]).reshape(
                    len(hour), -1
                )
            ),
            **{
                f: jnp.tile(getattr(params, f), (1, 24))
                for f in ("p_click", "p_conv", "value", "price_loc")
            },
            mix_weight=params.mix_weight,
            mix_loc=params.mix_loc,
            mix_scale=params.mix_scale,
        )
    return with_rule(params, jnp.asarray(log_factor))


def rule_outcome(
    params: MarketParams,
    base_bid: np.ndarray,
    budget: np.ndarray | None,
    days: float,
    first_price: bool,
    max_bid: np.ndarray | None = None,
) -> Outcomes:
    """Exact expected outcomes (A,) of bidding base x factor in ``params``'s strata
    (a market from :func:`truth_rule_market`), capped per audience at ``budget``
    (A,) currency, each stratum's bid at most ``max_bid`` (A,)."""
    if max_bid is not None:
        params = with_rule(params, params.log_bid_factor, max_bid)
    cap = None if budget is None else jnp.asarray(budget, jnp.float64)
    return expected_outcomes(
        params, jnp.asarray(base_bid, jnp.float64), days, cap, first_price
    )
