"""Report stage: the content of each report section, ready for the template.

Each builder takes :class:`~reports.inputs.ReportInputs` (or parts of it) and
returns plain dicts of display strings and chart SVGs. Only display work
happens here: ordering, formatting, and aggregation of simulated paths into
bands. Results themselves come from the files.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from reports import charts, text
from reports.formatting import (
    decimal,
    number,
    percent,
    plain,
    signed,
    significant,
    timestamp,
)
from reports.inputs import ReportInputs, Simulation

TOTAL = "TOTAL"
# Small multiples beyond a dozen panels get unreadable and heavy at 50 audiences.
MAX_PANELS = 12
# Relative duality gap under which the plan is called proven optimal (1e-4 %).
PROVEN_GAP = 1e-6
AUDIENCE_SERIES = ("current_spend", "budget", "cpa", "marginal_cpa")
STATS = ("mean", "p10", "p50", "p90")
TRUTH_STATS = ("mean", "p10", "p90")
# (metric, which is best, display) for the model-health tables.
HEALTH_METRICS = (
    ("auc", max, lambda v: decimal(v, 3)),
    ("log_loss", min, significant),
    ("ece", min, significant),
)


def ordered_rows(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Plan audiences, largest budget first (name breaks ties)."""
    return sorted(
        plan["audiences"], key=lambda r: (-(number(r["budget"]) or 0.0), r["audience"])
    )


def _sim_value(
    frame: pd.DataFrame | None, audience: str, metric: str, stat: str
) -> float | None:
    """One statistic from a simulation summary, or None when absent."""
    if frame is None:
        return None
    hit = frame[(frame["audience"] == audience) & (frame["metric"] == metric)]
    return number(hit[stat].iloc[0]) if len(hit) else None


def _sim_range(sim: Simulation | None, audience: str, metric: str) -> str | None:
    """'low – high' P10-P90 display for one audience and metric, or None."""
    if sim is None:
        return None
    low = _sim_value(sim.summary, audience, metric, "p10")
    high = _sim_value(sim.summary, audience, metric, "p90")
    digits = 1 if metric == "conversions" else 0
    return f"{decimal(low, digits)} – {decimal(high, digits)}"


def headline(inputs: ReportInputs) -> dict[str, Any]:
    """Cards and plain-language assurance sentences for the summary."""
    plan, sim = inputs.plan, inputs.simulation
    totals, objective = plan["totals"], plan["objective"]
    return {
        "cards": [
            _budget_card(plan),
            _outcome_card(text.CARD_CONVERSIONS, totals, sim, "conversions", 1),
            _outcome_card(text.CARD_VALUE, totals, sim, "value", 0),
            {
                "label": text.CARD_CPA,
                "value": decimal(totals.get("cpa")),
                "sub": [text.CARD_ROAS.format(roas=decimal(totals.get("roas")))],
            },
            _uplift_card(plan),
        ],
        "assurance": [
            s
            for s in (
                _gap_sentence(plan.get("certificate") or {}, objective),
                _dual_sentence(plan.get("certificate") or {}, objective),
                _price_sentence(plan.get("sensitivities") or {}, objective),
            )
            if s
        ],
    }


def _budget_card(plan: dict[str, Any]) -> dict[str, Any]:
    days = number(plan["days"]) or 0.0
    budget = number(plan["budget"])
    daily = budget / days if budget is not None and days > 0 else None
    return {
        "label": text.CARD_BUDGET,
        "value": decimal(budget),
        "sub": [
            text.CARD_BUDGET_SUB.format(days=decimal(days, 0), daily=decimal(daily)),
            text.CARD_OBJECTIVE.format(objective=plan["objective"]),
        ],
    }


def _outcome_card(
    title: str, totals: dict, sim: Simulation | None, metric: str, digits: int
) -> dict[str, Any]:
    low = _sim_value(sim.summary if sim else None, TOTAL, metric, "p10")
    high = _sim_value(sim.summary if sim else None, TOTAL, metric, "p90")
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


