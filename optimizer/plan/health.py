"""Model health in plain words: is the conversion model better than the baselines?"""

from __future__ import annotations

_BASELINE_WORDS = {
    "logistic_regression": "a logistic regression",
    "audience_average": "each audience's average rate",
}


def conversions_guess(prior: dict) -> str:
    """Warning for a model whose conversion rates are a post-click prior."""
    return (
        f"Conversions are a guess: the training log has {prior['conversions']:,} conversions in {prior['clicks']:,} clicks, so every conversion forecast assumes a post-click conversion rate of {100 * prior['rate']:.3g}% (a prior, not measured). "
        "Plans that maximize conversions then favour cheap clicks; use --objective clicks to plan for clicks openly, and retrain once conversions arrive."
    )


def model_health(rates_metrics: dict) -> list[str]:
    """Warnings when the conversion head is a prior (no conversions in the log) or
    ranks worse than random or than a baseline.

    ``rates_metrics`` is the "rates" part of a model's metrics.json; AUCs are
    compared on the same validation days.
    """
    head = rates_metrics.get("heads", {}).get("conversion", {})
    if isinstance(head.get("prior"), dict):
        return [conversions_guess(head["prior"])]
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
