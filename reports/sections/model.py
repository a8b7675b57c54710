"""Model sections: model health, bid landscapes and the provenance block."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from markupsafe import Markup

from reports import charts, text
from reports.formatting import (
    decimal,
    number,
    percent,
    plain,
    significant,
    timestamp,
)
from reports.inputs import ReportInputs
from reports.sections.common import (
    MAX_PANELS,
    ordered_rows,
)

# (metric, which is best, display) for the model-health tables.
HEALTH_METRICS = (
    ("auc", max, lambda v: decimal(v, 3)),
    ("log_loss", min, significant),
    ("ece", min, significant),
)


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
    market = inputs.metrics.get("market", {})
    daily = market.get("input_kind") == "daily"
    return {
        "intro": text.DAILY_HEALTH_INTRO if daily else None,
        "verdicts": [v for h, head in heads.items() if (v := verdict(h, head))],
        "tables": tables + (_daily_tables(market) if daily else []),
        "calibration": Markup(charts.calibration(series)) if series else None,
        "training": text.DAILY_TRAINING
        if daily
        else text.HEALTH_TRAINING.format(
            validation=decimal(rows.get("validation"), 0),
            train=decimal(rows.get("train"), 0),
            best_epoch=rates.get("best_epoch", text.NOT_AVAILABLE),
            epochs_run=rates.get("epochs_run", text.NOT_AVAILABLE),
        ),
        "spread": _spread_text(inputs.metrics.get("market", {})),
    }


def _factor(level: dict[str, Any], head: str) -> str:
    """'1.44x ± 0.04' of a rate effect (the ± from its sd on the log scale)."""
    factor, sd = (
        number(level.get(f"{head}_factor")),
        number(level.get(f"{head}_sd_log")),
    )
    if factor is None:
        return text.NOT_AVAILABLE
    spread = f" ± {decimal(factor * sd)}" if sd is not None else ""
    return f"{decimal(factor)}x{spread}"


def _cells(*texts: str) -> list[dict[str, Any]]:
    """Health-table cells of plain texts (none flagged best)."""
    return [{"best": False, "text": t} for t in texts]


def _daily_tables(market: dict[str, Any]) -> list[dict[str, Any]]:
    """A daily model's rate effects per breakdown and per weekday (with the
    weekday's volume factor), as health tables with their own headers."""
    effects = market.get("rate_effects") or {}
    tables = [
        {
            "title": text.DAILY_EFFECT_TITLE.format(field=field),
            "head": text.DAILY_EFFECT_HEAD,
            "rows": [
                {
                    "name": str(e.get("level")),
                    "cells": _cells(
                        decimal(e.get("impressions"), 0),
                        _factor(e, "conversion"),
                        _factor(e, "click"),
                    ),
                }
                for e in levels
            ],
        }
        for field, levels in effects.items()
        if field != "weekday" and isinstance(levels, list)
    ]
    week = market.get("weekday_volume") or {}
    volume = week.get("factors") or {}
    days = {str(e.get("level")): e for e in effects.get("weekday") or []}
    rows = []
    for day in volume or days:
        found = days.get(day)
        rows.append(
            {
                "name": day,
                "cells": _cells(
                    f"{decimal(volume[day])}x"
                    if week.get("used") and day in volume
                    else text.DAILY_VOLUME_FLAT,
                    _factor(found, "conversion") if found else text.NOT_AVAILABLE,
                    _factor(found, "click") if found else text.NOT_AVAILABLE,
                ),
            }
        )
    if rows:
        tables.append(
            {
                "title": text.DAILY_WEEKDAY_TITLE,
                "head": text.DAILY_WEEKDAY_HEAD,
                "rows": rows,
            }
        )
    return tables


