"""The pacing a plan's forecast assumes, for plan.json's "pacing" and its notes.

The market model throttles a capped audience uniformly (its outcomes scale by cap /
spend at its bid), which is even pacing over the horizon.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from optimizer.plan.resolve import SolvedPlan, outcomes_of

PACING_MEANING = (
    "Each audience's bid is set so its expected spend meets its budget. An "
    "audience listed in 'throttled' instead bids higher on a share of its auctions "
    "(the share given), and the forecast assumes it joins that same share in every "
    "hour of the horizon (even pacing, a DSP's standard delivery). adplan simulate "
    "--pacing even replays exactly this; its default, stop, buys every auction "
    "until the budget runs out (accelerated delivery): the market model's rates do "
    "not change with the hour, so both have the same expected totals, but stop "
    "spends a capped budget sooner."
)


def pacing(plan: SolvedPlan, frame: pd.DataFrame) -> dict:
    """plan.json's "pacing": the pacing the forecast assumes and, for each funded
    audience whose budget binds, the share of its auctions it joins (budget /
    spend at its bid without a cap, 4 decimals)."""
    names = plan.inputs.names
    uncapped = dataclasses.replace(plan.allocation, budget=np.full(len(names), np.inf))
    spend = np.asarray(outcomes_of(plan.inputs, uncapped).spend)
    cap = np.asarray(plan.allocation.budget)  # before rounding to cents
    share = np.where(spend > 0, cap / np.maximum(spend, 1e-300), 1.0)
    funded = frame["budget"].to_numpy(float) > 0
    throttled = {
        name: round(float(s), 4)
        for name, s, f in zip(names, share, funded, strict=True)
        if f and s < 0.999
    }
    return {"forecast": "even", "throttled": throttled, "meaning": PACING_MEANING}


def pacing_notes(pace: dict) -> list[str]:
    """One note per throttled audience of :func:`pacing`'s section."""
    return [
        f"'{name}': bids higher on {share:.0%} of its auctions rather than lower on "
        "all of them (a bound holds its spend and dearer impressions convert better); "
        "the forecast spreads those auctions evenly over the horizon "
        "(adplan simulate --pacing even replays that)."
        for name, share in pace["throttled"].items()
    ]
