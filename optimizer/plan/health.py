"""Model health in plain words: is the conversion model better than the baselines?"""

from __future__ import annotations

_BASELINE_WORDS = {
    "logistic_regression": "a logistic regression",
    "audience_average": "each audience's average rate",
}


def model_health(rates_metrics: dict) -> list[str]:
    """Warnings when the conversion head ranks worse than random or than a baseline.

    ``rates_metrics`` is the "rates" part of a model's metrics.json; AUCs are
    compared on the same validation days.
    """
    head = rates_metrics.get("heads", {}).get("conversion", {})
    auc = (head.get("model") or {}).get("auc")
    if auc is None:
        return []
    if auc < 0.5:
        return [
            f"Model health: the conversion model ranks auctions worse than chance (validation AUC {auc:.3f} < 0.500); do not trust its forecasts. Check the log's conversion column or train on more data."
        ]
    worse = [
        f"{_BASELINE_WORDS.get(name, name)} (AUC {base['auc']:.3f})"
        for name, base in head.get("baselines", {}).items()
        if base.get("auc") is not None and auc < base["auc"]
    ]
    if not worse:
        return []
    return [
        f"Model health: the conversion model (validation AUC {auc:.3f}) ranks auctions worse than {' and '.join(worse)}; its forecasts may be no better than the simple rule. More data or fewer features may help."
    ]
