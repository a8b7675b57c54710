"""Post-hoc calibration stage: per-head Platt scaling fitted on the validation split.

For a head with predicted log-odds ``z`` the calibrated probability is
``sigmoid(centre + slope * (z - centre) + intercept)``, where ``centre`` is the
mean log-odds of the validation rows. Centring makes the slope change the spread
of the predictions around their typical value instead of moving the level of
rare rates (at ``z = -7`` an uncentred slope of 0.97 alone would add 25% to the
rate). The map is strictly increasing (``slope > 0``), so the ranking and AUC are
unchanged, and unlike isotonic regression it stays smooth with the few dozen
conversions a validation split may hold. A Gaussian prior centred on the identity
(slope 1, intercept 0) worth ``PRIOR_WEIGHT`` positives keeps the network's own
level when the validation split has little evidence, and yields to it when it
has hundreds of events.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from optimizer.errors import InputError

HEADS = ("click", "conversion")
# Prior precision (in units of Fisher information, ~ positives for rare events)
# pulling (slope, intercept) to the identity (1, 0).
PRIOR_WEIGHT = 10.0
_NEWTON_STEPS = 50
_FIELDS = ("slope", "intercept", "centre")
# The conversion head of a log without conversions: a post-click rate prior worth
# PRIOR_CLICKS clicks at PRIOR_POST_CLICK_RATE (one pseudo-conversion), updated by
# the log's clicks and (zero) conversions.
PRIOR_POST_CLICK_RATE = 0.02
PRIOR_CLICKS = 50.0


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float64."""
    return np.exp(-np.logaddexp(0.0, -x))


def log_odds(p: np.ndarray) -> np.ndarray:
    """logit(p) for p in (0, 1), clipped away from 0 and 1 (float64)."""
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


@dataclasses.dataclass(frozen=True)
class Platt:
    """One head's map ``p = sigmoid(centre + slope * (z - centre) + intercept)``."""

    slope: float = 1.0
    intercept: float = 0.0
    centre: float = 0.0

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n,) float64 from log-odds ``z`` (n,)."""
        dz = np.asarray(z, np.float64) - self.centre
        return sigmoid(self.centre + self.slope * dz + self.intercept)


@dataclasses.dataclass(frozen=True)
class PostClickPrior:
    """Conversion head for a log with no conversions to learn from.

    p(conversion) = ``rate`` x p(click): the posterior mean post-click rate of
    ``conversions`` in ``clicks`` under the prior above. Conversion forecasts
    built on it are a guess; the network's conversion output is not used.
    """

    rate: float
    conversions: int
    clicks: int


def post_click_prior(conversions: int, clicks: int) -> PostClickPrior:
    """The prior's posterior mean post-click conversion rate given the log's counts."""
    pseudo = PRIOR_CLICKS * PRIOR_POST_CLICK_RATE
    rate = (conversions + pseudo) / (clicks + PRIOR_CLICKS)
    return PostClickPrior(float(rate), int(conversions), int(clicks))


def fit_platt(z: np.ndarray, y: np.ndarray) -> Platt:
    """Fit Platt scaling by Newton's method on the penalized log-likelihood.

    Args:
        z: (n,) predicted log-odds.
        y: (n,) 0/1 labels.

    Returns:
        The map; the slope is kept positive so the ranking is preserved.
    """
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    centre = float(z.mean())
    theta = np.array([1.0, 0.0])
    design = np.stack([z - centre, np.ones_like(z)], axis=1)
    for _ in range(_NEWTON_STEPS):
        p = sigmoid(centre + design @ theta)
        grad = design.T @ (p - y) + PRIOR_WEIGHT * (theta - [1.0, 0.0])
        hess = (design * (p * (1 - p))[:, None]).T @ design + PRIOR_WEIGHT * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    if not theta[0] > 0:
        return Platt(1.0, _fit_intercept(z, y), centre)
    return Platt(float(theta[0]), float(theta[1]), centre)


def _fit_intercept(z: np.ndarray, y: np.ndarray) -> float:
    """Intercept-only Platt fit (slope 1), the fallback when the slope is not > 0."""
    b = 0.0
    for _ in range(_NEWTON_STEPS):
        p = sigmoid(z + b)
        step = (np.sum(p - y) + PRIOR_WEIGHT * b) / (np.sum(p * (1 - p)) + PRIOR_WEIGHT)
        b -= step
        if abs(step) < 1e-10:
            break
    return float(b)


def cross_fitted(z: np.ndarray, y: np.ndarray, folds: int = 2) -> np.ndarray:
    """Out-of-fold calibrated probabilities (n,) float64, for honest metrics.

    Rows are assigned to folds by position (``i % folds``); since the validation
    split is in time order, every fold spans the whole period.
    """
    fold = np.arange(len(z)) % folds
    out = np.empty(len(z))
    for k in range(folds):
        held = fold == k
        out[held] = fit_platt(z[~held], y[~held])(z[held])
    return out


def to_dict(maps: Mapping[str, Platt | PostClickPrior]) -> dict[str, Any]:
    """JSON form of the per-head maps (calibration.json); a conversion prior is
    stored as ``{"post_click_prior": {...}}``."""
    heads = {
        h: {"post_click_prior": dataclasses.asdict(m)}
        if isinstance(m, PostClickPrior)
        else dataclasses.asdict(m)
        for h, m in ((h, maps[h]) for h in HEADS)
    }
    return {"method": "platt", "heads": heads}


def from_dict(data: Mapping[str, Any]) -> dict[str, Platt | PostClickPrior]:
    """Inverse of :func:`to_dict`; raises InputError if malformed."""
    try:
        if data["method"] != "platt":
            raise ValueError(f"unknown method {data['method']!r}")
        heads = data["heads"]
        maps: dict[str, Platt | PostClickPrior] = {
            h: Platt(**{k: float(heads[h][k]) for k in _FIELDS})
            for h in HEADS
            if "post_click_prior" not in heads[h]
        }
        prior = heads["conversion"].get("post_click_prior")
        if prior is not None:
            maps["conversion"] = PostClickPrior(
                float(prior["rate"]), int(prior["conversions"]), int(prior["clicks"])
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"calibration.json is malformed ({exc!r}).") from exc
    if "click" not in maps or not all(
        np.isfinite([m.slope, m.intercept, m.centre]).all() and m.slope > 0
        for m in maps.values()
        if isinstance(m, Platt)
    ):
        raise InputError("calibration.json has a non-finite or non-positive slope.")
    prior = maps["conversion"]
    if isinstance(prior, PostClickPrior) and not 0 < prior.rate < 1:
        raise InputError(
            "calibration.json: the post-click prior rate is not in (0, 1)."
        )
    return maps
