"""Test-only simulator helpers."""

from __future__ import annotations

from optimizer.commands.simulate import _rate_draws, simulate_rate_draws


def simulate_with_rate_uncertainty(
    market, bid, budget, days, first_price, pacing, runs, seed
):
    """Replications in groups, each group on a market whose conversion rates are
    drawn from what the log says about them (:func:`rate_draws`): the model's
    overall level, shared by every audience, each audience's own level, and
    how much better the pricier impressions convert. The spread then covers
    what the model does not know, not only auction luck."""
    return simulate_rate_draws(
        market,
        _rate_draws(market, runs, seed),
        bid,
        budget,
        days,
        first_price,
        pacing,
        runs,
        seed,
    )
