"""Synthetic markets with known truth, for the demo, the tests and the benchmarks.

``generate`` draws a market (audiences, strata, price landscapes, rates) and its
event log and audience settings; ``truth`` scores any plan exactly on the true
market (:class:`Truth`: expected outcome of a plan, the exact optimal plan).
"""

from simulations.synthetic.generate import (
    audience_settings,
    generate_events,
    make_truth,
)
from simulations.synthetic.truth import Truth

__all__ = ["Truth", "audience_settings", "generate_events", "make_truth"]
