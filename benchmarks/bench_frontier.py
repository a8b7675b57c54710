"""Frontier benchmark: 50 budgets solved as one batch against a single plan.

On the allocator benchmark's market at 1,000 audiences (K = 4 strata, J = 2
price components, 14 days; see ``bench_allocator``), with budgets from a quarter
to twice the plan's budget (as ``make frontier`` asks for):

* ``plan``: one :func:`optimizer.allocate.allocator.allocate` call, plan and certificate;
* ``frontier``: the computation of :func:`optimizer.plan.batch.run_frontier`,
  i.e. ``allocate_path`` over the sorted budgets followed by the expected
  totals, returning totals and dual prices (under jit, XLA drops what is not
  returned, such as each point's duality certificate, exactly as in
  ``run_frontier``);
* ``run_frontier``: ``run_frontier`` itself, end to end including its DataFrame.
  It builds a fresh ``jax.jit`` on every call, so every call traces and compiles;
  its seconds are a cold figure, to compare with ``plan``'s compile_seconds.

``plan`` and ``frontier`` are compiled by a first call (its time, trace +
compile + run, is ``compile_seconds``) and timed as the fastest of ``REPEATS``
later calls (each ends with ``block_until_ready``). Writes
``benchmarks/results/frontier.json``: rows ``{"audiences", "points", "method",
"seconds", "compile_seconds"}`` and a last row ``{"method": "ratio", ...}`` with
``frontier / plan`` (target: at most ``TARGET_RATIO``).
Run: ``python -m benchmarks.run frontier``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_allocator import CONFIG, make_bench_problem
from optimizer.allocate.allocator import allocate, allocate_path
from optimizer.allocate.problem import Problem
from optimizer.plan.batch import _totals, run_frontier
from optimizer.plan.resolve import PlanInputs

RESULTS = Path(__file__).resolve().parent / "results" / "frontier.json"
AUDIENCES = 1_000
POINTS = 50
REPEATS = 3
TARGET_RATIO = 20.0


@jax.jit
def _plan(problem: Problem):
    return allocate(problem, CONFIG)


@jax.jit
def _frontier(problem: Problem, budgets: jax.Array):
    """(totals, dual prices) at every budget: run_frontier's solve (sorted budgets,
    each plan warm-started from the previous one in one compiled scan)."""
    allocs = allocate_path(problem, budgets, CONFIG)

    def totals(b, alloc):
        return _totals(
            dataclasses.replace(problem, budget=b), alloc.bid, alloc.budget, CONFIG
        )

    return jax.vmap(totals)(budgets, allocs), allocs.dual_price


def _timed(fn, repeats: int = REPEATS):
    """(compile_seconds, seconds, result): first call compiles, best of the rest."""
    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    compile_seconds = time.perf_counter() - start
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return compile_seconds, best, result


def _inputs(problem: Problem) -> PlanInputs:
    a = problem.lower.shape[0]
    return PlanInputs(
        names=[f"a{i}" for i in range(a)],
        problem=problem,
        config=CONFIG,
        removed=np.zeros(a, bool),
        groups=[],
        notes=[],
    )


def main(audiences: int = AUDIENCES, points: int = POINTS) -> list[dict]:
    """Time a plan, the batched frontier and run_frontier; print, write the JSON."""
    print(
        f"frontier benchmark: {audiences:,} audiences, {points} budgets; "
        f"{os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    problem = make_bench_problem(audiences)
    base = float(problem.budget)
    budgets = jnp.linspace(0.25 * base, 2.0 * base, points)
    plan_c, plan_s, _ = _timed(lambda: _plan(problem))
    front_c, front_s, (totals, _) = _timed(lambda: _frontier(problem, budgets))
    start = time.perf_counter()
    frame = run_frontier(_inputs(problem), np.asarray(budgets))
    cold_s = time.perf_counter() - start
    # Sanity: the batched solve is run_frontier's computation.
    np.testing.assert_allclose(
        frame["expected_conversions"], np.asarray(totals["conversions"]), atol=1e-3
    )
    rows = [
        {"audiences": audiences, "points": 1, "method": "plan", "seconds": plan_s}
        | {"compile_seconds": plan_c},
        {"audiences": audiences, "points": points, "method": "frontier"}
        | {"seconds": front_s, "compile_seconds": front_c},
        {"audiences": audiences, "points": points, "method": "run_frontier"}
        | {"seconds": cold_s, "compile_seconds": None, "includes_compile": True},
    ]
    ratio = front_s / plan_s
    rows.append(
        {
            "audiences": audiences,
            "points": points,
            "method": "ratio",
            "frontier_over_plan": ratio,
            "run_frontier_over_plan_cold": cold_s / (plan_c),
            "target": TARGET_RATIO,
            "met": bool(ratio <= TARGET_RATIO),
        }
    )
    for r in rows[:3]:
        compile_s = r["compile_seconds"]
        print(
            f"  {r['method']:<13} {r['points']:>3} point(s)  {r['seconds']:8.3f} s"
            + (f"  (first call {compile_s:.2f} s)" if compile_s else "  (cold)")
        )
    print(
        f"frontier / plan = {ratio:.1f}x (target <= {TARGET_RATIO:g}x: "
        f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); cold run_frontier / "
        f"cold plan = {cold_s / plan_c:.1f}x; load after {os.getloadavg()[0]:.2f}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
