"""Within-audience spread of the rate network's predictions, calibrated on the log.

Platt scaling (:mod:`optimizer.rates.calibration`) fits one slope over the validation
rows of all audiences, so it mostly calibrates the differences *between*
audiences. The planner also needs the differences *within* an audience right:
when better impressions cost more, raising a bid buys a better mix, and a network
whose predictions are squeezed toward each audience's mean (common with rare
conversions, regularization and early stopping) under-forecasts what a higher
bid brings. This stage measures that squeeze on the log's won auctions.

Model: an impression of audience a with predicted rate p and log-rate shift
``s = log p - mean_a(log p)`` has rate ``p * exp((slope - 1) * s) * c_a``; the
audience levels c_a are profiled out (Poisson likelihood of the observed
events, exact for rare events), so only the within-audience ordering informs
``slope``. slope > 1 widens the spread, < 1 narrows it. A normal prior
N(1, PRIOR_SD^2) keeps the network's spread when the log holds few events; the
penalized log-likelihood is concave in ``slope``, so Newton's method converges.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PRIOR_SD = 0.3  # prior sd of the slope around 1 (the network's own spread)
BOUNDS = (0.25, 4.0)  # the slope is kept in this range
_NEWTON_STEPS = 50


@dataclasses.dataclass(frozen=True)
class Spread:
    """The fitted within-audience slope: estimate, posterior sd and evidence."""

    slope: float
    sd: float
    events: int

    def apply(self, p: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """Rates (n,) with the spread around each audience's mean rescaled.

        ``p`` (n,) predicted probabilities; ``shift`` (n,) their log-rate shift
        from the audience mean. The audience levels are left to the anchoring
        that follows (:func:`optimizer.market.fit.anchor_factors`).
        """
        return p * np.exp((self.slope - 1.0) * shift)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def log_shift(p: np.ndarray, codes: np.ndarray, n_audiences: int) -> np.ndarray:
    """(n,) log p minus its audience mean (over the rows given), float64."""
    log_p = np.log(np.clip(p, 1e-12, 1.0))
    rows = np.bincount(codes, minlength=n_audiences)
    mean = np.bincount(codes, weights=log_p, minlength=n_audiences) / np.maximum(
        rows, 1
    )
    return log_p - mean[codes]


def fit_spread(
    codes: np.ndarray, p: np.ndarray, shift: np.ndarray, events: np.ndarray
) -> Spread:
    """Fit the within-audience slope from won impressions.

    Args:
        codes: (n,) int audience index of each won impression.
        p: (n,) predicted probability of the event per won impression.
        shift: (n,) log-rate shift of each prediction from its audience mean.
        events: (n,) observed 0/1 outcomes (clicks or conversions).
    """
    n_aud = int(codes.max()) + 1 if len(codes) else 0
    y = np.asarray(events, np.float64)
    per_audience = np.bincount(codes, weights=y, minlength=n_aud)
    centred = (
        shift
        - np.bincount(codes, weights=shift, minlength=n_aud)[codes]
        / np.maximum(np.bincount(codes, minlength=n_aud), 1)[codes]
    )
    observed = float(np.sum(y * centred))
    slope, information = 1.0, 0.0
    for _ in range(_NEWTON_STEPS):
        # Weights of the profiled Poisson likelihood: the audience's expected
        # events at this slope, normalized within the audience.
        w = p * np.exp((slope - 1.0) * centred)
        total = np.maximum(np.bincount(codes, weights=w, minlength=n_aud), 1e-300)
        mean = np.bincount(codes, weights=w * centred, minlength=n_aud) / total
        second = np.bincount(codes, weights=w * centred**2, minlength=n_aud) / total
        information = float(np.sum(per_audience * (second - mean**2)))
        grad = observed - float(np.sum(per_audience * mean))
        grad -= (slope - 1.0) / PRIOR_SD**2
        curvature = information + 1.0 / PRIOR_SD**2
        step = grad / curvature
        slope = float(np.clip(slope + step, *BOUNDS))
        if abs(step) < 1e-10:
            break
    sd = 1.0 / np.sqrt(information + 1.0 / PRIOR_SD**2)
    return Spread(slope=slope, sd=float(sd), events=int(y.sum()))
