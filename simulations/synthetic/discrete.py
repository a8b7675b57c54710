"""Exact optimal plan on a market with discrete prices (``--realism real``).

With every competing price on a finite set of points, what a bid buys is a step
function: only the bids just above a price point matter. For a budget price lam
each audience takes the candidate (no bid, or just above one of its price points)
maximizing gain - lam * spend, exactly; a bisection on lam finds the lowest price
whose plan fits the budget, and the budget left over goes to the audiences on the
margin (the last one throttled by a budget cap). The objective is within one
audience's step of the Lagrangian bound; ``dual_price`` is that lam.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from optimizer.allocate.exact import ExactSolution
from optimizer.market.params import MarketParams, per_auction

_ABOVE = 1e-4  # candidate bids sit this far (relative) above a price point


def _candidates(params: MarketParams, days: float, objective: str, first_price: bool):
    """(A, G+1) log bids, spends and gains: no bid, then just above each price."""
    price = np.exp(np.asarray(params.price_loc))  # (A, G)
    log_bid = np.concatenate(
        [np.log(price[:, :1]) - 1.0, np.log(price) + _ABOVE], axis=1
    )
    rates = jax.vmap(lambda u: per_auction(params, jnp.exp(u), first_price), 1, 1)(
        jnp.asarray(log_bid)
    )  # (A, G+1, 5)
    auctions = np.asarray(params.volume_per_day)[:, None] * days
    spend = auctions * np.asarray(rates[..., 1])
    gain = auctions * np.asarray(rates[..., 3 if objective == "conversions" else 4])
    return log_bid, spend, gain


def discrete_optimum(
    params: MarketParams,
    days: float,
    budget: float,
    objective: str,
    auction_type: str,
    steps: int = 200,
) -> ExactSolution:
    """The best plan of bids and budget caps for a total ``budget`` over ``days``."""
    log_bid, spend, gain = _candidates(
        params, days, objective, auction_type == "first_price"
    )
    rows = np.arange(len(spend))

    def choice(lam: float) -> np.ndarray:
        return np.argmax(gain - lam * spend, axis=1)

    ratio = gain[:, 1:] / np.maximum(spend[:, 1:], 1e-300)
    lo, hi = -40.0, float(np.log(max(ratio.max(), 1e-300))) + 1.0
    if spend[rows, choice(0.0)].sum() <= budget:
        hi = lo = -np.inf
    for _ in range(steps if np.isfinite(hi) else 0):
        mid = 0.5 * (lo + hi)
        lo, hi = (
            (mid, hi) if spend[rows, choice(np.exp(mid))].sum() > budget else (lo, mid)
        )
    pick, wider = choice(np.exp(hi)), choice(np.exp(lo))
    plan_spend, plan_gain = spend[rows, pick].copy(), gain[rows, pick].copy()
    bids = log_bid[rows, pick].copy()
    left = budget - plan_spend.sum()
    for a in np.flatnonzero(pick != wider):
        extra = spend[a, wider[a]] - plan_spend[a]
        if extra <= 0 or left <= 0:
            continue
        cap = plan_spend[a] + min(extra, left)
        throttled = gain[a, wider[a]] * cap / spend[a, wider[a]]
        if throttled > plan_gain[a]:
            left -= cap - plan_spend[a]
            plan_spend[a], plan_gain[a], bids[a] = cap, throttled, log_bid[a, wider[a]]
    lam = float(np.exp(hi)) if np.isfinite(hi) else 0.0
    return ExactSolution(
        log_bid=jnp.asarray(bids),
        spend=jnp.asarray(plan_spend),
        gain=jnp.asarray(plan_gain),
        dual_price=jnp.asarray(lam),
        objective=jnp.asarray(plan_gain.sum()),
    )
