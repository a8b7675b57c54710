"""The budget slider: the frontier's per-audience splits as data for the page.

The page's inline script moves over the frontier's rows only (no interpolation),
so every number the slider shows is one ``adplan frontier`` computed.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from markupsafe import Markup

from reports.formatting import number
from reports.inputs import ReportInputs

# JSON inside <script> must not close the element or open a comment.
_SCRIPT_SAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def script_json(data: Any) -> Markup:
    """``data`` as JSON that is safe inside a ``<script type="application/json">``.

    >>> str(script_json({"name": "</script>"}))
    '{"name": "\\\\u003c/script\\\\u003e"}'
    """
    raw = json.dumps(data, allow_nan=False)
    return Markup("".join(_SCRIPT_SAFE.get(c, c) for c in raw))


def _finite(values: list[Any]) -> list[float | None]:
    """Numbers for JSON: NaN and missing become null."""
    return [number(v) for v in values]


def budget_slider(inputs: ReportInputs) -> dict[str, Any] | None:
    """Data and start position of the budget slider, or None without splits."""
    frontier = inputs.frontier
    if frontier is None or frontier.splits is None or len(frontier.table) < 2:
        return None
    table = frontier.table
    budgets = table["budget"].to_numpy(float)
    chosen = frontier.chosen_budget
    if chosen is None:
        chosen = number(inputs.plan["budget"]) or float(budgets[0])
    start = int(np.argmin(np.abs(budgets - chosen)))
    data = {
        "audiences": frontier.audiences,
        "budget": _finite(table["budget"].tolist()),
        "spend": _finite(table["expected_spend"].tolist()),
        "conversions": _finite(table["expected_conversions"].tolist()),
        "cpa": _finite(table["cpa"].tolist()),
        "marginal_cpa": _finite(table["marginal_cpa"].tolist()),
        "split_budget": frontier.splits["budget"],
        "split_conversions": frontier.splits["expected_conversions"],
    }
    return {"data": script_json(data), "start": start, "last": len(budgets) - 1}