def _uplift_card(plan: dict[str, Any]) -> dict[str, Any]:
    totals = plan["totals"]
    if number(totals.get("current_conversions")) is None:
        return {"label": text.CARD_UPLIFT, "value": "–", "sub": [text.CARD_UPLIFT_NONE]}
    current = text.CARD_UPLIFT_SUB.format(
        conversions=decimal(totals.get("current_conversions"), 1),
        spend=decimal(totals.get("current_spend")),
        cpa=decimal(totals.get("current_cpa")),
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


def _dual_sentence(certificate: dict[str, Any], objective: str) -> str | None:
    dual = number(certificate.get("dual_price"))
    marginal = number(certificate.get("marginal_cpa_at_optimum"))
    if dual is None or marginal is None:
        return None
    return text.DUAL_PRICE.format(
        marginal_cpa=decimal(marginal), dual=decimal(dual, 3), objective=objective
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


def _plan_cells(row: dict[str, Any], sim: Simulation | None) -> dict[str, dict]:
    """Cells of one plan-table row keyed by column."""
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
    }
    sim_range = _sim_range(sim, row["audience"], "conversions")
    if sim_range is not None:
        p10 = _sim_value(sim.summary, row["audience"], "conversions", "p10")
        cells["sim_range"] = _cell(sim_range, p10)
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
        cells["sim_range"] = _cell(_sim_range(sim, TOTAL, "conversions"))
    return cells


def plan_table(inputs: ReportInputs) -> dict[str, Any]:
    """Columns, one row per audience (largest budget first) and the totals row."""
    sim = inputs.simulation
    columns = [c for c in text.COLUMNS if c[0] != "sim_range" or sim is not None]
    keys = [c[0] for c in columns]
    rows = [_plan_cells(r, sim) for r in ordered_rows(inputs.plan)]
    return {
        "columns": [{"key": k, "label": name, "unit": u} for k, name, u in columns],
        "rows": [[cells[k] for k in keys] for cells in rows],
        "total": [cells[k] for cells in [_total_cells(inputs.plan, sim)] for k in keys],
    }


def plan_charts(inputs: ReportInputs) -> dict[str, Markup | None]:
    """Spend against current, response curves (None without any curve) and the
    marginal-CPA chart."""
    rows = ordered_rows(inputs.plan)
    names = [r["audience"] for r in rows]
    column = {k: [number(r[k]) for r in rows] for k in AUDIENCE_SERIES}
    certificate = inputs.plan.get("certificate") or {}
    panels = _curve_panels(rows, inputs.curves)
    return {
        "spend": Markup(
            charts.spend_vs_current(
                names, _nan(column["current_spend"]), _nan(column["budget"])
            )
        ),
        "curves": Markup(charts.response_curves(panels)) if panels else None,
        "marginal": Markup(
            charts.marginal_cpa(
                names,
                _nan(column["cpa"]),
                _nan(column["marginal_cpa"]),
                number(certificate.get("marginal_cpa_at_optimum")),
            )
        ),
    }


def _nan(values: list[float | None]) -> list[float]:
    """None as NaN, which matplotlib leaves out."""
    return [np.nan if v is None else v for v in values]


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
                "spend": _nan([number(v) for v in curve["spend"]]),
                "conversions": _nan([number(v) for v in curve["conversions"]]),
                "current": _nan(
                    [number(row["current_spend"]), number(row["current_conversions"])]
                ),
                "planned": _nan(
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
        )
    )


def simulation(inputs: ReportInputs) -> dict[str, Any] | None:
    """Intro, charts and the TOTAL table of the simulation section."""
    sim = inputs.simulation
    if sim is None:
        return None
    intro = (
        text.SIM_INTRO.format(runs=f"{sim.runs:,}")
        if sim.runs
        else text.SIM_INTRO_NO_RUNS
    )
    return {
        "intro": intro,
        "truth": sim.truth is not None,
        "fan": _fan_chart(sim, inputs.plan["totals"]),
        "intervals": _interval_chart(sim, ordered_rows(inputs.plan)),
        "head": text.SIM_TABLE_HEAD
        + (text.SIM_TRUTH_HEAD if sim.truth is not None else []),
        "rows": _sim_rows(sim),
    }


