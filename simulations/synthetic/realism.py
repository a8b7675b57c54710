"""The real-world market shapes of ``adplan generate --realism real``.

Each audience's competing price is *discrete*, like a real exchange's integer CPM
prices: it takes the values ``p * unit`` for the integer CPM prices p of one of 8
real iPinYou campaigns' market-price histograms (``data/``), with that
histogram's shape. So the market has

- **atoms**: floor and round prices hold 6-14% of the auctions each;
- **a hard cap**: no price above the histogram's highest price (267-300 CPM);
- **a latent quality** q (5 levels, not written to any column of the log):
  level q tilts the price histogram towards dear prices
  (``h_q(p) ~ h(p) exp(tilt_q * s(p))``, s = the price's normal score, so atoms and
  cap stay where they are) and multiplies the click probability (hence also the
  conversion probability per impression) by ``click_multiplier[q]`` (mean 1);
- **drift**: over the log, volume grows geometrically by ``drift.volume`` and the
  price tilt moves linearly by ``drift.price_tilt``; the planned horizon is the
  market at the end of that trend (the day after the log).

Ties: the campaign wins an auction iff its bid is strictly above the price
(``bid > price``); at a bid equal to an atom's price it loses the atom's auctions.

As MarketParams (one stratum per price point, one price component of scale
``ATOM_SCALE`` placed ``TIE_SHIFT`` scales above the price) the closed forms are
exact up to bids within ``1e-5`` (relative) above an atom: features enter the
rates only through their audience mean (the price does not depend on them), so
conversions = sum_p win(p) * E[rate | price p] is exact.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
from scipy.special import ndtri

ATOM_SCALE = 1e-6  # log-price scale of an atom's component
TIE_SHIFT = 5.0  # atoms sit this many scales above their price: bid == price loses
LATENT_SHARES = [0.2, 0.2, 0.2, 0.2, 0.2]
_LATENT_STEPS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
_HISTOGRAMS = Path(__file__).with_name("data") / "ipinyou_price_histograms.json"


@cache
def real_histograms() -> dict[str, np.ndarray]:
    """Campaign id -> (301,) won-impression counts by integer CPM price 0..300."""
    doc = json.loads(_HISTOGRAMS.read_text(encoding="utf-8"))
    return {k: np.asarray(v, float) for k, v in doc["campaigns"].items()}


def latent_spec(rng: np.random.Generator) -> dict:
    """The latent quality: level shares, price tilts and click multipliers (mean 1)."""
    tilt = float(rng.uniform(0.8, 1.2))
    lift = float(rng.uniform(0.7, 0.9))
    mult = np.exp(lift * _LATENT_STEPS)
    mult /= np.dot(LATENT_SHARES, mult)
    return {
        "shares": LATENT_SHARES,
        "price_tilt": (tilt * _LATENT_STEPS).round(4).tolist(),
        "click_multiplier": mult.round(4).tolist(),
    }


def real_price(rng: np.random.Generator, index: int, level: float) -> dict:
    """One audience's discrete price landscape: a real campaign's histogram (price 0,
    rare and never charged, dropped) scaled so its median price is ``level``."""
    hists = real_histograms()
    campaign = sorted(hists)[index % len(hists)]
    counts = hists[campaign][1:]
    cpm = np.flatnonzero(counts > 0) + 1
    shares = counts[cpm - 1] / counts[cpm - 1].sum()
    median_cpm = cpm[np.searchsorted(np.cumsum(shares), 0.5)]
    unit = float(np.round(level / median_cpm, 7))
    return {
        "kind": "histogram",
        "campaign": campaign,
        "unit": unit,
        "prices": np.round(cpm * unit, 6).tolist(),
        "shares": shares.round(8).tolist(),
        "cap": float(np.round(cpm[-1] * unit, 6)),
        "log_median": float(np.log(median_cpm * unit)),
    }


def drift_spec(rng: np.random.Generator) -> dict:
    """Per-audience drift from the log's first day to the planned horizon."""
    return {
        "volume": float(np.exp(rng.normal(0.0, 0.3))),
        "price_tilt": float(rng.normal(0.0, 0.3)),
    }


def _scores(shares: np.ndarray) -> np.ndarray:
    """(G,) normal score of each price point (its mid-CDF through the normal quantile)."""
    cdf = np.cumsum(shares) - 0.5 * shares
    return ndtri(np.clip(cdf, 1e-12, 1 - 1e-12))


def level_histograms(aud: dict, latent: dict, frac: float) -> np.ndarray:
    """(Q, G) price distribution of each latent level, ``frac`` of the way along the
    drift (0 = the log's first day, 1 = the planned horizon)."""
    shares = np.asarray(aud["price"]["shares"])
    tilt = np.asarray(latent["price_tilt"])[:, None] + frac * aud["drift"]["price_tilt"]
    h = shares[None, :] * np.exp(tilt * _scores(shares)[None, :])
    return h / h.sum(axis=1, keepdims=True)


def volume_factor(aud: dict, frac: float) -> float:
    """Auction volume relative to the log's first day, ``frac`` along the drift."""
    return float(aud["drift"]["volume"] ** frac)


def price_strata(aud: dict, latent: dict, frac: float) -> tuple[np.ndarray, ...]:
    """(weight, rate multiplier, price) per price point, each (G,): the share of
    auctions at each price and E[click multiplier | price]."""
    h = level_histograms(aud, latent, frac)
    joint = np.asarray(latent["shares"])[:, None] * h  # (Q, G)
    weight = joint.sum(axis=0)
    mult = (joint * np.asarray(latent["click_multiplier"])[:, None]).sum(axis=0)
    return weight, mult / np.maximum(weight, 1e-300), np.asarray(aud["price"]["prices"])


def sample_latent_prices(
    aud: dict, latent: dict, day: np.ndarray, days: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(price, click multiplier) of auctions on log days ``day`` (n,) (integers)."""
    q = rng.choice(len(latent["shares"]), size=len(day), p=latent["shares"])
    prices = np.asarray(aud["price"]["prices"])
    price = np.empty(len(day))
    for d in np.unique(day):
        h = level_histograms(aud, latent, d / days)
        cdf = np.cumsum(h, axis=1)
        rows = np.flatnonzero(day == d)
        u = rng.uniform(size=len(rows)) * cdf[q[rows], -1]
        pick = (cdf[q[rows]] < u[:, None]).sum(axis=1)
        price[rows] = prices[np.minimum(pick, len(prices) - 1)]
    return price, np.asarray(latent["click_multiplier"])[q]
