"""``adplan whatif`` and ``adplan frontier``: read inputs, run the batches, write files."""

from __future__ import annotations

import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from optimizer.commands.rules import plan_market
from optimizer.errors import InputError
from optimizer.io.atomic import check_writable
from optimizer.io.files import atomic_dir, check_model_folder, write_csv, write_json
from optimizer.io.plan_dir import read_plan
from optimizer.io.schema import read_settings
from optimizer.market.store import load_market
from optimizer.plan.batch import frontier_with_splits, parse_budgets, run_whatif
from optimizer.plan.resolve import current_outcomes, resolve, solve_plan
from optimizer.plan.scenario import (
    Scenario,
    load_scenario,
    read_scenario_file,
    scenario_from_mapping,
)


def _settings(
    market, settings_file: Path | None, plan_doc: dict | None, plan_dir: Path | None
):
    """The audience settings: --audiences, else the file the plan was made with.

    A recorded path is tried as written (plans store it absolute), then relative
    to the plan folder; a recorded file that is gone is an error, never dropped.
    """
    if settings_file is None and plan_doc:
        recorded = plan_doc.get("provenance", {}).get("settings_file")
        if recorded:
            tries = [Path(recorded)]
            if plan_dir is not None and not Path(recorded).is_absolute():
                tries.append(Path(plan_dir) / recorded)
            found = [p for p in tries if p.is_file()]
            if not found:
                raise InputError(
                    f"plan {plan_dir}: it was made with the audience settings {recorded}, which is not there from this folder. Pass --audiences FILE (the same settings) so the what-if plans under the same bounds and values."
                )
            settings_file = found[0]
    return read_settings(settings_file, market.names) if settings_file else None


def _inline(
    base: Scenario,
    budget_scale: float | None,
    price_shift: float | None,
    rate_shift: tuple[str, ...],
) -> Scenario | None:
    if budget_scale is None and price_shift is None and not rate_shift:
        return None
    shifts = {}
    for item in rate_shift:
        audience, sep, value = item.rpartition("=")
        try:
            shifts[audience] = float(value)
        except ValueError:
            sep = ""
        if not sep or not audience:
            raise InputError(
                f"--rate-shift '{item}' must look like AUDIENCE=-0.1 (a relative change)."
            )
    data = {k: v for k, v in base.to_dict().items() if v not in (None, {}, [])}
    data.update(
        name="inline",
        budget_scale=budget_scale or 1.0,
        price_shift=price_shift or 0.0,
        rate_shift=shifts,
    )
    return scenario_from_mapping(data, "command-line what-if")


def plan_files(names: list[str]) -> dict[str, str]:
    """A distinct ``plans/`` file per scenario name: unsafe characters become
    ``_``, and a name that would clash (also by case: "a/b", "a_b", "A_B") gets
    ``-2``, ``-3``, ... in the order given."""
    out, used = {}, set()
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "scenario"
        candidate, k = stem, 2
        while candidate.lower() in used:
            candidate, k = f"{stem}-{k}", k + 1
        used.add(candidate.lower())
        out[name] = f"plans/{candidate}.csv"
    return out


def write_whatif(
    model_dir: Path,
    plan_dir: Path | None,
    budget: float | None,
    days: float | None,
    settings_file: Path | None,
    scenario_files: tuple[Path, ...],
    inline: dict,
    out_dir: Path,
    mesh: Mesh | None = None,
) -> list[str]:
    """Run every scenario against the base plan; write comparison.csv and plans/.

    ``mesh``: shard the scenarios over these devices (same results)."""
    check_writable(out_dir, folder=True)
    model_id = check_model_folder(model_dir).get("model_id")
    market = load_market(model_dir)
    doc = None
    if plan_dir is not None:
        doc, bid, cap = read_plan(plan_dir, market.names, model_id)
        market = plan_market(model_dir, market, doc)
        base_data = {
            k: v for k, v in doc.get("scenario", {}).items() if v not in (None, {}, [])
        }
        base_data.update(budget=doc["budget"], days=doc["days"], budget_scale=1.0)
        base = scenario_from_mapping(base_data, f"plan {plan_dir}")
    else:
        if budget is None or days is None:
            raise InputError(
                "what-if needs a base plan: pass --plan PLAN_DIR, or --budget and --days."
            )
        base = load_scenario(None, {"budget": budget, "days": days})
    settings = _settings(market, settings_file, doc, plan_dir)
    if plan_dir is None:
        solved = solve_plan(market, base, settings)
        bid, cap = (
            np.asarray(solved.allocation.bid),
            np.asarray(solved.allocation.budget),
        )
    scenarios = [read_scenario_file(path, base) for path in scenario_files]
    extra = _inline(base, **inline)
    scenarios += [extra] if extra else []
    if not scenarios:
        raise InputError(
            "no scenario given: pass --scenario FILE (e.g. simulations/scenarios/*.toml) or an inline flag such as --budget-scale 1.2."
        )
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise InputError(
            f"scenario names must be unique, got {names}; set 'name' in the files."
        )
    comparison, plans = run_whatif(
        market, base, scenarios, settings, bid, cap, mesh=mesh
    )
    files = plan_files(names)
    comparison["plan_file"] = [
        files[s] if v == "reoptimized" else ""
        for s, v in zip(comparison["scenario"], comparison["variant"], strict=True)
    ]
    with atomic_dir(out_dir) as tmp:
        write_csv(tmp / "comparison.csv", comparison)
        write_json(
            tmp / "comparison.json",
            {
                "scenarios": [s.to_dict() for s in scenarios],
                "plan_files": files,
                "rows": comparison.replace({np.nan: None}).to_dict(orient="records"),
            },
        )
        (tmp / "plans").mkdir()
        for name, frame in plans.items():
            write_csv(tmp / files[name], frame)
    lines = [
        f"What-if: {len(scenarios)} scenario(s) against the base plan (budget {float(np.sum(cap)):,.2f}):"
    ]
    for name in names:
        rows = comparison[comparison["scenario"] == name].set_index("variant")
        kept, re_opt = rows.loc["base_plan"], rows.loc["reoptimized"]
        lines.append(
            f"  {name:<24} keep plan: {kept['expected_conversions']:>9,.1f} conv   re-optimized: {re_opt['expected_conversions']:>9,.1f} conv for {re_opt['expected_spend']:,.2f}"
        )
        for variant, row in (("keep plan", kept), ("re-optimized", re_opt)):
            if row["breaks_scenario"]:
                lines.append(
                    f"  {'':<24} {variant} breaks the scenario: {row['breaks_scenario']}"
                )
    lines.append(
        f"Written to {out_dir / 'comparison.csv'}; each re-optimized plan is in the file its plan_file column names (under {out_dir})."
    )
    return lines


