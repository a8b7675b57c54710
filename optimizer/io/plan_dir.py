"""Read a plan folder written by ``adplan plan`` back into arrays aligned to a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputError
from optimizer.io.atomic import settle


def check_plan_model(
    doc: dict, plan_dir: str | Path, names: list[str], model_id: str | None
) -> None:
    """Raise unless the plan in ``doc`` was made with this model (id ``model_id``,
    audiences ``names``); ``simulate``, ``whatif``, ``frontier`` and ``report``
    all say it the same way."""
    rows = doc.get("audiences")
    listed = (
        [r.get("audience") for r in rows if isinstance(r, dict)]
        if isinstance(rows, list)
        else []
    )
    unknown = sorted(set(listed) - set(names), key=str)
    made_with = (doc.get("provenance") or {}).get("model_id")
    if unknown:
        detail = f"audience(s) {unknown[:5]} are not in the model"
    elif model_id and made_with and made_with != model_id:
        detail = f"it was made with model {made_with}, this model is {model_id}"
    else:
        return
    raise InputError(
        f"plan {plan_dir}: made with another model ({detail}). Use a plan made "
        "with this model (adplan plan --model MODEL), or pass the plan's own model."
    )


def read_plan(
    plan_dir: str | Path, names: list[str], model_id: str | None = None
) -> tuple[dict, np.ndarray, np.ndarray]:
    """plan.json, and (A,) bids and budgets in the model's audience order.

    Audiences the plan does not list get budget 0 (they are not bought).
    ``model_id``: the model's id; a plan made with another model is refused.
    """
    plan_dir = Path(plan_dir)
    settle(plan_dir)
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
    check_plan_model(doc, plan_dir, names, model_id)
    index = pd.Index(names).get_indexer(frame["audience"])
    bid = np.full(len(names), 1e-6)
    budget = np.zeros(len(names))
    bid[index] = np.maximum(frame["bid"].to_numpy(float), 1e-6)
    budget[index] = frame["budget"].to_numpy(float)
    if np.any(~np.isfinite(budget)) or np.any(budget < 0):
        raise InputError(f"plan {plan_dir}: budgets must be finite and >= 0.")
    return doc, bid, budget
