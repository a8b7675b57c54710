"""Plan sections: headline cards, the plan table and its charts, curves, frontier."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from reports import charts, text
from reports.formatting import (
    decimal,
    number,
    percent,
    signed,
)
from reports.inputs import ReportInputs, Simulation
from reports.sections.common import (
    MAX_PANELS,
    TOTAL,
    chart_name,
    is_paused,
    nan_list,
    ordered_rows,
    sim_range,
    sim_value,
)
from reports.sections.flags import row_flags

PROVEN_GAP = 1e-6
AUDIENCE_SERIES = ("current_spend", "budget", "cpa", "marginal_cpa")


def headline(inputs: ReportInputs) -> dict[str, Any]:
    """Cards and plain-language assurance sentences for the summary."""
    plan, sim, currency = inputs.plan, inputs.simulation, inputs.currency
    totals, objective = plan["totals"], plan["objective"]
    value_label = text.MONEY_LABEL.format(label=text.CARD_VALUE, currency=currency)
    return {
        "cards": [
            _budget_card(plan, currency),
            _outcome_card(text.CARD_CONVERSIONS, totals, sim, "conversions", 1),
            _outcome_card(value_label, totals, sim, "value", 0),
            {
                "label": text.MONEY_LABEL.format(
                    label=text.CARD_CPA, currency=currency
                ),
                "value": decimal(totals.get("cpa")),
                "sub": [text.CARD_ROAS.format(roas=decimal(totals.get("roas")))],
            },
            _uplift_card(plan, currency),
        ],
        "assurance": [
            s
            for s in (
                _gap_sentence(plan.get("certificate") or {}, objective),
                _dual_sentence(plan.get("certificate") or {}, objective, currency),
                _price_sentence(plan.get("sensitivities") or {}, objective),
            )
            if s
        ],
    }


def _budget_card(plan: dict[str, Any], currency: str) -> dict[str, Any]:
    days = number(plan["days"]) or 0.0
    budget = number(plan["budget"])
    daily = budget / days if budget is not None and days > 0 else None
    return {
        "label": text.MONEY_LABEL.format(label=text.CARD_BUDGET, currency=currency),
        "value": decimal(budget),
        "sub": [
            text.CARD_BUDGET_SUB.format(days=decimal(days, 0), daily=decimal(daily)),
            text.CARD_OBJECTIVE.format(objective=plan["objective"]),
        ],
    }


def _outcome_card(
    title: str, totals: dict, sim: Simulation | None, metric: str, digits: int
) -> dict[str, Any]:
    low = sim_value(sim.summary if sim else None, TOTAL, metric, "p10")
    high = sim_value(sim.summary if sim else None, TOTAL, metric, "p90")
    sub = (
        text.CARD_RANGE.format(low=decimal(low, digits), high=decimal(high, digits))
        if low is not None and high is not None
        else text.CARD_NO_RANGE
    )
    return {
        "label": title,
        "value": decimal(totals.get(f"expected_{metric}"), digits),
        "sub": [sub],
    }


def _uplift_card(plan: dict[str, Any], currency: str) -> dict[str, Any]:
    totals = plan["totals"]
    if number(totals.get("current_conversions")) is None:
        return {"label": text.CARD_UPLIFT, "value": "–", "sub": [text.CARD_UPLIFT_NONE]}
    current = text.CARD_UPLIFT_SUB.format(
        conversions=decimal(totals.get("current_conversions"), 1),
        spend=decimal(totals.get("current_spend")),
        cpa=decimal(totals.get("current_cpa")),
        currency=currency,
    )
    return {
        "label": text.CARD_UPLIFT,
        "value": percent(plan.get("uplift_vs_current"), sign=True),
        "sub": [current],
    }


def _gap_sentence(certificate: dict[str, Any], objective: str) -> str:
    gap = number(certificate.get("relative_gap"))
    if gap is None:
        return text.GAP_UNKNOWN
    if gap <= PROVEN_GAP:
        return text.GAP_PROVEN.format(
            gap=percent(PROVEN_GAP, digits=4), objective=objective
        )
    return text.GAP_CLOSE.format(gap=percent(gap, digits=4), objective=objective)


def _dual_sentence(
    certificate: dict[str, Any], objective: str, currency: str
) -> str | None:
    dual = number(certificate.get("dual_price"))
    marginal = number(certificate.get("marginal_cpa_at_optimum"))
    if dual is None or marginal is None:
        return None
    return text.DUAL_PRICE.format(
        marginal_cpa=decimal(marginal),
        dual=decimal(dual, 3),
        objective=objective,
        currency=currency,
    )


def _price_sentence(sensitivities: dict[str, Any], objective: str) -> str | None:
    slope = number(sensitivities.get("d_objective_d_price_level"))
    if slope is None:
        return None
    # The file states d(objective)/d(price level) per +100%; a 10% rise is 0.1x.
    change = 0.1 * slope
    return text.PRICE_SENSITIVITY.format(
        change=decimal(abs(change), 1),
        objective=objective,
        direction=text.LESS if change < 0 else text.MORE,
    )


def _cell(display: str, sort: Any = None, css: str = "num") -> dict[str, Any]:
    """A table cell: display text, a sort key for the inline sorter, a class."""
    key = number(sort) if not isinstance(sort, str) else sort
    return {"text": display, "sort": "" if key is None else key, "css": css}


def _change_cell(row: dict[str, Any]) -> dict[str, Any]:
    budget, current = number(row["budget"]), number(row["current_spend"])
    if budget is None or current is None:
        return _cell(text.NOT_AVAILABLE)
    if current <= 0:
        return _cell(text.NEW_AUDIENCE, budget, "num up")
    delta = budget - current
    display = f"{signed(delta)} ({percent(delta / current, 0, sign=True)})"
    return _cell(display, delta, "num up" if delta >= 0 else "num down")


def _plan_cells(
    row: dict[str, Any], sim: Simulation | None, flags: list[str] | None = None
) -> dict[str, dict]:
    """Cells of one plan-table row keyed by column (``flags``: what to check)."""
    money = ("budget", "daily_budget", "cpa", "marginal_cpa", "current_spend")
    cells = {key: _cell(decimal(row[key]), row[key]) for key in money}
    bid_cpm = row.get("bid_cpm", (number(row["bid"]) or 0.0) * 1000.0)
    cells |= {
        "audience": _cell(str(row["audience"]), str(row["audience"]), "name"),
        "change": _change_cell(row),
        "bid_cpm": _cell(decimal(bid_cpm), bid_cpm),
        "expected_impressions": _cell(
            decimal(row["expected_impressions"], 0), row["expected_impressions"]
        ),
        "expected_conversions": _cell(
            decimal(row["expected_conversions"], 1), row["expected_conversions"]
        ),
        "expected_value": _cell(
            decimal(row["expected_value"], 0), row["expected_value"]
        ),
        "roas": _cell(decimal(row["roas"]), row["roas"]),
        "flags": _cell("; ".join(flags or []), len(flags or []), "flags"),
    }
    if row.get("audience") != text.TOTAL_ROW and is_paused(row):
        for key in ("cpa", "roas", "marginal_cpa"):
            cells[key] = _cell(text.PAUSED, None, "num paused")
    band = sim_range(sim, row["audience"], "conversions")
    if band is not None:
        p10 = sim_value(sim.summary, row["audience"], "conversions", "p10")
        cells["sim_range"] = _cell(band, p10)
    return cells


def _total_cells(plan: dict[str, Any], sim: Simulation | None) -> dict[str, dict]:
    """The totals row, straight from plan.json ``totals``."""
    totals = plan["totals"]
    row = {
        "audience": text.TOTAL_ROW,
        "budget": totals.get("budget"),
        "daily_budget": (number(totals.get("budget")) or 0.0)
        / (number(plan["days"]) or 1.0),
        "bid": None,
        "bid_cpm": None,
        "expected_impressions": totals.get("expected_impressions"),
        "expected_conversions": totals.get("expected_conversions"),
        "expected_value": totals.get("expected_value"),
        "cpa": totals.get("cpa"),
        "roas": totals.get("roas"),
        "marginal_cpa": (plan.get("certificate") or {}).get("marginal_cpa_at_optimum"),
        "current_spend": totals.get("current_spend"),
    }
    cells = _plan_cells(row, None)
    if sim is not None:
        cells["sim_range"] = _cell(sim_range(sim, TOTAL, "conversions"))
    return cells


def plan_table(inputs: ReportInputs) -> dict[str, Any]:
    """Columns, one row per audience (largest budget first) and the totals row."""
    sim = inputs.simulation
    columns = [c for c in text.COLUMNS if c[0] != "sim_range" or sim is not None]
    keys = [c[0] for c in columns]
    ordered = ordered_rows(inputs.plan)
    flags = row_flags(inputs)
    active = [
        _plan_cells(r, sim, flags[str(r["audience"])])
        for r in ordered
        if not is_paused(r)
    ]
    paused = [
        _plan_cells(r, sim, flags[str(r["audience"])]) for r in ordered if is_paused(r)
    ]
    return {
        "columns": [
            {"key": k, "label": name, "unit": _unit(k, u, inputs.currency)}
            for k, name, u in columns
        ],
        "rows": [[cells[k] for k in keys] for cells in active],
        "paused": [[cells[k] for k in keys] for cells in paused],
        "paused_title": text.PAUSED_GROUP.format(count=len(paused)),
        "total": [cells[k] for cells in [_total_cells(inputs.plan, sim)] for k in keys],
    }


def _unit(key: str, unit: str, currency: str) -> str:
    """A plan-table column's unit line; money columns name the currency."""
    if key not in text.MONEY_COLUMNS:
        return unit
    return text.MONEY_UNIT.format(currency=currency, unit=unit)


