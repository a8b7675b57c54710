"""Synthetic market generator: an event log whose true market is known exactly.

The market has audiences of very different sizes and price levels, four
categorical impression features with interactions and one numeric feature, click
rates of about 0.2-3% and post-click conversion rates of about 1-10%, competition
that is stronger for better impressions, a second premium bidder in some
audiences (a two-mode price landscape), and a behaviour policy that explores bids
around each audience's usual bid so the landscapes are identifiable.

``truth.json`` holds every parameter; :mod:`simulations.synthetic.truth` turns it into the
exact expected outcome of any plan.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulations.synthetic import realism

FEATURES: dict[str, list[str]] = {
    "device": ["mobile", "desktop", "tablet"],
    "placement": ["feed", "search", "video", "display"],
    "region": ["north", "south", "east", "west", "central"],
    "creative": ["static", "carousel", "story"],
}
NUMERIC = {"page_score": {"mean": 50.0, "std": 15.0}}
_INTERESTS = [
    "sports",
    "travel",
    "finance",
    "gaming",
    "fashion",
    "food",
    "auto",
    "parents",
    "tech",
    "beauty",
    "home",
    "fitness",
    "music",
    "pets",
    "books",
    "outdoors",
    "movies",
    "students",
    "business",
    "health",
    "garden",
    "crafts",
    "luxury",
    "deals",
]
_AGES = ["18-24", "25-34", "35-44", "45-54", "55+"]
START = pd.Timestamp("2026-01-05T00:00:00Z")  # a Monday


def audience_names(n: int) -> list[str]:
    """Planner-style audience names, unique for up to 120 audiences, then numbered."""
    names = [f"{i}_{a}" for a in _AGES for i in _INTERESTS]
    if n > len(names):
        names += [f"segment_{k:04d}" for k in range(n - len(names))]
    return names[:n]


def _effects(rng: np.random.Generator, scale: float) -> dict[str, dict[str, float]]:
    return {
        f: dict(
            zip(
                levels, rng.normal(0, scale, len(levels)).round(4).tolist(), strict=True
            )
        )
        for f, levels in FEATURES.items()
    }


def _interaction(rng: np.random.Generator, f1: str, f2: str, scale: float) -> dict:
    table = rng.normal(0, scale, (len(FEATURES[f1]), len(FEATURES[f2]))).round(4)
    return {"features": [f1, f2], "table": table.tolist()}


def make_truth(
    n_audiences: int = 24,
    days: int = 14,
    seed: int = 0,
    auction_type: str = "second_price",
    competition_slope: float = 0.3,
    realism: str = "demo",
) -> dict:
    """Draw every parameter of a synthetic market (JSON-ready dict).

    ``realism="real"`` replaces each audience's smooth price landscape by a real
    campaign's discrete one (atoms, a hard cap), adds a latent quality that raises
    both the click rate and the price, and drift towards the planned horizon
    (:mod:`simulations.synthetic.realism`); the feature effects stay those of the
    demo market with the same seed. There the price depends on the latent quality,
    not on the features: ``competition_slope`` is set to 0.
    """
    rng = np.random.default_rng(seed)
    truth: dict = {
        "version": 1,
        "seed": seed,
        "days": days,
        "start": START.isoformat(),
        "auction_type": auction_type,
        "features": FEATURES,
        "numeric": NUMERIC,
        "click": {
            "effects": _effects(rng, 0.35),
            "interaction": _interaction(rng, "device", "placement", 0.3),
            "numeric_slope": 0.25,
        },
        "post_click": {
            "effects": _effects(rng, 0.35),
            "interaction": _interaction(rng, "region", "creative", 0.3),
            "numeric_slope": -0.15,
        },
        "competition_slope": competition_slope,
        "tie_rule": "win iff bid > price",
        "audiences": [],
    }
    for name in audience_names(n_audiences):
        peak = rng.uniform(8, 22)
        hours = np.arange(24)
        profile = 0.25 + np.exp(2.0 * np.cos(2 * np.pi * (hours - peak) / 24))
        premium = rng.uniform() < 0.3
        price = {
            "log_median": float(np.log(rng.uniform(0.002, 0.03))),
            "components": [
                {"weight": 1.0, "offset": 0.0, "sigma": float(rng.uniform(0.35, 0.75))}
            ],
        }
        if premium:
            w2 = float(rng.uniform(0.2, 0.4))
            price["components"] = [
                {
                    "weight": 1 - w2,
                    "offset": 0.0,
                    "sigma": price["components"][0]["sigma"],
                },
                {
                    "weight": w2,
                    "offset": float(rng.uniform(0.6, 1.2)),
                    "sigma": float(rng.uniform(0.2, 0.4)),
                },
            ]
        truth["audiences"].append(
            {
                "audience": name,
                "volume_per_day": float(np.exp(rng.uniform(np.log(150), np.log(8000)))),
                "hour_profile": (profile / profile.sum()).tolist(),
                "feature_mix": {
                    f: rng.dirichlet(np.full(len(v), 2.0)).tolist()
                    for f, v in FEATURES.items()
                },
                "click_intercept": float(np.log(rng.uniform(0.008, 0.03))),
                "post_click_intercept": float(np.log(rng.uniform(0.02, 0.10))),
                "price": price,
                "value_per_conversion": float(
                    np.exp(rng.uniform(np.log(20), np.log(150)))
                ),
                "usual_bid_ratio": float(rng.uniform(0.7, 1.5)),
                "group": name.split("_")[0],
            }
        )
    if realism == "real":
        _make_real(truth, np.random.default_rng([seed, 2]))
    return truth


def _make_real(truth: dict, rng: np.random.Generator) -> None:
    """Turn a demo truth into the real-world one (in place)."""
    truth["realism"] = "real"
    truth["competition_slope"] = 0.0
    truth["latent"] = realism.latent_spec(rng)
    truth["horizon"] = (
        "expected_outcome and optimal_plan score the market at the end of the "
        "log's drift (the day after its last day): volume_per_day x drift.volume, "
        "price tilt moved by drift.price_tilt"
    )
    for i, aud in enumerate(truth["audiences"]):
        level = float(np.exp(aud["price"]["log_median"]))
        aud["price"] = realism.real_price(rng, i, level)
        aud["drift"] = realism.drift_spec(rng)


def generate_events(truth: dict, seed: int = 0) -> pd.DataFrame:
    """Sample the event log (one row per auction bid in) from ``truth``."""
    from simulations.synthetic.truth import Truth

    model = Truth(truth)
    rng = np.random.default_rng([seed, 1])
    days = int(truth["days"])
    start = pd.Timestamp(truth["start"])
    first_price = truth["auction_type"] == "first_price"
    real = truth.get("realism") == "real"
    frames = []
    for a, aud in enumerate(truth["audiences"]):
        rate = aud["volume_per_day"] * np.tile(aud["hour_profile"], days)
        if real:
            day_of_hour = np.arange(days * 24) // 24
            rate = rate * aud["drift"]["volume"] ** (day_of_hour / days)
        counts = rng.poisson(rate)
        n = int(counts.sum())
        hour_index = np.repeat(np.arange(days * 24), counts)
        seconds = hour_index * 3600 + rng.integers(0, 3600, n)
        feats = {
            f: rng.choice(len(levels), n, p=aud["feature_mix"][f])
            for f, levels in FEATURES.items()
        }
        z = rng.standard_normal(n)
        p_click, p_post = model.rates_from_codes(a, feats, z)
        if real:
            price, lift = realism.sample_latent_prices(
                aud, truth["latent"], hour_index // 24, days, rng
            )
            p_click = np.minimum(p_click * lift, 1.0)
        else:
            price = model.sample_prices(a, p_click * p_post, rng)
        usual_bid = np.exp(aud["price"]["log_median"]) * aud["usual_bid_ratio"]
        bid = usual_bid * np.exp(rng.normal(0, 0.45, n))
        won = bid > price  # the tie rule: a bid equal to the price loses
        cost = np.where(won, bid if first_price else price, 0.0)
        click = won & (rng.uniform(size=n) < p_click)
        conv = click & (rng.uniform(size=n) < p_post)
        revenue = np.where(
            conv, aud["value_per_conversion"] * rng.lognormal(-0.045, 0.3, n), 0.0
        )
        frame = pd.DataFrame(
            {
                "timestamp": start + pd.to_timedelta(seconds, unit="s"),
                "audience": aud["audience"],
                "bid": bid.round(6),
                "won": won.astype(np.int8),
                "cost": cost.round(6),
                "click": click.astype(np.int8),
                "conversion": conv.astype(np.int8),
                "revenue": revenue.round(2),
            }
        )
        for f, levels in FEATURES.items():
            frame[f] = np.asarray(levels)[feats[f]]
        frame["page_score"] = (
            NUMERIC["page_score"]["mean"] + NUMERIC["page_score"]["std"] * z
        ).round(3)
        frames.append(frame)
    events = pd.concat(frames, ignore_index=True).sort_values(
        "timestamp", kind="stable"
    )
    events["timestamp"] = events["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return events.reset_index(drop=True)


def audience_settings(truth: dict) -> pd.DataFrame:
    """The audience settings a planner would keep for this market."""
    return pd.DataFrame(
        {
            "audience": [a["audience"] for a in truth["audiences"]],
            "value_per_conversion": [
                round(a["value_per_conversion"], 2) for a in truth["audiences"]
            ],
            "group": [a["group"] for a in truth["audiences"]],
        }
    )
