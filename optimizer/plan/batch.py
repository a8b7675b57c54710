"""What-if scenarios and the budget frontier, solved as one batch each (vmap).

Every scenario becomes a Problem of the same shape (removed audiences get zero
bounds rather than being dropped), so the problems stack into one pytree and a
single ``jax.vmap`` of the allocator solves them all. Given a device mesh, the
scenario axis of that batch is split over the devices (what-if), or the
audience axis of the problem (frontier); results equal the one-device run.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh

from optimizer import devices
from optimizer.allocate.allocator import Allocation
from optimizer.allocate.buckets import (
    allocate_many,
    allocate_one,
    allocate_path_one,
    allocate_stacked,
    stack_size,
)
from optimizer.allocate.config import DEFAULT_CONFIG, SolveConfig
from optimizer.allocate.problem import Problem
from optimizer.allocate.sharded import allocate_path_sharded
from optimizer.errors import InputError
from optimizer.io.columns import COMPARISON_COLUMNS
from optimizer.market.fit import FittedMarket
from optimizer.market.params import expected_outcomes
from optimizer.plan.min_budget import enforce_min_budget
from optimizer.plan.resolve import (
    PlanInputs,
    meets_targets,
    outcomes_of,
    resolve,
    target_budget,
)
from optimizer.plan.scenario import Scenario


def _totals(problem, bid, cap, config: SolveConfig) -> dict[str, jax.Array]:
    out = expected_outcomes(problem.params, bid, problem.days, cap, config.first_price)
    return {**out.totals(), "clicks": jnp.sum(out.clicks, axis=-1)}


# Built once: each compiles once per audience and scenario count.
_totals_once = devices.Stage(_totals, ("config",))


@devices.stage(("config",))
def _kept_totals(batch, removed, scale, *, bid, cap, config: SolveConfig) -> dict:
    """Totals of every scenario (S stacked) under the base plan's bids ``bid`` and
    caps ``cap`` (A,), scaled by ``scale`` (S,), removed audiences at zero."""
    return jax.vmap(
        lambda p, r, c: _totals(p, bid, jnp.where(r, 0.0, c * cap), config)
    )(batch, removed, scale)


@devices.stage(("config",))
def _reoptimized_totals(batch, allocs: Allocation, config: SolveConfig) -> dict:
    """Totals of every scenario (S stacked) under its own plan."""
    return jax.vmap(lambda p, a: _totals(p, a.bid, a.budget, config))(batch, allocs)


@devices.stage(("config",))
def _frontier_outcomes(p, allocs: Allocation, config: SolveConfig):
    """Per-audience outcomes (B, A) of the plan at each of the B budgets."""
    return jax.vmap(
        lambda a: expected_outcomes(
            p.params, a.bid, p.days, a.budget, config.first_price
        )
    )(allocs)


def _row(name: str, variant: str, budget: float, t: dict) -> dict:
    spend, conv, value = (float(t[k]) for k in ("spend", "conversions", "value"))
    return {
        "scenario": name,
        "variant": variant,
        "budget": round(budget, 2),
        "expected_spend": round(spend, 2),
        "expected_conversions": round(conv, 3),
        "expected_value": round(value, 2),
        "cpa": round(spend / conv, 2) if conv > 0 else np.nan,
        "roas": round(value / spend, 3) if spend > 0 else np.nan,
    }


def _check_batchable(inputs: list[PlanInputs], names: list[str]) -> None:
    signature = {(i.config, i.problem.group_cap.shape) for i in inputs}
    if len(signature) > 1:
        raise InputError(
            f"scenarios {names} differ in objective, auction type, spend_all or group caps; what-if compares scenarios that share those. Split them into separate runs."
        )


def run_whatif(
    market: FittedMarket,
    base: Scenario,
    scenarios: list[Scenario],
    settings: pd.DataFrame | None,
    base_bid: np.ndarray,
    base_budget: np.ndarray,
    mesh: Mesh | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """For each scenario: the base plan in the changed world, and the re-optimized plan.

    "Keeping the plan" keeps its bids and its split of the budget (caps scaled by
    the scenario's budget_scale). Re-optimized plans are one vmapped solve; a
    scenario with a CPA/ROAS target that the full budget would miss is then
    re-solved at the largest budget meeting it, and audiences below their
    min_budget are paused or raised (as in ``adplan plan``).

    Args:
        mesh: a 1-D device mesh (``devices.mesh("scenarios")``) to split the
            scenarios over, or None for one device. The S scenarios are padded
            to a multiple of the mesh size by repeating the last one; the
            padding's results are dropped.
    """
    base_inputs = resolve(market, base, settings)
    inputs = [resolve(market, s, settings) for s in scenarios]
    _check_batchable([base_inputs, *inputs], [s.name for s in scenarios])
    batch = devices.stack([i.problem for i in inputs])
    config = base_inputs.config
    removed = jnp.asarray(np.stack([i.removed for i in inputs]))
    scale = jnp.asarray([s.budget_scale for s in scenarios])
    bid, cap = jnp.asarray(base_bid), jnp.asarray(base_budget)

    keep_plan = functools.partial(_kept_totals, bid=bid, cap=cap, config=config)
    if mesh is None:
        kept = keep_plan(batch, removed, scale)
    else:
        kept = _solve_sharded(keep_plan, (batch, removed, scale), mesh)
    allocs = allocate_batch(batch, config, mesh)
    allocs = _apply_targets(scenarios, inputs, allocs)
    reopt = _reoptimized_totals(batch, allocs, config)
    base_totals = _totals_once(base_inputs.problem, bid, cap, config)
    rows = [_row("base", "base_plan", float(np.sum(base_budget)), base_totals)]
    plans = {}
    for i, s in enumerate(scenarios):
        pick = jax.tree_util.tree_map(lambda x, i=i: x[i], (kept, reopt))
        kept_split = np.asarray(base_budget) * ~inputs[i].removed * s.budget_scale
        rows.append(
            _row(s.name, "base_plan", float(np.sum(kept_split)), pick[0])
            | {"breaks_scenario": breaks_scenario(s, inputs[i], kept_split, pick[0])}
        )
        split = np.asarray(allocs.budget[i])
        rows.append(
            _row(s.name, "reoptimized", float(np.sum(split)), pick[1])
            | {"breaks_scenario": breaks_scenario(s, inputs[i], split, pick[1])}
        )
        plans[s.name] = pd.DataFrame(
            {
                "audience": market.names,
                "budget": np.round(np.asarray(allocs.budget[i]), 2),
                "bid": np.round(np.asarray(allocs.bid[i]), 6),
            }
        )
    columns = [*COMPARISON_COLUMNS, "breaks_scenario"]
    return pd.DataFrame(rows, columns=columns).fillna({"breaks_scenario": ""}), plans


# Money slack (currency) before a bound or target counts as broken.
_SLACK = 0.01


def breaks_scenario(
    scenario: Scenario, inputs: PlanInputs, split: np.ndarray, totals: dict
) -> str:
    """Why a what-if row breaks its own scenario's rules, or "" when it keeps them.

    Args:
        scenario: the scenario the row runs under (its CPA/ROAS targets).
        inputs: the scenario resolved (per-audience spend bounds, (A,) currency).
        split: (A,) budget per audience the row plans over the horizon, currency.
        totals: the row's expected totals (``spend``, ``conversions``, ``value``).
    """
    spend, conv, value = (float(totals[k]) for k in ("spend", "conversions", "value"))
    found = []
    if scenario.max_cpa is not None and conv > 0:
        cpa = spend / conv
        if cpa > scenario.max_cpa * (1 + 1e-6) + _SLACK:
            found.append(f"CPA {cpa:,.2f} above the target {scenario.max_cpa:,.2f}")
    if scenario.min_roas is not None and spend > 0:
        roas = value / spend
        if roas < scenario.min_roas * (1 - 1e-6):
            found.append(f"ROAS {roas:,.2f} below the target {scenario.min_roas:,.2f}")
    lower = np.asarray(inputs.problem.lower)
    upper = np.asarray(inputs.problem.upper)
    for name, low, high, have, gone in zip(
        inputs.names, lower, upper, split, inputs.removed, strict=True
    ):
        if gone:
            continue
        if have < low - _SLACK:
            found.append(f"'{name}' gets {have:,.2f}, below its minimum {low:,.2f}")
        elif have > high + _SLACK:
            found.append(f"'{name}' gets {have:,.2f}, above its maximum {high:,.2f}")
    return "; ".join(found)


def allocate_batch(
    batch: Problem, config: SolveConfig = DEFAULT_CONFIG, mesh: Mesh | None = None
) -> Allocation:
    """Plans of S stacked problems (every array with a leading scenario axis S).

    One vmapped solve; with ``mesh`` (e.g. ``devices.mesh("scenarios")``) the
    scenario axis is split over its devices, padded by repeating the last
    scenario and trimmed back to S (ordinary arrays, as without ``mesh``). Each
    scenario's plan is the same as without ``mesh``.
    """
    if mesh is None:
        return allocate_many(batch, config)
    return _solve_sharded(lambda b: allocate_stacked(b, config), (batch,), mesh)


def _solve_sharded(solve, batch: tuple, mesh: Mesh):
    """``solve(*batch)`` with the leading (scenario) axis of ``batch`` split over
    ``mesh``; outputs trimmed to the S real scenarios, as ordinary arrays."""
    s = jax.tree_util.tree_leaves(batch)[0].shape[0]
    out = solve(*devices.shard_leading(batch, mesh))
    return devices.gather(
        out, mesh, lambda tree: jax.tree_util.tree_map(lambda x: x[:s], tree)
    )


def _apply_targets(scenarios: list[Scenario], inputs: list[PlanInputs], allocs):
    """Re-solve the scenarios whose CPA/ROAS target limits their budget, then
    pause or raise their audiences below min_budget (as ``adplan plan`` does)."""
    for i, (s, inp) in enumerate(zip(scenarios, inputs, strict=True)):
        one = jax.tree_util.tree_map(lambda x, i=i: x[i], allocs)
        budget = float(inp.problem.budget)
        if s.max_cpa is not None or s.min_roas is not None:
            budget = target_budget(inp, s, budget)
        problem = dataclasses.replace(inp.problem, budget=jnp.asarray(budget))
        changed = budget < float(inp.problem.budget)
        if changed:
            one = allocate_one(problem, inp.config)
        _, floored, paused, raised = enforce_min_budget(
            problem,
            inp.config,
            inp.min_budget,
            one,
            lambda p, c=inp.config: allocate_one(p, c),
        )
        if meets_targets(s, outcomes_of(inp, floored)):  # else keep the exact plan
            one = floored
        else:
            paused = raised = np.zeros(0, bool)
        if changed or paused.any() or raised.any():
            allocs = jax.tree_util.tree_map(
                lambda batch, x, i=i: batch.at[i].set(x), allocs, one
            )
    return allocs


def run_frontier(
    inputs: PlanInputs, budgets: np.ndarray, mesh: Mesh | None = None
) -> pd.DataFrame:
    """Optimal outcomes at each budget (one compiled solve over the sorted budgets,
    each warm-started from its neighbour).

    ``mesh``: a 1-D device mesh (``devices.mesh("audiences")``) to split the
    audiences over, or None for one device.
    """
    return frontier_with_splits(inputs, budgets, mesh)[0]


def frontier_with_splits(
    inputs: PlanInputs, budgets: np.ndarray, mesh: Mesh | None = None
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """:func:`run_frontier` plus each budget's per-audience split.

    Returns:
        The frontier table (B rows, budgets in the given order) and a dict of
        (B, A) float64 arrays: ``budget`` (the plan's cap per audience),
        ``expected_spend`` (currency over the horizon) and ``expected_conversions``.
    """
    p = inputs.problem
    order = np.argsort(budgets)
    # Padded with repeats of the largest budget to a stack size (one compiled path
    # for every count up to it); a repeat starts at its own optimum, so costs little.
    b = len(budgets)
    sorted_budgets = jnp.asarray(
        devices.pad_leading(budgets[order], stack_size(b)), jnp.float64
    )
    if mesh is None:
        allocs = allocate_path_one(p, sorted_budgets, inputs.config)
    else:
        allocs = allocate_path_sharded(p, sorted_budgets, mesh, inputs.config)
    per_audience = _frontier_outcomes(p, allocs, inputs.config)
    allocs, per_audience = jax.tree_util.tree_map(
        lambda x: x[:b], (allocs, per_audience)
    )
    undo = np.argsort(order)
    splits = {
        "budget": np.asarray(allocs.budget, np.float64)[undo],
        "expected_spend": np.asarray(per_audience.spend, np.float64)[undo],
        "expected_conversions": np.asarray(per_audience.conversions, np.float64)[undo],
    }
    totals = {k: np.asarray(v)[undo] for k, v in per_audience.totals().items()}
    price = np.asarray(allocs.dual_price)[undo]
    spend, conv, value = (totals[k] for k in ("spend", "conversions", "value"))
    marginal = (
        np.where(price > 0, 1 / np.where(price > 0, price, 1), np.nan)
        if inputs.config.objective == "conversions"
        else np.full(len(budgets), np.nan)
    )
    frame = pd.DataFrame(
        {
            "budget": np.round(budgets, 2),
            "expected_spend": np.round(spend, 2),
            "expected_conversions": np.round(conv, 3),
            "expected_value": np.round(value, 2),
            "cpa": np.round(
                np.where(conv > 0, spend / np.where(conv > 0, conv, 1), np.nan), 2
            ),
            "marginal_cpa": np.round(marginal, 2),
        }
    )
    if inputs.config.objective == "value":
        frame["marginal_roas"] = np.round(price, 4)
    if inputs.config.objective == "clicks":
        clicks = np.asarray(per_audience.clicks, np.float64).sum(axis=-1)[undo]
        frame["expected_clicks"] = np.round(clicks, 2)
        frame["marginal_cpc"] = np.round(
            np.where(price > 0, 1 / np.where(price > 0, price, 1), np.nan), 4
        )
    return frame, splits


def parse_budgets(text: str) -> np.ndarray:
    """'FROM:TO:STEPS' -> evenly spaced budgets."""
    try:
        start, stop, steps = text.split(":")
        start, stop, n = float(start), float(stop), int(steps)
    except ValueError:
        raise InputError(
            f"--budgets '{text}' must look like FROM:TO:STEPS, e.g. 1000:20000:50."
        ) from None
    if not (0 < start < stop) or n < 2 or n > 10_000:
        raise InputError(
            f"--budgets '{text}': need 0 < FROM < TO and 2 <= STEPS <= 10000."
        )
    return np.linspace(start, stop, n)
