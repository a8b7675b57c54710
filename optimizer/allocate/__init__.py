"""Allocate: bids and budgets that maximize a plan's objective (pure JAX).

A :class:`Problem` (market, horizon, budget, bounds as arrays) and a static
:class:`SolveConfig` (objective, auction type, spend_all) go in; an
:class:`Allocation` (plan plus certificate) comes out. Modules: config, problem,
response (per-audience curves), allocation (the plan and its checks), allocator,
throttle (a higher bid on a share of the auctions), sharded (over devices), exact
(reference solver), tables and tabulated (the fast exact solver). No pandas, no files.
"""

from optimizer.allocate.allocator import Allocation, allocate
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import Problem, make_problem

__all__ = ["Allocation", "Problem", "SolveConfig", "allocate", "make_problem"]
