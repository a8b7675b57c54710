"""Read a plan folder written by ``adplan plan`` back into arrays aligned to a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputError


def read_plan(
    plan_dir: str | Path, names: list[str]
) -> tuple[dict, np.ndarray, np.ndarray]:
    """plan.json, and (A,) bids and budgets in the model's audience order.

    Audiences the plan does not list get budget 0 (they are not bought).
    """
    plan_dir = Path(plan_dir)
    try:
        doc = json.loads((plan_dir / "plan.json").read_text(encoding="utf-8"))
        frame = pd.DataFrame(doc["audiences"])
        days = float(doc["days"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"plan {plan_dir}: plan.json is missing or damaged ({exc}). Write one with adplan plan --out {plan_dir}."
        ) from exc
    missing = {"audience", "budget", "bid"} - set(frame.columns)
    if missing or days <= 0:
        raise InputError(
            f"plan {plan_dir}: plan.json lacks {sorted(missing) or 'a positive horizon'}; write it again with adplan plan."
        )
    unknown = sorted(set(frame["audience"]) - set(names))
    if unknown:
        raise InputError(
            f"plan {plan_dir}: audience(s) {unknown[:5]} are not in the model. Use a plan made with this model."
        )
    index = pd.Index(names).get_indexer(frame["audience"])
    bid = np.full(len(names), 1e-6)
    budget = np.zeros(len(names))
    bid[index] = np.maximum(frame["bid"].to_numpy(float), 1e-6)
    budget[index] = frame["budget"].to_numpy(float)
    if np.any(~np.isfinite(budget)) or np.any(budget < 0):
        raise InputError(f"plan {plan_dir}: budgets must be finite and >= 0.")
    return doc, bid, budget