def plan_charts(inputs: ReportInputs) -> dict[str, Markup | None]:
    """Spend against current, response curves (None without any curve) and the
    marginal-CPA chart."""
    rows = ordered_rows(inputs.plan)
    names = [chart_name(r) for r in rows]
    column = {k: [number(r[k]) for r in rows] for k in AUDIENCE_SERIES}
    for key in ("cpa", "marginal_cpa"):
        column[key] = [
            None if is_paused(r) else v for r, v in zip(rows, column[key], strict=True)
        ]
    certificate = inputs.plan.get("certificate") or {}
    panels = _curve_panels(rows, inputs.curves)
    return {
        "spend": Markup(
            charts.spend_vs_current(
                names,
                nan_list(column["current_spend"]),
                nan_list(column["budget"]),
                inputs.currency,
            )
        ),
        "curves": Markup(charts.response_curves(panels, inputs.currency))
        if panels
        else None,
        "marginal": Markup(
            charts.marginal_cpa(
                names,
                nan_list(column["cpa"]),
                nan_list(column["marginal_cpa"]),
                number(certificate.get("marginal_cpa_at_optimum")),
                inputs.currency,
            )
        ),
    }


def _curve_panels(rows: list[dict], curves: dict[str, Any]) -> list[dict[str, Any]]:
    """Curve panels for the largest budgets that have a curve in curves.json."""
    panels = []
    for row in rows:
        curve = curves.get(row["audience"])
        if not isinstance(curve, dict) or not {"spend", "conversions"} <= curve.keys():
            continue
        panels.append(
            {
                "name": row["audience"],
                "spend": nan_list([number(v) for v in curve["spend"]]),
                "conversions": nan_list([number(v) for v in curve["conversions"]]),
                "current": nan_list(
                    [number(row["current_spend"]), number(row["current_conversions"])]
                ),
                "planned": nan_list(
                    [number(row["expected_spend"]), number(row["expected_conversions"])]
                ),
            }
        )
    return panels[:MAX_PANELS]


def curves_note(inputs: ReportInputs) -> str | None:
    """Says how many audiences the small multiples show when not all."""
    total = len(inputs.plan["audiences"])
    shown = min(total, MAX_PANELS)
    return (
        text.CURVES_SUBSET.format(shown=shown, total=total) if shown < total else None
    )


def frontier_chart(inputs: ReportInputs) -> Markup | None:
    """The budget frontier with this plan and today's spend marked."""
    frontier = inputs.frontier
    if frontier is None:
        return None
    totals = inputs.plan["totals"]
    chosen = frontier.chosen_budget
    chosen = chosen if chosen is not None else number(inputs.plan["budget"])
    current = frontier.current_spend
    current = current if current is not None else number(totals.get("current_spend"))
    table = frontier.table
    return Markup(
        charts.frontier(
            table["budget"].tolist(),
            table["expected_conversions"].tolist(),
            table["marginal_cpa"].tolist(),
            (chosen, number(totals["expected_conversions"])),
            current,
            inputs.currency,
        )
    )
