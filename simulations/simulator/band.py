"""The band's calibration on the log: ``band.json`` (from the backtest that
``adplan train`` runs) and the P10-P90 widening it asks for, per metric."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from optimizer.errors import InputError


def band_widening(model_dir) -> dict | None:
    """The model folder's band calibration (``band.json`` from the backtest that
    ``adplan train`` runs), or None for a model trained without it."""
    path = Path(model_dir) / "band.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(
            f"{path}: not a band calibration written by 'adplan train' ({exc}). "
            "Retrain the model, or delete band.json to use the uncalibrated band."
        ) from exc


def band_factors(
    band: dict | None, key: str = "widening_by_metric"
) -> dict[str, float]:
    """Widening factor (>= 1) per summary metric from band.json's ``key``: its own
    metric's, and for CPA and ROAS the larger of the two metrics they divide."""
    f = {m: max(1.0, float(x)) for m, x in ((band or {}).get(key) or {}).items()}
    if not f:
        return {}
    f["cpa"] = max(f.get("spend", 1.0), f.get("conversions", 1.0))
    f["roas"] = max(f.get("spend", 1.0), f.get("value", 1.0))
    return f


def guessed_curve_factors(band: dict | None, market) -> dict[str, dict[str, float]]:
    """Per ad set of a daily-report model whose spend curve is a guess (its spend
    never varied): the larger of the band's factor and the one a guessed curve
    needed in the backtest (``widening_unidentified_by_metric``), per metric."""
    guessed = band_factors(band, "widening_unidentified_by_metric")
    if not guessed:
        return {}
    general = band_factors(band)
    both = {m: max(f, general.get(m, 1.0)) for m, f in guessed.items()}
    curves = market.metrics.get("landscapes", [])
    return {c["audience"]: both for c in curves if c.get("identified") is False}


def widen_summary(
    summary,
    factors: dict[str, float],
    budgets: dict[str, float],
    by_audience: dict[str, dict[str, float]] | None = None,
):
    """A summary table (audience, metric, mean, p10, p50, p90, row columns) with each
    P10-P90 band stretched ``factors[metric]`` times around its mean (an audience in
    ``by_audience``: its own factors), never below 0 and, for spend, never above
    the audience's budget (the total's: their sum)."""
    out = summary.copy()
    f = out["metric"].map(factors).fillna(1.0).to_numpy(float, copy=True)
    for name, own in (by_audience or {}).items():
        mine = (out["audience"] == name).to_numpy()
        f[mine] = out.loc[mine, "metric"].map(own).fillna(1.0).to_numpy(float)
    out["p10"] = np.maximum(out["mean"] - f * (out["mean"] - out["p10"]), 0.0)
    out["p90"] = out["mean"] + f * (out["p90"] - out["mean"])
    cap = np.where(
        out["row"] == "total",
        float(sum(budgets.values())),
        out["audience"].map(budgets).fillna(np.inf).to_numpy(float),
    )
    spend = (out["metric"] == "spend").to_numpy()
    for column in ("p10", "p90"):
        out.loc[spend, column] = np.minimum(out.loc[spend, column], cap[spend])
    return out
