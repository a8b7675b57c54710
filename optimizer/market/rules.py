"""Per-impression bid rules: bid(x) = base_a x prod_f factor_f(x_f), fitted per audience.

A rule lets the rate network set the bids: each audience's bid for an impression
is its base bid (chosen by the allocator) times one multiplier per feature level
(device, placement, region, ..., hour of day), the form DSPs accept as bid
multipliers. The factors track value-based bidding, bid proportional to the
predicted rate: per audience, a ridge regression of the network's log predicted
rate on one-hot feature levels (rare levels shrink toward factor 1; at most
``max_levels`` levels per feature, the rarer ones pooled into "other"), factors
clipped to ``factor_range`` (also the combined multiplier), and centred so the
impression-weighted geometric-mean multiplier is 1. Where the fitted spread of
multipliers is within twice its standard error (the network sees no structure
the features can carry), the audience bids flat (every factor 1).

The market model follows the rule with strata of equal impressions sorted by the
rule's multiplier, then by the predicted-rate shift, each with its mean log
multiplier (``MarketParams.log_bid_factor``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pandas as pd

from optimizer.io.schema import feature_columns
from optimizer.market.params import MONEY, MarketParams, with_rule

HOUR = "hour_of_day"
OTHER = "other"
DEFAULT_RANGE = (0.1, 10.0)
DEFAULT_MAX_LEVELS = 8
RULE_STRATA = 32
_MIN_LEVEL_ROWS = 30  # levels with fewer sampled rows go to "other"
_PRIOR_ROWS = 50.0  # ridge weight, in rows: a level with n rows keeps ~n/(n+50)
_MIN_SPREAD = 0.02  # log multiplier spread below which a rule is not worth it


def rule_features(events: pd.DataFrame) -> list[str]:
    """The log's categorical feature columns a rule can use (audience excluded),
    and hour of day when the log has timestamps."""
    categorical, _ = feature_columns(events)
    names = [c for c in categorical if c != "audience"]
    return names + ([HOUR] if "timestamp" in events.columns else [])


def rule_columns(events: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """(n rows) audience and each rule feature as strings (hour from ``timestamp``)."""
    out = {"audience": events["audience"].astype(str).to_numpy()}
    for f in features:
        if f == HOUR:
            ts = pd.to_datetime(events["timestamp"], utc=True)
            out[f] = ts.dt.hour.astype(str).to_numpy()
        else:
            out[f] = events[f].astype(str).to_numpy()
    return pd.DataFrame(out)


RULE_ROWS_PER_AUDIENCE = 10_000
ROW_FIELDS = ("shift", "p_click", "p_conv")


def rule_rows(
    events: pd.DataFrame,
    shift: np.ndarray,
    p_click: np.ndarray,
    p_conv: np.ndarray,
    per_audience: int = RULE_ROWS_PER_AUDIENCE,
) -> pd.DataFrame:
    """What a rule is fitted from, kept in the model folder: audience, rule
    features (strings), and per row the predicted-rate shift and the anchored
    p_click, p_conv; at most ``per_audience`` rows per audience (seeded sample)."""
    frame = rule_columns(events, rule_features(events))
    frame["shift"], frame["p_click"], frame["p_conv"] = shift, p_click, p_conv
    rng = np.random.default_rng(0)
    order = rng.permutation(len(frame))
    rank = frame.iloc[order].groupby("audience", sort=False).cumcount().to_numpy()
    keep = np.sort(order[rank < per_audience])
    return frame.iloc[keep].reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class Rule:
    """A fitted bid rule over audiences ``names``.

    Attributes:
        features: feature columns the rule reads.
        factors: audience -> feature -> level -> multiplier (dimensionless);
            level "other" takes the pooled rare levels.
        pooled: audience -> feature -> levels pooled into "other".
        ratios: audience -> feature -> level -> the level's predicted rate over
            the audience's (geometric means), for plain-words explanations.
        shares: audience -> feature -> level -> share of the audience's impressions.
        flat: audience -> why it bids flat (all factors 1); absent = it uses the rule.
        factor_range: (low, high) clip of every multiplier.
    """

    names: list[str]
    features: list[str]
    factors: dict
    pooled: dict
    ratios: dict
    shares: dict
    flat: dict
    factor_range: tuple[float, float]

    @property
    def is_flat(self) -> bool:
        return all(n in self.flat for n in self.names)

    def table(self) -> pd.DataFrame:
        """bid_rules.csv: audience, feature, level, factor, share, rate_ratio."""
        rows = [
            (a, f, lvl, fac, self.shares[a][f][lvl], self.ratios[a][f][lvl])
            for a in self.names
            for f in self.features
            for lvl, fac in self.factors[a][f].items()
        ]
        return pd.DataFrame(
            rows,
            columns=["audience", "feature", "level", "factor", "share", "rate_ratio"],
        )

    def row_log_factor(self, frame: pd.DataFrame) -> tuple[np.ndarray, int]:
        """(n,) log multiplier of each row of ``frame`` (audience + feature columns
        as strings) and the number of rows with a level the rule never saw
        (those levels get factor 1; so do audiences outside the rule)."""
        aud = pd.Categorical(frame["audience"].astype(str), categories=self.names)
        a_code = np.asarray(aud.codes)
        inside = a_code >= 0
        total = np.zeros(len(frame))
        unseen = np.zeros(len(frame), bool)
        for f in self.features:
            codes, uniques = pd.factorize(frame[f].astype(str))
            # (A, U) log factor of each audience's level; NaN: a level it never saw.
            table = np.full((len(self.names), len(uniques)), np.nan)
            for i, a in enumerate(self.names):
                levels = self.factors[a][f]
                pooled = math.log(levels.get(OTHER, 1.0))
                for j, lvl in enumerate(uniques):
                    if lvl in levels:
                        table[i, j] = math.log(levels[lvl])
                    elif lvl in self.pooled[a][f]:
                        table[i, j] = pooled
            vals = np.where(inside, table[np.maximum(a_code, 0), codes], 0.0)
            unseen |= np.isnan(vals)
            total += np.nan_to_num(vals, nan=0.0)
        lo, hi = np.log(self.factor_range)
        return np.clip(total, lo, hi), int(unseen.sum())

    def to_json(self) -> dict:
        return {
            "format": "adplan-bid-rule/1",
            **{
                k: getattr(self, k)
                for k in ("names", "features", "factors", "pooled", "ratios")
            },
            "shares": self.shares,
            "flat": self.flat,
            "factor_range": list(self.factor_range),
        }

    @classmethod
    def from_json(cls, data: dict) -> Rule:
        fields = {k: data[k] for k in ("names", "features", "factors", "pooled")}
        return cls(
            **fields,
            ratios=data["ratios"],
            shares=data["shares"],
            flat=data["flat"],
            factor_range=tuple(data["factor_range"]),
        )


def _levels(
    codes: np.ndarray, uniques: np.ndarray, max_levels: int
) -> tuple[list[str], list[str]]:
    """(kept levels by count, pooled levels) of one audience's rows, given as
    ``codes`` into ``uniques``: at most ``max_levels`` kept in all, "other" among
    them when anything is pooled. Equal counts keep the order of first appearance."""
    present, first, counts = np.unique(codes, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    names = [str(uniques[c]) for c in present[order]]
    common = [
        n for n, c in zip(names, counts[order], strict=True) if c >= _MIN_LEVEL_ROWS
    ]
    room = max_levels if len(common) == len(names) else max_levels - 1
    kept = common[: max(room, 1)]
    pooled = [n for n in names if n not in kept]
    return kept + ([OTHER] if pooled else []), pooled


def _onehot(
    codes: np.ndarray, uniques: np.ndarray, kept: list[str], pooled: list[str]
) -> np.ndarray:
    """(n, len(kept)) indicator of each row's kept level (pooled rows: "other")."""
    column = {lvl: j for j, lvl in enumerate(kept)}
    other = column.get(OTHER, -1)
    lut = np.array(
        [column.get(str(u), other if str(u) in pooled else -1) for u in uniques]
    )
    return (lut[codes][:, None] == np.arange(len(kept))[None, :]).astype(float)


