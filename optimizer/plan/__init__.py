"""Plan: from a fitted market and a planner's question to solved plans.

Modules: scenario (TOML files and their merge), resolve (settings + scenario ->
Problem, feasibility, CPA/ROAS targets, goal seeking), batch (what-if scenarios
and the budget frontier as batched solves), output (plan.csv/plan.json rows,
cent rounding, warnings).
"""

from optimizer.plan.resolve import PlanInputs, SolvedPlan, solve_plan
from optimizer.plan.scenario import Scenario, load_scenario

__all__ = ["PlanInputs", "Scenario", "SolvedPlan", "load_scenario", "solve_plan"]
