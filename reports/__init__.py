"""Report stage: plan, model and simulation results as one offline HTML file."""

from reports.render import write_report

__all__ = ["write_report"]
