"""The daily report a platform would show for a synthetic market, and its truth.

The market is a first-price synthetic market (:mod:`simulations.synthetic.generate`).
Each day the platform bids for each ad set the flat bid that spends that day's
budget in expectation (budgets vary from day to day around the usual bid's spend,
as real ones do); impressions, clicks and conversions are drawn around the
expectation with a day-to-day volume shock. :func:`budget_outcomes` scores any
daily budget per ad set exactly under the truth, the same way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from optimizer.market.params import MarketParams, per_auction

_BUDGET_SD = 0.35  # sd of log daily budget around its ad set's usual spend
_VOLUME_SD = 0.08  # sd of the log day-to-day volume shock
_BISECTIONS = 60


@jax.jit
def _bisect(params: MarketParams, daily_budget: jax.Array) -> jax.Array:
    centre = params.mix_loc[:, 0] + jnp.mean(params.price_loc, axis=1)
    bounds = (centre - 12.0, centre + jnp.log(1000.0))

    def step(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        spend = params.volume_per_day * per_auction(params, jnp.exp(mid), True)[:, 1]
        over = spend > daily_budget
        return jnp.where(over, lo, mid), jnp.where(over, mid, hi)

    lo, hi = jax.lax.fori_loop(0, _BISECTIONS, step, bounds)
    return jnp.exp(0.5 * (lo + hi))


def bids_for_budgets(params: MarketParams, daily_budget: np.ndarray) -> np.ndarray:
    """(A,) the flat first-price bid whose expected spend per day is ``daily_budget``
    (at most 1,000x the median price: a budget no bid can spend buys all it can)."""
    return np.asarray(_bisect(params, jnp.asarray(daily_budget, jnp.float64)))


def budget_outcomes(
    params: MarketParams, daily_budget: np.ndarray, days: float
) -> dict[str, np.ndarray]:
    """Exact expected spend, impressions, clicks, conversions, value per ad set over
    ``days`` when the platform spends ``daily_budget`` (A,) per day."""
    budget = np.asarray(daily_budget, float)
    rates = np.asarray(
        per_auction(params, jnp.asarray(bids_for_budgets(params, budget)), True)
    )
    n = np.asarray(params.volume_per_day) * days
    out = {
        k: n * rates[:, i]
        for i, k in enumerate(
            ("impressions", "spend", "clicks", "conversions", "value")
        )
    }
    return {k: np.where(budget > 0, v, 0.0) for k, v in out.items()}


def usual_daily_budgets(params: MarketParams, usual_bids: np.ndarray) -> np.ndarray:
    """(A,) expected spend per day at each ad set's usual bid."""
    rates = np.asarray(per_auction(params, jnp.asarray(usual_bids), True))
    return np.asarray(params.volume_per_day) * rates[:, 1]


def daily_report(
    params: MarketParams,
    names: list[str],
    usual_bids: np.ndarray,
    days: int,
    seed: int,
    start: str,
) -> pd.DataFrame:
    """The platform's daily report (canonical columns, with ``daily_budget``)."""
    rng = np.random.default_rng([seed, 19])
    base = usual_daily_budgets(params, usual_bids)
    rows = []
    for t in range(days):
        budget = base * np.exp(rng.normal(0.0, _BUDGET_SD, len(names)))
        bid = bids_for_budgets(params, budget)
        rates = np.asarray(per_auction(params, jnp.asarray(bid), True))
        shock = np.exp(rng.normal(0.0, _VOLUME_SD, len(names)))
        mean = np.asarray(params.volume_per_day) * rates[:, 0] * shock
        impressions = rng.poisson(mean)
        p_click = rates[:, 2] / np.maximum(rates[:, 0], 1e-300)
        p_conv = rates[:, 3] / np.maximum(rates[:, 0], 1e-300)
        vpc = rates[:, 4] / np.maximum(rates[:, 3], 1e-300)
        clicks = rng.binomial(impressions, np.clip(p_click, 0, 1))
        conversions = rng.binomial(impressions, np.clip(p_conv, 0, 1))
        day = (pd.Timestamp(start) + pd.Timedelta(days=t)).strftime("%Y-%m-%d")
        for i, name in enumerate(names):
            rows.append(
                {
                    "date": day,
                    "audience": name,
                    "spend": round(float(impressions[i] * bid[i]), 2),
                    "impressions": int(impressions[i]),
                    "clicks": int(clicks[i]),
                    "conversions": int(conversions[i]),
                    "value": round(float(conversions[i] * vpc[i]), 2),
                    "daily_budget": round(float(budget[i]), 2),
                }
            )
    return pd.DataFrame(rows)