def _sim_rows(sim: Simulation) -> list[list[str]]:
    """TOTAL statistics per metric; truth columns appended when present."""
    rows = []
    for metric, name in text.SIM_METRICS.items():
        digits = {"impressions": 0, "clicks": 0, "conversions": 1, "value": 0}.get(
            metric, 2
        )
        stats = [_sim_value(sim.summary, TOTAL, metric, s) for s in STATS]
        if sim.truth is not None:
            stats += [_sim_value(sim.truth, TOTAL, metric, s) for s in TRUTH_STATS]
        rows.append([name, *(decimal(v, digits) for v in stats)])
    return rows


def _fan_chart(sim: Simulation, totals: dict[str, Any]) -> Markup | None:
    """Hourly P10/P50/P90 over sampled runs of TOTAL cumulative spend/conversions."""
    if sim.paths is None or sim.paths.empty:
        return None
    paths = sim.paths
    total = paths[paths["audience"] == TOTAL]
    if total.empty:
        total = paths.groupby(["run", "hour"], as_index=False)[
            ["cumulative_spend", "cumulative_conversions"]
        ].sum()
    bands = []
    for column, ylabel, planned in (
        ("cumulative_spend", text.SIM_SPEND_YLABEL, "expected_spend"),
        ("cumulative_conversions", text.SIM_CONV_YLABEL, "expected_conversions"),
    ):
        grid = total.pivot_table(index="hour", columns="run", values=column)
        p10, p50, p90 = np.nanquantile(grid.to_numpy(float), [0.1, 0.5, 0.9], axis=1)
        bands.append(
            {
                "p10": p10,
                "p50": p50,
                "p90": p90,
                "ylabel": ylabel,
                "planned": number(totals.get(planned)),
            }
        )
    hours = grid.index.to_numpy(float)
    return Markup(charts.simulation_fan(hours, bands))


def _interval_chart(sim: Simulation, rows: list[dict]) -> Markup:
    """Per-audience P10-P90 conversions, forecast and (if present) truth."""
    names = [r["audience"] for r in rows]

    def stats(frame: pd.DataFrame) -> dict[str, list[float]]:
        return {
            s: _nan([_sim_value(frame, n, "conversions", s) for n in names])
            for s in ("p10", "p50", "p90")
        }

    return Markup(
        charts.simulation_intervals(
            names,
            stats(sim.summary),
            stats(sim.truth) if sim.truth is not None else None,
            _nan([number(r["expected_conversions"]) for r in rows]),
        )
    )


def whatif(inputs: ReportInputs) -> dict[str, Any] | None:
    """What-if chart and table, scenarios in file order."""
    frame = inputs.whatif
    if frame is None:
        return None
    scenarios = list(dict.fromkeys(frame["scenario"].astype(str)))
    variants = {}
    for key in dict.fromkeys(frame["variant"].astype(str)):
        sub = frame[frame["variant"].astype(str) == key]
        by_name = dict(
            zip(sub["scenario"].astype(str), sub["expected_conversions"], strict=True)
        )
        variants[text.WHATIF_VARIANTS.get(key, key)] = _nan(
            [number(by_name.get(s)) for s in scenarios]
        )
    baseline = number(inputs.plan["totals"]["expected_conversions"]) or 0.0
    rows = [
        [
            str(r.scenario),
            text.WHATIF_VARIANTS.get(str(r.variant), str(r.variant)),
            decimal(r.budget),
            decimal(r.expected_spend),
            decimal(r.expected_conversions, 1),
            decimal(r.expected_value, 0),
            decimal(r.cpa),
            decimal(r.roas),
        ]
        for r in frame.itertuples(index=False)
    ]
    chart = Markup(charts.whatif(scenarios, variants, baseline)) if scenarios else None
    return {"chart": chart, "rows": rows}


