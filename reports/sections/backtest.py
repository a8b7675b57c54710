"""Report section "How accurate were the forecasts" (``adplan backtest`` output).

Plain sentences on how often the P10-P90 band held what happened on the days the
model did not see, the typical and worst error, and a chart of forecast against
actual per audience (spend and conversions).
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure

from reports.charts import STYLE, label, to_svg

TITLE = "How accurate were the forecasts"
_PANELS = (("spend", "Spend"), ("conversions", "Conversions"))


def _chart(rows: list[dict]) -> str:
    """Per audience: the forecast's P10-P90 (bar), its mean (tick), the actual (dot)."""
    with matplotlib.rc_context(STYLE):
        names = sorted({r["audience"] for r in rows if r["audience"] != "TOTAL"})
        fig = Figure(figsize=(7.5, 0.6 + 0.32 * len(names)), layout="constrained")
        axes = fig.subplots(1, len(_PANELS), sharey=True)
        y = np.arange(len(names))
        for ax, (metric, title) in zip(axes, _PANELS, strict=True):
            got = {
                r["audience"]: r
                for r in rows
                if r["metric"] == metric and r["bid_band"] == "all"
            }
            mine = [got[n] for n in names]
            low = np.array([r["p10"] for r in mine])
            high = np.array([r["p90"] for r in mine])
            ax.barh(
                y, high - low, left=low, height=0.5, color="#9ecae1", label="P10-P90"
            )
            ax.scatter(
                [r["forecast"] for r in mine],
                y,
                marker="|",
                s=120,
                color="#08519c",
                label="forecast",
            )
            ax.scatter(
                [r["actual"] for r in mine],
                y,
                s=18,
                color="#d94801",
                zorder=3,
                label="actual",
            )
            ax.set_title(title)
        axes[0].set_yticks(y, [label(n) for n in names])
        axes[0].invert_yaxis()
        axes[-1].legend(loc="lower right", fontsize="small")
        return to_svg(fig, "backtest")


def _sentences(doc: dict) -> list[str]:
    daily = doc.get("input_kind") == "daily"
    out = [
        f"The model was trained without the {'report' if daily else 'log'}'s last "
        f"{doc['holdout_days']} day(s) (from {str(doc['holdout_from'])[:10]}) and then "
        "forecast them at the "
        + (
            "daily spend the report shows for each ad set on those days."
            if daily
            else "bids the log actually used on those days."
        ),
        f"Its P10-P90 range held {doc['coverage']:.0%} of {doc['outcomes']} audience "
        + (
            "outcomes (impressions, clicks, conversions, value; spend was given); "
            if daily
            else "outcomes (spend, impressions, clicks, conversions, value); "
        )
        + "a well-calibrated range holds about 80%.",
    ]
    worst = doc.get("worst_error")
    if worst:
        out.append(
            f"A typical forecast was off by {doc['median_abs_error']:.0%}; the worst by "
            f"{worst['error']:+.0%} ({worst['metric']} of {worst['audience']})."
        )
    wider = {m: f for m, f in (doc.get("widening_by_metric") or {}).items() if f > 1}
    if wider:
        parts = ", ".join(f"{m} {f:.2f} times" for m, f in wider.items())
        out.append(
            f"To hold 80%, the range has to be wider: {parts}. 'adplan train' "
            "stores these factors and the simulation's ranges use them."
        )
    else:
        out.append("The range needed no widening.")
    guessed = doc.get("widening_unidentified_by_metric")
    if guessed:
        worst = max(guessed, key=guessed.get)
        out.append(
            "A spend curve guessed from the other ad sets (what an ad set whose spend "
            f"never varied gets) held {doc['coverage_unidentified_guess']:.0%}; such ad "
            f"sets' ranges are widened up to {guessed[worst]:.2f} times ({worst})."
        )
    bands = doc.get("coverage_bid_bands")
    if bands is not None:
        out.append(
            f"By bid band (an audience's lowest, middle and highest third of bids) the "
            f"range held {bands:.0%}: where that is lower, what a higher or lower bid "
            "buys is less certain than the range says."
        )
    return out


def backtest(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """The section's sentences and chart, or None without a backtest."""
    if not doc or not doc.get("outcomes"):
        return None
    return {
        "title": TITLE,
        "sentences": _sentences(doc),
        "chart": Markup(_chart(doc["rows"])),
    }
