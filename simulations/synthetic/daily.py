"""The daily report a platform would show for a synthetic market, and its truth.

The market is a first-price synthetic market (:mod:`simulations.synthetic.generate`).
Each day the platform bids for each ad set the flat bid that spends that day's
budget in expectation (budgets vary from day to day around the usual bid's spend,
as real ones do); impressions, clicks and conversions are drawn around the
expectation with a day-to-day volume shock (each ad set's own, times one all
share on that date, as a holiday or the platform's traffic would). :func:`budget_outcomes` scores any
daily budget per ad set exactly under the truth, the same way.

With :class:`DailyEffects` the report also has what platform exports show: the
auctions and the conversion rate vary by day of the week (one pattern for the
market), and each day's rows are split by a ``device`` breakdown whose levels
convert at different rates (each ad set with its own mix of devices; the ad
set's average rate is the market's). ``budget_outcomes`` then averages the
week's days (a horizon's days spread evenly over the week).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from optimizer.market.params import MarketParams, per_auction
from simulations.synthetic.generate import make_truth
from simulations.synthetic.truth import Truth

_BUDGET_SD = 0.35  # sd of log daily budget around its ad set's usual spend
_VOLUME_SD = 0.08  # sd of the log day-to-day volume shock of each ad set
SHARED_SD = 0.05  # sd of the log volume shock all ad sets share on a date
_BISECTIONS = 60
DEVICES = ("mobile", "desktop", "tablet")
_DEVICE_CONVERSION = np.array([0.75, 1.8, 1.1])  # before each ad set's normalization
_DEVICE_CLICK = np.array([1.1, 0.85, 1.0])


@dataclasses.dataclass(frozen=True)
class DailyEffects:
    """Day-of-week and device effects of a synthetic daily report (truth.json "daily").

    Attributes:
        weekday_volume: (7,) auctions multiplier, Monday first (mean 1).
        weekday_conversion: (7,) conversion-rate multiplier (mean 1).
        device_share: (A, 3) share of an ad set's impressions per device of ``DEVICES``.
        device_click: (A, 3) click-rate multiplier per device (share-weighted mean 1).
        device_conversion: (A, 3) conversion-rate multiplier (share-weighted mean 1).
    """

    weekday_volume: np.ndarray
    weekday_conversion: np.ndarray
    device_share: np.ndarray
    device_click: np.ndarray
    device_conversion: np.ndarray

    @classmethod
    def draw(cls, n: int, seed: int) -> DailyEffects:
        """Effects of a market of ``n`` ad sets: busier or quieter weekends, weaker
        weekend conversion, and a device mix per ad set."""
        rng = np.random.default_rng([seed, 23])
        weekend = (
            rng.uniform(0.65, 0.85) if rng.random() < 0.5 else rng.uniform(1.2, 1.45)
        )
        volume = np.exp(rng.normal(0.0, 0.04, 7)) * np.r_[np.ones(5), weekend, weekend]
        conversion = np.r_[np.ones(5), np.full(2, rng.uniform(0.7, 0.85))]
        share = rng.dirichlet([6.0, 3.0, 1.0], n)
        return cls(
            weekday_volume=volume / volume.mean(),
            weekday_conversion=conversion / conversion.mean(),
            device_share=share,
            device_click=_DEVICE_CLICK / (share @ _DEVICE_CLICK)[:, None],
            device_conversion=_DEVICE_CONVERSION
            / (share @ _DEVICE_CONVERSION)[:, None],
        )

    def take(self, order) -> DailyEffects:
        """The effects with their ad set rows in ``order`` (indices)."""
        return dataclasses.replace(
            self,
            device_share=self.device_share[order],
            device_click=self.device_click[order],
            device_conversion=self.device_conversion[order],
        )

    def to_json(self) -> dict:
        """The effects as plain lists (truth.json)."""
        return {k: np.asarray(v).tolist() for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> DailyEffects:
        """The effects from :meth:`to_json`'s lists."""
        fields = [f.name for f in dataclasses.fields(cls)]
        return cls(**{k: np.asarray(data[k], float) for k in fields})

    def on_weekday(self, params: MarketParams, weekday: int) -> MarketParams:
        """The market on one day of the week (0 = Monday)."""
        conv = float(self.weekday_conversion[weekday])
        return dataclasses.replace(
            params,
            volume_per_day=params.volume_per_day * float(self.weekday_volume[weekday]),
            p_conv=params.p_conv * conv,
        )


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


@jax.jit
def _day_outcomes(
    params: MarketParams, volume: jax.Array, conversion: jax.Array, budget: jax.Array
) -> jax.Array:
    """(D, A, 5) expected impressions, spend, clicks, conversions, value of one day
    per ad set on D kinds of day (auctions x ``volume`` (D,), conversion rates x
    ``conversion`` (D,)) when the platform spends ``budget`` (A,) on each."""

    def one(v, c):
        market = dataclasses.replace(
            params, volume_per_day=params.volume_per_day * v, p_conv=params.p_conv * c
        )
        rates = per_auction(market, _bisect(market, budget), True)
        out = market.volume_per_day[:, None] * rates
        return jnp.where(budget[:, None] > 0, out, 0.0)

    return jax.vmap(one)(volume, conversion)


