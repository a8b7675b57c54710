"""Outcome sections: the simulation's bands and the what-if comparison."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from reports import charts, text
from reports.formatting import (
    decimal,
    number,
)
from reports.inputs import ReportInputs, Simulation
from reports.sections.common import (
    STATS,
    TOTAL,
    TRUTH_STATS,
    chart_name,
    nan_list,
    ordered_rows,
    sim_value,
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
        "fan": _fan_chart(sim, inputs.plan),
        "fan_note": _fan_note(sim),
        "intervals": _interval_chart(sim, ordered_rows(inputs.plan)),
        "head": text.SIM_TABLE_HEAD
        + (text.SIM_TRUTH_HEAD if sim.truth is not None else []),
        "rows": _sim_rows(sim, inputs.currency),
    }


def _fan_note(sim: Simulation) -> str | None:
    """How many runs the pacing chart shows, against the table's runs."""
    if sim.paths is None or sim.paths.empty:
        return None
    kept = int(sim.paths["run"].nunique())
    runs = f"{sim.runs:,}" if sim.runs else text.SIM_ALL_RUNS
    return text.SIM_FAN_NOTE.format(kept=f"{kept:,}", runs=runs)


def _sim_rows(sim: Simulation, currency: str) -> list[list[str]]:
    """TOTAL statistics per metric; truth columns appended when present."""
    rows = []
    for metric, name in text.SIM_METRICS.items():
        digits = {"impressions": 0, "clicks": 0, "conversions": 1, "value": 0}.get(
            metric, 2
        )
        stats = [sim_value(sim.summary, TOTAL, metric, s) for s in STATS]
        if sim.truth is not None:
            stats += [sim_value(sim.truth, TOTAL, metric, s) for s in TRUTH_STATS]
        if metric in text.SIM_MONEY:
            name = text.MONEY_LABEL.format(label=name, currency=currency)
        rows.append([name, *(decimal(v, digits) for v in stats)])
    return rows


def fan_bands(
    sim: Simulation, plan: dict[str, Any]
) -> tuple[np.ndarray, list[dict]] | None:
    """Hourly pacing of the runs that kept paths: (hours, bands), or None.

    Only the first runs keep hourly paths, so their totals need not match the
    table's (all runs); the bands therefore show shares, not totals: cumulative
    spend as a share of the plan's budget, cumulative conversions as a share of
    each run's own total over the horizon. Each band holds hourly ``p10``,
    ``p50``, ``p90`` fractions, ``planned`` (a fraction, or None) and ``ylabel``.
    """
    if sim.paths is None or sim.paths.empty:
        return None
    paths = sim.paths
    total = paths[paths["audience"] == TOTAL]
    if total.empty:
        total = paths.groupby(["run", "hour"], as_index=False)[
            ["cumulative_spend", "cumulative_conversions"]
        ].sum()
    budget = number(plan["budget"]) or 0.0
    spend = total.pivot_table(index="hour", columns="run", values="cumulative_spend")
    conv = total.pivot_table(
        index="hour", columns="run", values="cumulative_conversions"
    )
    final = conv.to_numpy(float)[-1]
    shares = (
        (spend.to_numpy(float) / budget if budget > 0 else None),
        conv.to_numpy(float) / np.where(final > 0, final, np.nan),
    )
    planned = number(plan["totals"].get("expected_spend"))
    bands = []
    for share, ylabel, line in zip(
        shares,
        (text.SIM_SPEND_YLABEL, text.SIM_CONV_YLABEL),
        (planned / budget if planned is not None and budget > 0 else None, None),
        strict=True,
    ):
        if share is None:
            continue
        p10, p50, p90 = np.nanquantile(share, [0.1, 0.5, 0.9], axis=1)
        bands.append(
            {"p10": p10, "p50": p50, "p90": p90, "ylabel": ylabel, "planned": line}
        )
    return spend.index.to_numpy(float), bands


def _fan_chart(sim: Simulation, plan: dict[str, Any]) -> Markup | None:
    """The pacing chart of :func:`fan_bands`."""
    found = fan_bands(sim, plan)
    return None if found is None else Markup(charts.simulation_fan(*found))


def _interval_chart(sim: Simulation, rows: list[dict]) -> Markup:
    """Per-audience P10-P90 conversions, forecast and (if present) truth."""
    names = [r["audience"] for r in rows]

    def stats(frame: pd.DataFrame) -> dict[str, list[float]]:
        return {
            s: nan_list([sim_value(frame, n, "conversions", s) for n in names])
            for s in ("p10", "p50", "p90")
        }

    return Markup(
        charts.simulation_intervals(
            [chart_name(r) for r in rows],
            stats(sim.summary),
            stats(sim.truth) if sim.truth is not None else None,
            nan_list([number(r["expected_conversions"]) for r in rows]),
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
        variants[text.WHATIF_VARIANTS.get(key, key)] = nan_list(
            [number(by_name.get(s)) for s in scenarios]
        )
    baseline = number(inputs.plan["totals"]["expected_conversions"]) or 0.0
    breaks = (
        frame["breaks_scenario"].fillna("").astype(str)
        if "breaks_scenario" in frame.columns
        else pd.Series([""] * len(frame))
    )
    rows = [
        {
            "cells": [
                str(r.scenario),
                text.WHATIF_VARIANTS.get(str(r.variant), str(r.variant)),
                decimal(r.budget),
                decimal(r.expected_spend),
                decimal(r.expected_conversions, 1),
                decimal(r.expected_value, 0),
                decimal(r.cpa),
                decimal(r.roas),
            ],
            "breaks": text.WHATIF_BREAKS.format(reason=reason) if reason else "",
        }
        for r, reason in zip(frame.itertuples(index=False), breaks, strict=True)
    ]
    chart = Markup(charts.whatif(scenarios, variants, baseline)) if scenarios else None
    head = [
        text.MONEY_LABEL.format(label=h, currency=inputs.currency)
        if h in text.WHATIF_MONEY
        else h
        for h in text.WHATIF_HEAD
    ]
    return {
        "chart": chart,
        "rows": rows,
        "head": head,
        "broken": sum(bool(b) for b in breaks),
    }
