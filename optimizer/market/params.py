"""Market model: what a bid buys in each audience, as pure, differentiable JAX.

Each audience's auctions are a mixture of impression *strata* k (share ``weight``),
each with its own click and conversion probability and value, and a competing
price whose logarithm is normal: ``log P ~ N(price_loc[k] + mix_loc[j], mix_scale[j])``
with mixture component j (share ``mix_weight``). One component with weight 1 is
the plain log-normal landscape; strata whose ``price_loc`` rises with quality
model "better impressions cost more". The synthetic market's truth and the model
fitted from a log share this form, so every stage can be scored against the truth.

For a bid b (currency per impression), with d = (log b - m) / s:
  win rate          = sum_kj w_k pi_j Phi(d)
  second-price cost = sum_kj w_k pi_j exp(m + s^2/2) Phi(d - s)   (partial expectation)
  first-price cost  = b * win rate
  conversions       = sum_kj w_k pi_j p_conv_k Phi(d)             (per auction)
all multiplied by the auctions over the horizon. Where outcome rates rise with the
price beyond the strata (``rate_slope`` g, reference log price r), a won impression
of price P clicks and converts at its stratum's rate x (P / e^r)^g, so clicks,
conversions and value use the tilted share
  E[(P / e^r)^g ; P < b] = exp(g (m - r) + g^2 s^2 / 2) Phi(d - g s)
in place of Phi(d) (at g = 0 the two agree). A budget cap below the uncapped
spend throttles participation uniformly: outcomes scale by cap / spend.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from optimizer import devices

MONEY = jnp.float64


@devices.exportable
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MarketParams:
    """Per-audience market, leading axis A = audiences, K = strata, J = price components.

    Attributes:
        volume_per_day: (A,) auctions per day.
        hour_profile: (A, 24) share of a day's auctions in each hour (rows sum to 1).
        weight: (A, K) share of auctions in each stratum (rows sum to 1; padding 0).
        p_click: (A, K) click probability per won impression.
        p_conv: (A, K) conversion probability per won impression (click x post-click).
        value: (A, K) value per conversion, currency.
        price_loc: (A, K) stratum shift of log competing price.
        mix_weight: (A, J) price-component shares (rows sum to 1).
        mix_loc: (A, J) component location of log price.
        mix_scale: (A, J) component standard deviation of log price (> 0).
        log_bid_factor: (A, K) log bid multiplier of each stratum under a bid rule
            (bid in stratum k = base bid x exp(factor)); None = one flat bid.
        log_bid_cap: (A,) log max bid per impression applied per stratum under a
            rule (base x factor never above it); None = no cap inside the market.
        rate_slope: (A,) g, how outcome rates scale with the price paid: a won
            impression of price P has rate x (P / exp(rate_ref))^g; None = 0.
        rate_ref: (A,) reference log price (currency per impression) of
            ``rate_slope``; None with it.
    """

    volume_per_day: jax.Array
    hour_profile: jax.Array
    weight: jax.Array
    p_click: jax.Array
    p_conv: jax.Array
    value: jax.Array
    price_loc: jax.Array
    mix_weight: jax.Array
    mix_loc: jax.Array
    mix_scale: jax.Array
    log_bid_factor: jax.Array | None = None
    log_bid_cap: jax.Array | None = None
    rate_slope: jax.Array | None = None
    rate_ref: jax.Array | None = None

    @property
    def n_audiences(self) -> int:
        return self.volume_per_day.shape[0]

    def take(self, index: jax.Array) -> MarketParams:
        """Audiences selected (and reordered) by ``index``."""
        return jax.tree_util.tree_map(lambda x: x[index], self)


@devices.exportable
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Outcomes:
    """Expected outcomes over the horizon, each (A,) (or broadcast batch) float64."""

    auctions: jax.Array
    impressions: jax.Array
    spend: jax.Array
    clicks: jax.Array
    conversions: jax.Array
    value: jax.Array

    def totals(self) -> dict[str, jax.Array]:
        """Spend, conversions and value summed over audiences (the last axis)."""
        return {
            name: jnp.sum(getattr(self, name), axis=-1)
            for name in ("spend", "conversions", "value")
        }

    def scale(self, factor: jax.Array) -> Outcomes:
        """Every outcome but auctions multiplied by ``factor`` (throttling)."""
        return Outcomes(
            self.auctions,
            *(
                factor * x
                for x in (
                    self.impressions,
                    self.spend,
                    self.clicks,
                    self.conversions,
                    self.value,
                )
            ),
        )


def stratum_log_bids(
    p: MarketParams, log_bid: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One audience's (K,) log bid per stratum at base log bid ``log_bid`` and
    (K,) 1.0 where it moves with the base (0.0 where the max bid caps it).

    Without a rule (``log_bid_factor`` None) every stratum bids the base."""
    k = p.weight.shape[0]
    if p.log_bid_factor is None:
        return jnp.broadcast_to(log_bid, (k,)), jnp.ones(k)
    ub = log_bid + p.log_bid_factor
    if p.log_bid_cap is None:
        return ub, jnp.ones(k)
    return jnp.minimum(ub, p.log_bid_cap), (ub < p.log_bid_cap).astype(ub.dtype)


