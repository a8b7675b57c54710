"""Simulator stage: replay a plan's bids and budgets on a market (fitted or true),
auction by auction, many times over, and summarize the spread of the outcomes.

Modules: ``tables`` (lookup tables of a market and a plan), ``kernel`` (one
replication, pure JAX), ``run`` (replications batched and split over devices),
``summary`` (pandas tables of the replications), ``uncertainty`` (the conversion-
rate posterior and its draws, so the band covers what the log leaves open), ``band``
(the band's calibration on the log's held-out days, from ``band.json``).
"""

from simulations.simulator.kernel import simulate_one
from simulations.simulator.run import PACINGS, SimulationResult, simulate
from simulations.simulator.summary import (
    METRICS,
    TOTAL,
    budget_out_summary,
    hourly_paths,
    summarize,
)

__all__ = [
    "METRICS",
    "PACINGS",
    "TOTAL",
    "SimulationResult",
    "budget_out_summary",
    "hourly_paths",
    "simulate",
    "simulate_one",
    "summarize",
]
