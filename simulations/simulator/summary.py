"""Simulator summaries: pandas tables of a :class:`SimulationResult`.

Mean and P10/P50/P90 over replications per audience and ``TOTAL``
(:func:`summarize`), when budgets ran out (:func:`budget_out_summary`) and the
sampled replications' hourly cumulative paths (:func:`hourly_paths`).

Totals do not share the namespace of audience names (an audience may be called
``TOTAL``): the ``row`` column says ``audience`` or ``total``; the ``audience``
column of a total row reads ``TOTAL`` for people and older scripts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulations.simulator.run import SimulationResult

METRICS = ("spend", "impressions", "clicks", "conversions", "value", "cpa", "roas")
TOTAL = "TOTAL"
AUDIENCE_ROW, TOTAL_ROW = "audience", "total"


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den == 0 (e.g. CPA of a run without conversions)."""
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, num / safe, np.nan)


def _stats(x: np.ndarray) -> tuple[float, float, float, float]:
    """NaN-aware mean, P10, P50, P90 of ``x`` (R,); all NaN when every value is."""
    finite = x[~np.isnan(x)]
    if finite.size == 0:
        return (np.nan,) * 4
    p10, p50, p90 = np.quantile(finite, [0.1, 0.5, 0.9])
    return float(finite.mean()), float(p10), float(p50), float(p90)


def _metrics(r: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The seven summary metrics per replication from (R,) outcome arrays."""
    return {
        "spend": r["spend"],
        "impressions": r["impressions"],
        "clicks": r["clicks"],
        "conversions": r["conversions"],
        "value": r["value"],
        "cpa": _ratio(r["spend"], r["conversions"]),
        "roas": _ratio(r["value"], r["spend"]),
    }


def summarize(result: SimulationResult, audience_names: list[str]) -> pd.DataFrame:
    """Mean and P10/P50/P90 over replications, per audience and in total.

    CPA (spend / conversions) and ROAS (value / spend) are computed per
    replication, then summarized over the replications where they are defined
    (NaN when none is). ``TOTAL`` sums the audiences within each replication
    first.

    Returns:
        DataFrame with columns ``audience, metric, mean, p10, p50, p90, row``;
        one row per audience and metric (in :data:`METRICS` order, ``row`` =
        ``audience``), then the totals (``row`` = ``total``).
    """
    fields = ("spend", "impressions", "clicks", "conversions", "value")
    arrays = {f: np.asarray(getattr(result, f), np.float64) for f in fields}
    columns = [
        {f: a[:, i] for f, a in arrays.items()} for i in range(len(audience_names))
    ]
    columns.append({f: a.sum(axis=1) for f, a in arrays.items()})
    kinds = [AUDIENCE_ROW] * len(audience_names) + [TOTAL_ROW]
    rows = [
        (name, metric, *_stats(x), kind)
        for name, outcome, kind in zip(
            [*audience_names, TOTAL], columns, kinds, strict=True
        )
        for metric, x in _metrics(outcome).items()
    ]
    return pd.DataFrame(
        rows, columns=["audience", "metric", "mean", "p10", "p50", "p90", "row"]
    )


def budget_out_summary(
    result: SimulationResult, audience_names: list[str]
) -> pd.DataFrame:
    """When budgets ran out: per audience, the share of replications whose budget
    ran out and the mean/P10/P50/P90 of that hour (0 = first hour) over them.

    Returns:
        DataFrame with columns ``audience, share_out, mean, p10, p50, p90``
        (statistics NaN for an audience whose budget always lasted).
    """
    out = np.asarray(result.out_hour, np.float64)
    rows = [
        (name, float(np.mean(~np.isnan(out[:, i]))), *_stats(out[:, i]))
        for i, name in enumerate(audience_names)
    ]
    return pd.DataFrame(
        rows, columns=["audience", "share_out", "mean", "p10", "p50", "p90"]
    )


def hourly_paths(result: SimulationResult, audience_names: list[str]) -> pd.DataFrame:
    """Tidy hourly cumulative paths of the sampled replications, for charts.

    Returns:
        DataFrame with columns ``run, hour, audience, cumulative_spend,
        cumulative_conversions, row``; ``hour`` counts elapsed hours (1 = end of
        the first hour); one row per run, hour and audience (``row`` =
        ``audience``), plus the total (``row`` = ``total``).
    """
    spend = np.asarray(result.path_spend, np.float64)  # (P, H, A)
    conversions = np.asarray(result.path_conversions, np.float64)
    spend = np.concatenate([spend, spend.sum(2, keepdims=True)], axis=2)
    conversions = np.concatenate([conversions, conversions.sum(2, keepdims=True)], 2)
    kinds = np.asarray([AUDIENCE_ROW] * len(audience_names) + [TOTAL_ROW], object)
    kinds = np.broadcast_to(kinds, spend.shape)
    runs, hours, names = np.meshgrid(
        np.arange(spend.shape[0]),
        np.arange(1, spend.shape[1] + 1),
        np.asarray([*audience_names, TOTAL], dtype=object),
        indexing="ij",
    )
    return pd.DataFrame(
        {
            "run": runs.ravel(),
            "hour": hours.ravel(),
            "audience": names.ravel(),
            "cumulative_spend": spend.ravel(),
            "cumulative_conversions": conversions.ravel(),
            "row": kinds.ravel(),
        }
    )