def _fit_audience(
    cols: dict[str, tuple[np.ndarray, np.ndarray]],
    y: np.ndarray,
    features: list[str],
    max_levels: int,
    log_range,
) -> tuple[dict, dict, dict, dict, str | None]:
    """One audience's (factors, pooled, ratios, shares, flat reason or None);
    ``cols``: feature -> (its rows' codes, the feature's level names)."""
    n = len(y)
    if n == 0:
        one = {f: {OTHER: 1.0} for f in features}
        empty = {f: [] for f in features}
        return one, empty, one, one, "no won impressions in the log sample"
    blocks, names, pooled, ratios, shares = [], [], {}, {}, {}
    for f in features:
        codes, uniques = cols[f]
        kept, pooled[f] = _levels(codes, uniques, max_levels)
        onehot = _onehot(codes, uniques, kept, pooled[f])
        blocks.append(onehot)
        names.append(kept)
        share = onehot.mean(0)
        mean_y = (onehot * y[:, None]).sum(0) / np.maximum(onehot.sum(0), 1)
        ratios[f] = dict(zip(kept, np.exp(mean_y - y.mean()).tolist(), strict=True))
        shares[f] = dict(zip(kept, share.tolist(), strict=True))
    x = np.concatenate(blocks, axis=1)
    centred = y - y.mean()
    xtx = x.T @ x
    gram = xtx + _PRIOR_ROWS * np.eye(x.shape[1])
    beta = np.linalg.solve(gram, x.T @ centred)
    fitted = x @ beta
    sigma2 = np.mean((centred - fitted) ** 2)
    # mean over rows of x_i' gram^-1 x_i = trace(gram^-1 x'x) / n
    se_fit = math.sqrt(sigma2 * np.sum(np.linalg.inv(gram) * xtx) / n)
    spread = float(np.std(fitted))
    lo, hi = log_range
    factors, start = {}, 0
    for f, kept in zip(features, names, strict=True):
        b = np.clip(beta[start : start + len(kept)], lo, hi)
        share = np.array([shares[f][k] for k in kept])
        b = np.clip(b - np.sum(share * b) / max(share.sum(), 1e-12), lo, hi)
        factors[f] = dict(zip(kept, np.exp(b).tolist(), strict=True))
        start += len(kept)
    reason = None
    if n < 2 * _MIN_LEVEL_ROWS:
        reason = f"too few impressions in the log sample ({n})"
    elif spread < max(_MIN_SPREAD, 2.0 * se_fit):
        reason = (
            f"the network's predicted rates barely differ across the features "
            f"(spread {spread:.3f} in log rate, standard error {se_fit:.3f})"
        )
    if reason is not None:
        factors = {f: dict.fromkeys(factors[f], 1.0) for f in features}
    return factors, pooled, ratios, shares, reason