def budget_outcomes(
    params: MarketParams,
    daily_budget: np.ndarray,
    days: float,
    effects: DailyEffects | None = None,
) -> dict[str, np.ndarray]:
    """Exact expected impressions, spend, clicks, conversions, value per ad set over
    ``days`` when the platform spends ``daily_budget`` (A,) per day (with
    ``effects``: the mean of the week's days, each at its own bid)."""
    ones = np.ones(1)
    volume = ones if effects is None else effects.weekday_volume
    conversion = ones if effects is None else effects.weekday_conversion
    per_day = np.asarray(
        _day_outcomes(
            params,
            jnp.asarray(volume, jnp.float64),
            jnp.asarray(conversion, jnp.float64),
            jnp.asarray(daily_budget, jnp.float64),
        )
    ).mean(axis=0)
    names = ("impressions", "spend", "clicks", "conversions", "value")
    return {k: per_day[:, i] * days for i, k in enumerate(names)}


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
    effects: DailyEffects | None = None,
    shared_sd: float = SHARED_SD,
) -> pd.DataFrame:
    """The platform's daily report (canonical columns, with ``daily_budget``; with
    ``effects``, a ``device`` column and one row per ad set, day and device;
    ``shared_sd``: sd of the log volume shock the ad sets share on a date)."""
    rng = np.random.default_rng([seed, 19])
    base = usual_daily_budgets(params, usual_bids)
    rows = []
    for t in range(days):
        date = pd.Timestamp(start) + pd.Timedelta(days=t)
        market = (
            params if effects is None else effects.on_weekday(params, date.weekday())
        )
        budget = base * np.exp(rng.normal(0.0, _BUDGET_SD, len(names)))
        bid = bids_for_budgets(market, budget)
        rates = np.asarray(per_auction(market, jnp.asarray(bid), True))
        shared = rng.normal(0.0, shared_sd) if shared_sd > 0 else 0.0
        shock = np.exp(shared + rng.normal(0.0, _VOLUME_SD, len(names)))
        mean = np.asarray(market.volume_per_day) * rates[:, 0] * shock
        impressions = rng.poisson(mean)
        p_click = rates[:, 2] / np.maximum(rates[:, 0], 1e-300)
        p_conv = rates[:, 3] / np.maximum(rates[:, 0], 1e-300)
        vpc = rates[:, 4] / np.maximum(rates[:, 3], 1e-300)
        if effects is None:
            split = impressions[:, None]
            click_rate, conv_rate = p_click[:, None], p_conv[:, None]
        else:
            split = np.stack(
                [
                    rng.multinomial(k, s)
                    for k, s in zip(impressions, effects.device_share, strict=True)
                ]
            )
            click_rate = p_click[:, None] * effects.device_click
            conv_rate = p_conv[:, None] * effects.device_conversion
        clicks = rng.binomial(split, np.clip(click_rate, 0, 1))
        conversions = rng.binomial(split, np.clip(conv_rate, 0, 1))
        day = date.strftime("%Y-%m-%d")
        for i, name in enumerate(names):
            for j in range(split.shape[1]):
                row = {
                    "date": day,
                    "audience": name,
                    "spend": round(float(split[i, j] * bid[i]), 2),
                    "impressions": int(split[i, j]),
                    "clicks": int(clicks[i, j]),
                    "conversions": int(conversions[i, j]),
                    "value": round(float(conversions[i, j] * vpc[i]), 2),
                    "daily_budget": round(float(budget[i]), 2),
                }
                if effects is not None:
                    row["device"] = DEVICES[j]
                rows.append(row)
    return pd.DataFrame(rows)


def synthetic_report(
    n: int,
    days: int,
    seed: int,
    with_effects: bool = True,
    shared_sd: float = SHARED_SD,
) -> tuple[Truth, pd.DataFrame, DailyEffects]:
    """A first-price synthetic market of ``n`` ad sets (its truth), the daily report
    the platform would show over ``days`` days (date as text), and the effects
    drawn for it (in the report only ``with_effects``; rows in the truth's order;
    ``shared_sd`` as in :func:`daily_report`)."""
    truth = Truth(make_truth(n, days, seed, "first_price", 0.0, "demo"))
    names = [a["audience"] for a in truth.data["audiences"]]
    effects = DailyEffects.draw(n, seed)
    report = daily_report(
        truth.market_params(),
        names,
        truth.usual_bids(),
        days,
        seed,
        truth.data["start"],
        effects if with_effects else None,
        shared_sd,
    )
    return truth, report, effects