def verdict(name: str, head: dict[str, Any]) -> dict[str, Any] | None:
    """Plain-words verdict on one head: does it rank better than its baselines?

    Returns ``{"ok": bool, "text": str}``, or None without a model AUC. A
    conversion head that is a post-click prior (no conversions in the log) is
    never ok: its forecasts are a guess. A model
    below 0.5 AUC is worse than random; below logistic regression or the audience
    average it adds nothing the simple baseline would not give.
    """
    if name == "conversion" and isinstance(head.get("prior"), dict):
        prior = head["prior"]
        words = {
            "conversions": decimal(prior.get("conversions"), 0),
            "clicks": decimal(prior.get("clicks"), 0),
            "rate": percent(prior.get("rate"), digits=2),
        }
        return {"ok": False, "text": text.VERDICT_PRIOR.format(**words)}
    model = number((head.get("model") or {}).get("auc"))
    if model is None:
        return None
    title = text.HEADS.get(name, name).lower()
    bases = {
        text.PREDICTORS.get(k, k).lower(): number(v.get("auc"))
        for k, v in (head.get("baselines") or {}).items()
        if isinstance(v, dict) and number(v.get("auc")) is not None
    }
    words = {"head": title, "auc": decimal(model, 3)}
    if model < 0.5:
        return {"ok": False, "text": text.VERDICT_RANDOM.format(**words)}
    beaten = {k: v for k, v in bases.items() if v > model}
    if beaten:
        base, auc = max(beaten.items(), key=lambda kv: kv[1])
        words |= {"baseline": base, "baseline_auc": decimal(auc, 3)}
        return {"ok": False, "text": text.VERDICT_WORSE.format(**words)}
    shown = ", ".join(f"{k} {decimal(v, 3)}" for k, v in bases.items())
    return {"ok": True, "text": text.VERDICT_OK.format(baselines=shown, **words)}


def model_warnings(inputs: ReportInputs) -> list[str]:
    """The conversion head's verdict when it should stop a planner (plans rest on
    it), for the report's warnings list."""
    head = inputs.metrics["rates"]["heads"].get("conversion")
    found = verdict("conversion", head) if isinstance(head, dict) else None
    return [found["text"]] if found and not found["ok"] else []


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
    # plan.json says how outcome rates rise with the price (older plans do not).
    rates = inputs.plan.get("price_rates")
    if not isinstance(rates, dict):
        rates = {"estimated": False, "says": text.PRICE_RATE_OLD_PLAN}
    per_audience = rates.get("audiences")
    per_audience = per_audience if isinstance(per_audience, dict) else {}
    return {
        "intro": text.LANDSCAPE_INTRO.format(
            naive=text.LANDSCAPE_NAIVE if naive else ""
        ),
        "note": text.LANDSCAPE_SUBSET.format(shown=len(panels), total=len(order))
        if len(panels) < len(order)
        else None,
        "chart": Markup(charts.landscapes(panels, inputs.currency)) if panels else None,
        "rows": [
            _landscape_row(name, found[name], per_audience.get(name)) for name in order
        ],
        "price_note": _price_note(rates),
    }


def _price_note(rates: dict[str, Any]) -> str:
    """Plain words under the landscape table on the price-rate fit."""
    if not rates.get("estimated"):
        return str(rates.get("says", text.PRICE_RATE_OLD_PLAN))
    pooled = rates.get("spread") == 0.0
    return text.PRICE_RATE_NOTE.format(
        pooled=decimal(rates.get("pooled_doubling_factor")),
        pooling=text.PRICE_RATE_POOLED if pooled else text.PRICE_RATE_SHRUNK,
    )


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


def _landscape_row(
    name: str, item: dict[str, Any], rate: dict[str, Any] | None
) -> list[str]:
    family = str(item.get("family", text.NOT_AVAILABLE))
    doubling = (
        text.PRICE_RATE_CELL.format(
            mid=decimal(rate.get("doubling_factor")),
            low=decimal(rate.get("doubling_factor_p10")),
            high=decimal(rate.get("doubling_factor_p90")),
        )
        if isinstance(rate, dict)
        else text.NOT_AVAILABLE
    )
    return [
        name,
        decimal(item.get("auctions"), 0),
        decimal(item.get("won"), 0),
        text.FAMILIES.get(family, family),
        percent(item.get("max_abs_win_rate_error")),
        percent(item.get("naive_max_abs_win_rate_error")),
        doubling,
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