def model_health(inputs: ReportInputs) -> dict[str, Any]:
    """Validation tables per head, the calibration chart and training facts."""
    rates = inputs.metrics["rates"]
    heads = {h: v for h, v in rates["heads"].items() if isinstance(v, dict)}
    tables = [
        {"title": text.HEADS.get(h, h), "rows": _metric_rows(v)}
        for h, v in heads.items()
    ]
    series = [
        {"title": text.HEADS.get(h, h), "series": _calibration_series(v)}
        for h, v in heads.items()
    ]
    series = [s for s in series if s["series"]]
    rows = rates.get("rows") or {}
    return {
        "tables": tables,
        "calibration": Markup(charts.calibration(series)) if series else None,
        "training": text.HEALTH_TRAINING.format(
            validation=decimal(rows.get("validation"), 0),
            train=decimal(rows.get("train"), 0),
            best_epoch=rates.get("best_epoch", text.NOT_AVAILABLE),
            epochs_run=rates.get("epochs_run", text.NOT_AVAILABLE),
        ),
        "spread": _spread_text(inputs.metrics.get("market", {})),
    }


def _spread_text(market: dict[str, Any]) -> str | None:
    """Plain words on the within-audience spread fitted to the log, if any."""
    fit = (market.get("rate_spread") or {}).get("conversion")
    if not isinstance(fit, dict) or number(fit.get("slope")) is None:
        return None
    slope, sd = float(fit["slope"]), number(fit.get("sd"))
    words = {"events": decimal(fit.get("events"), 0), "slope": decimal(slope)}
    words["sd"] = decimal(sd)
    if sd is not None and abs(slope - 1.0) < sd:
        return text.HEALTH_SPREAD_SAME.format(**words)
    direction = "more" if slope > 1.0 else "less"
    return text.HEALTH_SPREAD.format(direction=direction, **words)


def _predictors(head: dict[str, Any]) -> dict[str, dict]:
    """Predictor key -> metrics dict, for the model and each baseline."""
    found = {k: head[k] for k in ("model", "model_uncalibrated") if k in head}
    found |= head.get("baselines") or {}
    return {k: v for k, v in found.items() if isinstance(v, dict)}


def _metric_rows(head: dict[str, Any]) -> list[dict[str, Any]]:
    """AUC, log loss and ECE per predictor; the best shown value of each is flagged.

    Best is judged on the displayed text, so predictors that tie on screen are
    flagged together.
    """
    found = _predictors(head)
    rows = [
        {
            "name": text.PREDICTORS.get(key, key),
            "cells": [
                {"text": show(m.get(metric))} for metric, _, show in HEALTH_METRICS
            ],
            "values": [number(m.get(metric)) for metric, _, _ in HEALTH_METRICS],
        }
        for key, m in found.items()
    ]
    for i, (_, pick, show) in enumerate(HEALTH_METRICS):
        values = [r["values"][i] for r in rows if r["values"][i] is not None]
        best = show(pick(values)) if values else None
        for row in rows:
            row["cells"][i]["best"] = row["cells"][i]["text"] == best
    return rows


def _calibration_series(head: dict[str, Any]) -> dict[str, tuple[list, list]]:
    """Display name -> (predicted, observed) per bin, raw network left out."""
    series = {}
    for key, metrics in _predictors(head).items():
        bins = metrics.get("calibration")
        if key == "model_uncalibrated" or not isinstance(bins, list) or not bins:
            continue
        series[text.PREDICTORS.get(key, key)] = (
            [b["mean_predicted"] for b in bins],
            [b["observed_rate"] for b in bins],
        )
    return series


def landscapes(inputs: ReportInputs) -> dict[str, Any]:
    """Landscape fit charts (largest budgets) and a table for every audience."""
    market = inputs.metrics["market"]
    found = {
        str(item.get("audience")): item
        for item in market["landscapes"]
        if isinstance(item, dict)
    }
    order = [r["audience"] for r in ordered_rows(inputs.plan) if r["audience"] in found]
    order += [name for name in found if name not in order]
    panels = [_landscape_panel(name, found[name]) for name in order[:MAX_PANELS]]
    naive = any(p["naive"] is not None for p in panels)
    return {
        "intro": text.LANDSCAPE_INTRO.format(
            naive=text.LANDSCAPE_NAIVE if naive else ""
        ),
        "note": text.LANDSCAPE_SUBSET.format(shown=len(panels), total=len(order))
        if len(panels) < len(order)
        else None,
        "chart": Markup(charts.landscapes(panels)) if panels else None,
        "rows": [_landscape_row(name, found[name]) for name in order],
    }


