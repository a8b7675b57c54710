"""Hand-built markets for tests: random MarketParams with known structure."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from optimizer.market.fit import FittedMarket
from optimizer.market.landscape import LandscapeData
from optimizer.market.params import MarketParams


def random_market(
    seed: int,
    audiences: int = 5,
    strata: int = 3,
    components: int = 2,
    slope: float = 0.3,
) -> MarketParams:
    """A market with ``strata`` quality levels whose prices rise with quality."""
    rng = np.random.default_rng(seed)
    a, k = audiences, strata
    weight = rng.dirichlet(np.ones(k), a)
    p_click = rng.uniform(0.005, 0.03, (a, k))
    p_conv = p_click * rng.uniform(0.02, 0.1, (a, k))
    quality = np.log(p_conv) - np.log(p_conv).mean(1, keepdims=True)
    mix_weight = np.zeros((a, 2))
    mix_weight[:, 0] = 1.0
    if components == 2:
        mix_weight[:, 1] = rng.uniform(0.1, 0.4, a)
        mix_weight[:, 0] = 1 - mix_weight[:, 1]
    return MarketParams(
        volume_per_day=jnp.asarray(rng.uniform(100, 5000, a)),
        hour_profile=jnp.full((a, 24), 1 / 24),
        weight=jnp.asarray(weight),
        p_click=jnp.asarray(p_click),
        p_conv=jnp.asarray(p_conv),
        value=jnp.asarray(np.repeat(rng.uniform(20, 100, (a, 1)), k, 1)),
        price_loc=jnp.asarray(
            np.log(rng.uniform(0.002, 0.02, (a, 1))) + slope * quality
        ),
        mix_weight=jnp.asarray(mix_weight),
        mix_loc=jnp.asarray(np.stack([np.zeros(a), rng.uniform(0.5, 1.2, a)], 1)),
        mix_scale=jnp.asarray(
            np.stack([rng.uniform(0.3, 0.8, a), rng.uniform(0.2, 0.4, a)], 1)
        ),
    )


def sample_prices(
    params: MarketParams, a: int, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """n competing prices of audience ``a`` and the stratum of each auction."""
    k = rng.choice(
        params.weight.shape[1],
        n,
        p=np.asarray(params.weight[a]) / float(params.weight[a].sum()),
    )
    j = rng.choice(2, n, p=np.asarray(params.mix_weight[a]))
    loc = np.asarray(params.price_loc[a])[k] + np.asarray(params.mix_loc[a])[j]
    return np.exp(loc + np.asarray(params.mix_scale[a])[j] * rng.standard_normal(n)), k


def fitted_market(
    seed: int,
    audiences: int = 4,
    auction_type: str = "second_price",
    metrics: dict | None = None,
) -> FittedMarket:
    """:func:`random_market` as a fitted market: audiences aud0, aud1, ...; recent
    bids 0.01, recent spend 10 a day, default max bid 1, no revenue in the log."""
    a = audiences
    return FittedMarket(
        names=[f"aud{i}" for i in range(a)],
        auction_type=auction_type,
        params=random_market(seed, audiences=a),
        current_bid=np.full(a, 0.01),
        current_daily_spend=np.full(a, 10.0),
        bid_ceiling=np.full(a, 1.0),
        has_value=False,
        metrics=metrics or {},
    )


def second_price_rows(
    audience: np.ndarray, log_bid: np.ndarray, log_price: np.ndarray
) -> LandscapeData:
    """Second-price landscape rows: won where the bid beats the price, whose log
    is then the observed cost (no quality shift)."""
    won = log_bid > log_price
    return LandscapeData(
        audience=audience.astype(np.int32),
        log_bid=log_bid,
        log_cost=np.where(won, log_price, 0.0),
        won=won,
        shift=np.zeros(len(audience)),
        n_audiences=int(audience.max()) + 1,
        first_price=False,
    )