def _next_conversion(frame) -> str:
    """What one more conversion costs at the top budget, or that spend saturates."""
    best = frame.iloc[-1]
    if "marginal_roas" in frame and best["marginal_roas"] > 0:
        return f"the next currency unit returns {best['marginal_roas']:,.2f} in value"
    if np.isfinite(best["marginal_cpa"]):
        return f"next conversion costs {best['marginal_cpa']:,.2f}"
    if best["expected_spend"] < best["budget"] * (1 - 1e-3):
        return f"spend saturates at {best['expected_spend']:,.2f}: the audiences cannot absorb more, so a larger budget buys nothing"
    return "more budget buys no more conversions here"


def write_frontier(
    model_dir: Path,
    budgets: str,
    days: float,
    settings_file: Path | None,
    scenario_file: Path | None,
    objective: str | None,
    plan_dir: Path | None,
    out_dir: Path,
    mesh: Mesh | None = None,
) -> list[str]:
    """Optimal outcomes across budgets; write frontier.csv and frontier.json.

    ``mesh``: shard the audiences over these devices (same frontier)."""
    check_writable(out_dir, folder=True)
    model_id = check_model_folder(model_dir).get("model_id")
    market = load_market(model_dir)
    if plan_dir is not None:  # the frontier bids as the plan does
        market = plan_market(
            model_dir, market, read_plan(plan_dir, market.names, model_id)[0]
        )
    grid = parse_budgets(budgets)
    scenario = load_scenario(
        scenario_file, {"days": days, "objective": objective, "budget": float(grid[-1])}
    )
    settings = read_settings(settings_file, market.names) if settings_file else None
    inputs = resolve(market, scenario, settings)
    floor = float(np.sum(np.asarray(inputs.problem.lower)))
    if grid[0] < floor:
        raise InputError(
            f"--budgets starts at {grid[0]:,.2f}, below the minimum spends ({floor:,.2f}); start at {floor:,.2f} or more."
        )
    frame, splits = frontier_with_splits(inputs, grid, mesh=mesh)
    current = current_outcomes(market, inputs)
    meta = {
        "days": days,
        "objective": scenario.objective,
        "current_spend": float(jnp.sum(current.spend)),
        "current_conversions": float(jnp.sum(current.conversions)),
    }
    if plan_dir is not None:
        meta["chosen_budget"] = float(
            read_plan(plan_dir, market.names, model_id)[0]["budget"]
        )
    with atomic_dir(out_dir) as tmp:
        write_csv(tmp / "frontier.csv", frame)
        write_json(
            tmp / "frontier.json",
            {
                **meta,
                "rows": frame.replace({np.nan: None}).to_dict(orient="records"),
                # Per-audience split at each budget (rows in frontier.csv order).
                "audiences": list(market.names),
                "splits": {k: np.round(v, 3).tolist() for k, v in splits.items()},
            },
        )
    best = frame.iloc[-1]
    return [
        f"Budget frontier: {len(grid)} budgets from {grid[0]:,.2f} to {grid[-1]:,.2f} over {days:g} days.",
        f"  at {best['budget']:,.2f}: {best['expected_conversions']:,.1f} conversions, CPA {best['cpa']:,.2f}, {_next_conversion(frame)}",
        f"  current spend over the horizon: {meta['current_spend']:,.2f}",
        f"Written to {out_dir / 'frontier.csv'}",
    ]