def price_cells(
    p: MarketParams, log_bid: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One audience's (K, J) cells of stratum k x price component j at a bid:
    standardized log bid d, log-price location m, scale s and joint share w.

    Under a bid rule stratum k bids ``log_bid + log_bid_factor[k]`` (capped)."""
    m = p.price_loc[:, None] + p.mix_loc[None, :]
    s = jnp.broadcast_to(p.mix_scale[None, :], m.shape)
    w = p.weight[:, None] * p.mix_weight[None, :]
    if p.log_bid_factor is not None:
        log_bid = stratum_log_bids(p, log_bid)[0][:, None]
    return (log_bid - m) / s, m, s, w


def rated_share(p: MarketParams, d: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
    """(K, J) per cell: the won share weighted by the price-rate multiplier,
    E[(P / exp(rate_ref))^g ; P < bid] per unit share (Phi(d) when g is None)."""
    if p.rate_slope is None:
        return ndtr(d)
    g = p.rate_slope
    return jnp.exp(g * (m - p.rate_ref) + 0.5 * (g * s) ** 2) * ndtr(d - g * s)


def _stratum_rated_wins(p: MarketParams, bid: jax.Array) -> jax.Array:
    d, m, s, w = price_cells(p, jnp.log(bid))
    return jnp.sum(w * rated_share(p, d, m, s), axis=1)


@jax.jit
def stratum_rated_wins(params: MarketParams, bid: jax.Array) -> jax.Array:
    """(A, K) won share of each stratum weighted by the price-rate multiplier at
    base ``bid`` (A,): times ``p_conv`` it is the stratum's conversions per auction."""
    return jax.vmap(_stratum_rated_wins)(params, jnp.asarray(bid, MONEY))


def _per_auction(p: MarketParams, bid: jax.Array, first_price: bool) -> jax.Array:
    """Per-auction (win, spend, clicks, conversions, value) for one audience.

    ``p`` holds one audience (fields without the A axis); ``bid`` is a scalar.
    Returns a (5,) array.
    """
    d, m, s, w = price_cells(p, jnp.log(bid))
    win_k = jnp.sum(w * ndtr(d), axis=1)  # (K,) joint share won per stratum
    win = jnp.sum(win_k)
    if first_price and p.log_bid_factor is not None:
        spend = jnp.sum(jnp.exp(stratum_log_bids(p, jnp.log(bid))[0]) * win_k)
    elif first_price:
        spend = bid * win
    else:
        spend = jnp.sum(w * jnp.exp(m + 0.5 * s**2) * ndtr(d - s))
    rated_k = win_k if p.rate_slope is None else jnp.sum(w * rated_share(p, d, m, s), 1)
    clicks = jnp.sum(rated_k * p.p_click)
    conversions = jnp.sum(rated_k * p.p_conv)
    value = jnp.sum(rated_k * p.p_conv * p.value)
    return jnp.stack([win, spend, clicks, conversions, value])


@jax.jit(static_argnames="first_price")
def per_auction(
    params: MarketParams, bid: jax.Array, first_price: bool = False
) -> jax.Array:
    """(A, 5) per-auction win rate, spend, clicks, conversions, value at ``bid`` (A,)."""
    return jax.vmap(_per_auction, in_axes=(0, 0, None))(params, bid, first_price)


@jax.jit(static_argnames="first_price")
def expected_outcomes(
    params: MarketParams,
    bid: jax.Array,
    days: jax.Array | float,
    budget: jax.Array | None = None,
    first_price: bool = False,
) -> Outcomes:
    """Expected outcomes over ``days`` at ``bid`` (A,), optionally capped by ``budget`` (A,).

    With a cap below the uncapped spend the campaign joins a uniform random share
    cap / spend of the auctions, so every outcome scales by that share.
    """
    rates = per_auction(params, jnp.asarray(bid, MONEY), first_price)
    auctions = params.volume_per_day * days
    out = Outcomes(auctions, *(auctions * rates[:, i] for i in range(5)))
    if budget is None:
        return out
    share = jnp.where(out.spend > budget, budget / jnp.maximum(out.spend, 1e-300), 1.0)
    return out.scale(share)


@jax.jit
def shift_market(
    params: MarketParams,
    price_shift: jax.Array | float = 0.0,
    rate_shift: jax.Array | float = 0.0,
) -> MarketParams:
    """The market after a what-if shock.

    Args:
        price_shift: relative change of competing prices (0.15 = +15%), scalar or (A,).
        rate_shift: relative change of the conversion rate, scalar or (A,).
    """
    log_shift = jnp.log1p(jnp.asarray(price_shift, MONEY))
    rate = 1.0 + jnp.asarray(rate_shift, MONEY)
    rate = jnp.broadcast_to(rate, params.volume_per_day.shape)[:, None]
    log_shift = jnp.broadcast_to(log_shift, params.volume_per_day.shape)
    # The same impressions cost more: each keeps its rate, so the rate's
    # reference price moves with the prices.
    ref = None if params.rate_ref is None else params.rate_ref + log_shift
    return dataclasses.replace(
        params,
        mix_loc=params.mix_loc + log_shift[:, None],
        p_conv=jnp.clip(params.p_conv * rate, 0.0, params.p_click),
        rate_ref=ref,
    )


def as_flat_rule(params: MarketParams, strata: int) -> MarketParams:
    """The flat market ``params`` (no rule, K <= ``strata`` strata) in the shape of a
    bid-rule market of ``strata`` strata: the added strata have weight 0 (their
    rates and prices repeat the last stratum's, finite) and every stratum bids the
    base (log factor 0, no cap). It prices, plans and forecasts as ``params`` up to
    the order of sums, and runs the rule market's compiled programs."""
    extra = strata - params.weight.shape[1]

    def pad(x, zero=False):
        x = np.asarray(x)
        tail = np.zeros_like(x[:, :1]) if zero else x[:, -1:]
        return np.concatenate([x, np.repeat(tail, extra, axis=1)], axis=1)

    fields = {
        name: pad(getattr(params, name), zero=name == "weight")
        for name in ("weight", "p_click", "p_conv", "value", "price_loc")
    }
    flat = dataclasses.replace(params, **jax.device_put(fields))
    return with_rule(flat, jax.device_put(np.zeros_like(fields["weight"])))


def with_rule(
    params: MarketParams,
    log_bid_factor: jax.Array | None,
    max_bid: jax.Array | None = None,
) -> MarketParams:
    """``params`` bidding base x exp(log_bid_factor) (A, K) per stratum, each stratum's
    bid capped at ``max_bid`` (A,) currency per impression (None: no cap)."""
    if log_bid_factor is None:
        return dataclasses.replace(params, log_bid_factor=None, log_bid_cap=None)
    cap = None if max_bid is None else jnp.log(jnp.asarray(max_bid, MONEY))
    return dataclasses.replace(
        params, log_bid_factor=jnp.asarray(log_bid_factor, MONEY), log_bid_cap=cap
    )
