"""Report stage: result files -> one self-contained HTML file.

The page is rendered by jinja2 (autoescape on) from ``templates/report.html.j2``
with inline CSS, inline SVG charts and a tiny inline table sorter: it makes no
network request and can be mailed as a single file.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import jinja2

from optimizer.io.files import atomic_path
from reports import sections, text
from reports.formatting import timestamp
from reports.inputs import ReportInputs, read_inputs
from reports.sections.backtest import backtest as backtest_section
from reports.sections.rules import bid_rules as bid_rules_section

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reports", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def build_context(inputs: ReportInputs, generated: str) -> dict[str, Any]:
    """Everything the template shows, as display strings and SVG markup.

    Args:
        inputs: the result files, read and checked.
        generated: the report's creation time, as displayed.
    """
    plan, model = inputs.plan, inputs.model
    return {
        "t": text,
        "subtitle": text.SUBTITLE.format(
            created=timestamp(plan.get("created")),
            model_id=model.get("model_id"),
            generated=generated,
        ),
        "money_note": text.MONEY_NOTE.format(currency=inputs.currency),
        "currency": inputs.currency,
        "headline": sections.headline(inputs),
        "table": sections.plan_table(inputs),
        "charts": sections.plan_charts(inputs),
        "curves_note": sections.curves_note(inputs),
        "frontier": sections.frontier_chart(inputs),
        "slider": sections.budget_slider(inputs),
        "simulation": sections.simulation(inputs),
        "whatif": sections.whatif(inputs),
        "health": sections.model_health(inputs),
        "landscapes": sections.landscapes(inputs),
        "warnings": sections.model_warnings(inputs)
        + [
            sections.warning_text(w, inputs.currency)
            for w in plan.get("warnings") or []
        ],
        "provenance": sections.provenance(inputs, generated),
        "backtest": backtest_section(inputs.backtest),
        "bid_rules": bid_rules_section(inputs),
    }


def render_html(inputs: ReportInputs, generated: str) -> str:
    """The report page as one HTML string."""
    return _ENV.get_template("report.html.j2").render(build_context(inputs, generated))


def write_report(
    model_dir: str | os.PathLike[str],
    plan_dir: str | os.PathLike[str],
    out_file: str | os.PathLike[str],
    simulation_dir: str | os.PathLike[str] | None = None,
    whatif_dir: str | os.PathLike[str] | None = None,
    frontier_dir: str | os.PathLike[str] | None = None,
    currency: str | None = None,
    backtest_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Read the result folders and write the HTML report atomically.

    Args:
        model_dir: folder written by ``adplan train`` (model.json, metrics.json).
        plan_dir: folder written by ``adplan plan`` (plan.json, curves.json).
        out_file: the HTML file to write; its folder is created if needed.
        simulation_dir: optional ``adplan simulate`` output (summary.csv, ...).
        whatif_dir: optional ``adplan whatif`` output (comparison.csv).
        frontier_dir: optional ``adplan frontier`` output (frontier.csv).
        currency: money unit shown; default plan.json's, else "currency units".
        backtest_dir: optional ``adplan backtest`` output (backtest.json).

    Returns:
        The path written.

    Raises:
        InputError: a folder or required file is missing or garbled.
    """
    inputs = read_inputs(
        model_dir,
        plan_dir,
        simulation_dir,
        whatif_dir,
        frontier_dir,
        currency=currency,
        backtest_dir=backtest_dir,
    )
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = render_html(inputs, generated)
    out = Path(out_file)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