def fit_rule(
    cols: pd.DataFrame,
    log_rate: np.ndarray,
    names: list[str],
    features: list[str],
    max_levels: int = DEFAULT_MAX_LEVELS,
    factor_range: tuple[float, float] = DEFAULT_RANGE,
) -> Rule:
    """Fit a rule to the network's predicted log rates.

    Args:
        cols: (n rows) audience and feature columns (strings), see :func:`rule_columns`.
        log_rate: (n,) log predicted conversion (or click) rate per won impression.
        names: audiences, in the market's order.
    """
    log_range = tuple(np.log(factor_range))
    parts = {n: {} for n in ("factors", "pooled", "ratios", "shares")}
    flat = {}
    coded = {f: pd.factorize(cols[f]) for f in features}
    coded = {f: (c, np.asarray(u, dtype=object)) for f, (c, u) in coded.items()}
    aud = np.asarray(pd.Categorical(cols["audience"], categories=names).codes)
    order = np.argsort(aud, kind="stable")
    bounds = np.searchsorted(aud[order], np.arange(len(names) + 1))
    for i, name in enumerate(names):
        rows = order[bounds[i] : bounds[i + 1]]
        own = {f: (c[rows], u) for f, (c, u) in coded.items()}
        out = _fit_audience(own, log_rate[rows], features, max_levels, log_range)
        for key, value in zip(parts, out[:4], strict=True):
            parts[key][name] = value
        if out[4] is not None:
            flat[name] = out[4]
    return Rule(
        names, list(features), **parts, flat=flat, factor_range=tuple(factor_range)
    )


def rule_strata(
    codes: np.ndarray,
    log_factor: np.ndarray,
    shift: np.ndarray,
    p_click: np.ndarray,
    p_conv: np.ndarray,
    a: int,
    k: int = RULE_STRATA,
) -> dict[str, np.ndarray]:
    """Equal-count strata per audience sorted by rule multiplier, then rate shift:
    (A, K) weight, p_click, p_conv, shift and log_factor (stratum means)."""
    keys = ("weight", "p_click", "p_conv", "shift", "log_factor")
    out = {n: np.zeros((a, k)) for n in keys}
    order = np.lexsort((shift, log_factor, codes))
    bounds = np.searchsorted(codes[order], np.arange(a + 1))
    for i in range(a):
        rows = order[bounds[i] : bounds[i + 1]]
        if not len(rows):  # no rows: left all zero for the caller to fill
            continue
        parts = [p for p in np.array_split(rows, min(k, len(rows))) if len(p)]
        for j, part in enumerate(parts):
            out["weight"][i, j] = len(part) / len(rows)
            for name, x in zip(
                keys[1:], (p_click, p_conv, shift, log_factor), strict=True
            ):
                out[name][i, j] = x[part].mean()
    return out


def rule_market(
    flat: MarketParams, strata: dict, mu: np.ndarray, beta: np.ndarray
) -> MarketParams:
    """The flat market re-stratified for a rule (same landscapes, volumes, values):
    price_loc = mu + beta x stratum shift, as the flat fit; ``mu``, ``beta`` (A,)."""
    k = strata["weight"].shape[1]
    fields = {  # host arrays, placed in one go (no program per array)
        "weight": strata["weight"],
        "p_click": strata["p_click"],
        "p_conv": strata["p_conv"],
        "value": np.repeat(np.asarray(flat.value)[:, :1], k, axis=1),
        "price_loc": mu[:, None] + beta[:, None] * strata["shift"],
    }
    params = dataclasses.replace(flat, **jax.device_put(fields))
    return with_rule(params, jax.device_put(np.asarray(strata["log_factor"], MONEY)))
