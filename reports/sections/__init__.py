"""Report sections: the content of each section, ready for the template.

Each builder takes :class:`~reports.inputs.ReportInputs` (or parts of it) and returns
plain dicts of display strings and chart SVGs. Only display work happens here:
ordering, formatting, and aggregation of simulated paths into bands. Results
themselves come from the files.
"""

from reports.sections.common import warning_text
from reports.sections.model import (
    landscapes,
    model_health,
    model_warnings,
    provenance,
)
from reports.sections.outcomes import simulation, whatif
from reports.sections.plan import (
    curves_note,
    frontier_chart,
    headline,
    plan_charts,
    plan_table,
)
from reports.sections.slider import budget_slider

__all__ = [
    "budget_slider",
    "curves_note",
    "frontier_chart",
    "headline",
    "landscapes",
    "model_health",
    "model_warnings",
    "plan_charts",
    "plan_table",
    "provenance",
    "simulation",
    "warning_text",
    "whatif",
]