def _landscape_panel(name: str, item: dict[str, Any]) -> dict[str, Any]:
    points = item.get("win_rate_by_bid") or []
    has_naive = bool(points) and all(
        isinstance(p, dict) and "naive_win_rate" in p for p in points
    )
    return {
        "name": name,
        # Bids are per impression in the files; the report shows CPM throughout.
        "bid": [1000.0 * _point(p, "bid") for p in points],
        "empirical": [_point(p, "empirical_win_rate") for p in points],
        "fitted": [_point(p, "fitted_win_rate") for p in points],
        "naive": [_point(p, "naive_win_rate") for p in points] if has_naive else None,
    }


def _point(point: Any, key: str) -> float:
    """One number of a win-rate point; NaN (not drawn) when missing."""
    value = number(point.get(key)) if isinstance(point, dict) else None
    return np.nan if value is None else value


def _landscape_row(name: str, item: dict[str, Any]) -> list[str]:
    family = str(item.get("family", text.NOT_AVAILABLE))
    return [
        name,
        decimal(item.get("auctions"), 0),
        decimal(item.get("won"), 0),
        text.FAMILIES.get(family, family),
        percent(item.get("max_abs_win_rate_error")),
        percent(item.get("naive_max_abs_win_rate_error")),
    ]


def provenance(inputs: ReportInputs, generated: str) -> dict[str, Any]:
    """Key facts, scenario settings, versions and the files this report read."""
    model, plan = inputs.model, inputs.plan
    prov = plan.get("provenance") or {}
    auction = str(plan.get("auction_type") or model.get("auction_type") or "")
    facts = [
        (text.PROV_MODEL_ID, plain(prov.get("model_id") or model.get("model_id"))),
        (text.PROV_MODEL_CREATED, timestamp(model.get("created"))),
        (text.PROV_EVENTS, plain(model.get("events_file"))),
        (text.PROV_EVENT_ROWS, decimal(model.get("rows"), 0)),
        (
            text.PROV_EVENTS_SHA,
            plain(prov.get("events_sha256") or model.get("events_sha256")),
        ),
        (text.PROV_SETTINGS, plain(prov.get("settings_file"))),
        (text.PROV_SETTINGS_SHA, plain(prov.get("settings_sha256"))),
        (text.PROV_SCENARIO_FILE, plain(prov.get("scenario_file"))),
        (text.PROV_SCENARIO_SHA, plain(prov.get("scenario_sha256"))),
        (text.PROV_SEED, plain(_first(prov.get("seed"), model.get("seed")))),
        (text.PROV_AUCTION, text.AUCTIONS.get(auction, auction)),
        (text.PROV_PLAN_CREATED, timestamp(plan.get("created"))),
        (text.PROV_REPORT_CREATED, generated),
    ]
    scenario = plan.get("scenario") or {}
    return {
        "facts": facts,
        "scenario": [(str(k), _setting(v)) for k, v in scenario.items()],
        "versions": _versions(model.get("versions") or {}, prov.get("versions") or {}),
        "files": inputs.files,
    }


def _first(*values: Any) -> Any:
    """The first value that is not None."""
    return next((v for v in values if v is not None), None)


def _setting(value: Any) -> str:
    """A scenario setting as text: JSON for lists and tables, 'none' for null."""
    if value is None:
        return text.PROV_NONE
    return value if isinstance(value, str) else json.dumps(value)


def _versions(
    model: dict[str, Any], plan: dict[str, Any]
) -> list[tuple[str, str, str]]:
    """(package, version at training, version at planning) for every package."""
    names = list(dict.fromkeys([*model, *plan]))
    return [
        (n, str(model.get(n, text.NOT_AVAILABLE)), str(plan.get(n, text.NOT_AVAILABLE)))
        for n in names
    ]
