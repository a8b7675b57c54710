"""Validation metrics of the rate network and the baselines it is compared with.

* metrics per head: AUC, log-loss (nats), expected calibration error over
  equal-count bins, and the calibration table itself;
* :func:`calibrate_and_measure` fits the Platt map per head on the validation
  split and scores the network with out-of-fold calibrated predictions, so the
  metrics are not measured on the fit data;
* two baselines fitted on the same split: per-audience average rate and a
  logistic regression on one-hot features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from optimizer.features import FeatureBatch, FeatureSpec, encode
from optimizer.rates import calibration
from optimizer.rates.calibration import HEADS

_ECE_BINS = 10


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean binary log-loss (nats) of probabilities ``p`` (n,) for 0/1 labels ``y``."""
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def calibration_table(
    p: np.ndarray, y: np.ndarray, bins: int = _ECE_BINS
) -> list[dict]:
    """Equal-count bins of the predictions: mean predicted, observed rate, count.

    Equal-count (not equal-width) bins, because rates of ~1e-3 would put almost
    every row in the first equal-width bin.
    """
    order = np.argsort(p, kind="stable")
    rows = []
    for part in np.array_split(order, min(bins, len(p))):
        rows.append(
            {
                "mean_predicted": float(p[part].mean()),
                "observed_rate": float(y[part].mean()),
                "count": len(part),
            }
        )
    return rows


def expected_calibration_error(table: list[dict]) -> float:
    """Count-weighted mean |mean predicted - observed rate| over the bins."""
    counts = np.array([r["count"] for r in table], np.float64)
    gaps = np.array([abs(r["mean_predicted"] - r["observed_rate"]) for r in table])
    return float(np.sum(counts * gaps) / counts.sum())


def auc(p: np.ndarray, y: np.ndarray) -> float | None:
    """ROC AUC, or None when ``y`` has a single class."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def head_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """AUC, log-loss, ECE, calibration table and rates for one head.

    Args:
        p: (n,) predicted probabilities.
        y: (n,) 0/1 outcomes.
    """
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    table = calibration_table(p, y)
    return {
        "auc": auc(p, y),
        "log_loss": log_loss(p, y),
        "ece": expected_calibration_error(table),
        "mean_predicted": float(p.mean()),
        "observed_rate": float(y.mean()),
        "positives": int(y.sum()),
        "rows": len(y),
        "calibration": table,
    }


def _audience_average(train: pd.DataFrame, valid: pd.DataFrame, **_: Any) -> dict:
    """Per-audience rate in training, shrunk by one pseudo-positive at the global rate."""
    out = {}
    for head, col in zip(HEADS, ("click", "conversion"), strict=True):
        glob = max(float(train[col].mean()), 1e-12)
        grouped = train.groupby("audience", observed=True)[col].agg(["sum", "count"])
        rate = (grouped["sum"] + 1.0) / (grouped["count"] + 1.0 / glob)
        rate.index = rate.index.astype(str)
        out[head] = (
            valid["audience"].astype(str).map(rate).fillna(glob).to_numpy(np.float64)
        )
    return out


def _one_hot(spec: FeatureSpec, batch: FeatureBatch):
    """Sparse (n, vocabulary rows + numeric) design matrix of one-hot codes."""
    from scipy import sparse

    n, fields = batch.codes.shape
    width = int(sum(spec.field_sizes))
    onehot = sparse.csr_matrix(
        (
            np.ones(n * fields),
            batch.codes.ravel(),
            np.arange(0, n * fields + 1, fields),
        ),
        shape=(n, width),
    )
    return sparse.hstack([onehot, sparse.csr_matrix(batch.numeric)], format="csr")


def _logistic_regression(
    train: pd.DataFrame, valid: pd.DataFrame, *, spec: FeatureSpec, **_: Any
) -> dict:
    """sklearn LogisticRegression per head on one-hot categorical + scaled numeric."""
    from sklearn.linear_model import LogisticRegression

    x_train = _one_hot(spec, encode(spec, train))
    x_valid = _one_hot(spec, encode(spec, valid))
    out = {}
    for head, col in zip(HEADS, ("click", "conversion"), strict=True):
        y = train[col].to_numpy()
        if not 0 < y.sum() < len(y):  # one class: the Laplace-smoothed rate
            out[head] = np.full(x_valid.shape[0], (y.sum() + 1.0) / (len(y) + 2.0))
            continue
        clf = LogisticRegression(max_iter=500, tol=1e-6)
        clf.fit(x_train, y)
        out[head] = clf.predict_proba(x_valid)[:, 1]
    return out


BASELINES: dict[str, Callable[..., dict]] = {
    "audience_average": _audience_average,
    "logistic_regression": _logistic_regression,
}


def calibrate_and_measure(
    z: dict[str, np.ndarray],
    vlabels: np.ndarray,
    frames: tuple[pd.DataFrame, pd.DataFrame] | None,
    spec: FeatureSpec,
) -> tuple[dict[str, calibration.Platt], dict[str, Any]]:
    """Fit the calibration maps and measure the network and the baselines.

    ``frames`` are the (training, validation) won auctions the baselines are
    fitted and scored on; None skips them (several processes each hold only part
    of the rows).
    """
    maps, heads = {}, {}
    baseline_preds = (
        {}
        if frames is None
        else {name: fit(*frames, spec=spec) for name, fit in BASELINES.items()}
    )
    for j, head in enumerate(HEADS):
        y = vlabels[:, j]
        maps[head] = calibration.fit_platt(z[head], y)
        # ECE and log-loss use out-of-fold calibration; AUC uses the final map,
        # which is increasing, so it equals the AUC of the shipped predictions.
        model = head_metrics(calibration.cross_fitted(z[head], y), y)
        model["auc"] = auc(maps[head](z[head]), y)
        heads[head] = {
            "model": model,
            "model_uncalibrated": head_metrics(calibration.sigmoid(z[head]), y),
            "baselines": {
                name: head_metrics(preds[head], y)
                for name, preds in baseline_preds.items()
            },
        }
    return maps, heads


def prior_head_metrics(
    prior: calibration.PostClickPrior,
    p_click: np.ndarray,
    y: np.ndarray,
    measured: dict[str, Any],
) -> dict[str, Any]:
    """Conversion-head metrics when the head is a post-click prior.

    ``p_click`` (n,) are the calibrated click rates of the validation rows and
    ``y`` (n,) their conversions; the baselines measured for the head are kept.
    ``prior`` records the rate, the counts it rests on and that it is a guess.
    """
    return {
        "model": head_metrics(prior.rate * p_click, y),
        "model_uncalibrated": measured["model_uncalibrated"],
        "baselines": measured["baselines"],
        "prior": dataclasses.asdict(prior),
    }
