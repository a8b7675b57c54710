"""``adplan plan``: read the model, settings and scenario, solve, write plan files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from jax.sharding import Mesh

from optimizer.commands.bid import RULE_FLAGS
from optimizer.commands.rules import rule_lines, solve_with_rules
from optimizer.errors import InputError
from optimizer.io.atomic import check_writable
from optimizer.io.files import (
    atomic_dir,
    check_model_folder,
    file_sha256,
    library_versions,
    write_csv,
    write_json,
)
from optimizer.io.schema import read_settings
from optimizer.market.store import load_market
from optimizer.plan.costs import constraint_costs
from optimizer.plan.health import model_health
from optimizer.plan.output import (
    band_note,
    plan_document,
    plan_frame,
    response_curves,
    summary_lines,
)
from optimizer.plan.resolve import solve_plan
from optimizer.plan.scenario import Scenario, load_scenario

DAILY_NOTES = [
    "Model from a daily platform report: the platform sets the bids, so the plan is "
    "a daily budget per ad set; plan.csv's bid column is empty (plan.json's 'bid' is "
    "the expected average price per impression at that budget, used by the simulator).",
    "What daily data can tell: each ad set's spend-to-impressions curve (from how "
    "its daily spend varied), how delivery varies by day of the week, and its "
    "conversions per impression by breakdown and weekday (the rate network on the "
    "counts); not the auction prices behind the platform's bids. The plan is one "
    "daily budget per ad set for an average day: the platform spreads it over the "
    "breakdowns itself.",
]


def read_model_info(model_dir: Path) -> dict:
    """model.json of a trained model folder."""
    path = Path(model_dir) / "model.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"model {model_dir}: model.json is missing or unreadable ({exc}). Train a model first with adplan train."
        ) from exc


def read_rates_metrics(model_dir: Path) -> dict:
    """The "rates" part of a model's metrics.json ({} when there is none)."""
    try:
        data = json.loads((Path(model_dir) / "metrics.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("rates", {})


def scenario_from_flags(scenario_file: Path | None, flags: dict) -> Scenario:
    """The plan's scenario: defaults < scenario file < command-line flags
    (``--max-bid-cpm`` becomes ``max_bid`` per impression; bid-rule flags are
    not part of the scenario)."""
    flags = {k: v for k, v in flags.items() if k not in RULE_FLAGS}
    cpm = flags.pop("max_bid_cpm")
    if cpm is not None:
        if flags["max_bid"] is not None:
            raise InputError(
                "give --max-bid (per impression) or --max-bid-cpm (per 1,000 impressions), not both."
            )
        flags["max_bid"] = cpm / 1000.0
    return load_scenario(scenario_file, flags)


def write_plan(
    model_dir: Path,
    scenario: Scenario,
    settings_file: Path | None,
    scenario_file: Path | None,
    out_dir: Path,
    target_conversions: float | None,
    mesh: Mesh | None = None,
    rules: tuple[bool, str, int] = (False, "0.1:10", 8),
) -> list[str]:
    """Solve and write plan.csv and plan.json into ``out_dir``; return summary lines.

    ``mesh``: shard the audiences over these devices (same plan). ``rules``:
    (bid by a rule, --factor-range text, --max-levels); with a rule the plan also
    writes bid_rules.csv."""
    check_writable(out_dir, folder=True)
    info = check_model_folder(model_dir)
    market = load_market(model_dir)
    settings = read_settings(settings_file, market.names) if settings_file else None
    if info.get("currency") and not scenario.currency:  # from the report's header
        scenario = dataclasses.replace(scenario, currency=info["currency"])

    def solve(m):
        return solve_plan(
            m, scenario, settings, target_conversions=target_conversions, mesh=mesh
        )

    solved, rule, section = solve_with_rules(
        model_dir, market, scenario.objective, rules, solve
    )
    frame = plan_frame(solved)
    provenance = {
        "model_id": info.get("model_id"),
        "model_dir": str(model_dir),
        "events_sha256": info.get("events_sha256"),
        "settings_file": str(Path(settings_file).resolve()) if settings_file else None,
        "settings_sha256": file_sha256(settings_file) if settings_file else None,
        "scenario_file": str(scenario_file) if scenario_file else None,
        "scenario_sha256": file_sha256(scenario_file) if scenario_file else None,
        "seed": info.get("seed"),
        "target_conversions": target_conversions,
        "versions": library_versions(),
    }
    doc = plan_document(
        solved,
        frame,
        scenario.to_dict(),
        provenance,
        market.metrics,
        constraint_costs(solved, scenario),
        model_health(read_rates_metrics(model_dir)),
    )
    from simulations.simulator.band import band_widening

    doc["warnings"] += band_note(band_widening(model_dir))
    daily = info.get("input_kind") == "daily"
    if daily:  # the platform bids: plan.csv gives budgets, its bid column stays empty
        doc["warnings"] += [*DAILY_NOTES, *market.metrics.get("daily_notes", [])]
    if rules[0]:  # with --flat-bids plan.json stays as before rules existed
        doc["bid_rules"] = section
    lines = summary_lines(doc) + (
        [] if daily else rule_lines(section)
    )  # nothing can fail after
    with atomic_dir(out_dir) as tmp:
        write_csv(
            tmp / "plan.csv", frame.assign(bid=None, bid_cpm=None) if daily else frame
        )
        if section["used"]:
            write_csv(tmp / "bid_rules.csv", rule.table())
        write_json(tmp / "plan.json", doc)
        write_json(tmp / "curves.json", response_curves(solved))
    return [
        *lines,
        f"Plan written to {out_dir / 'plan.csv'} and {out_dir / 'plan.json'}",
    ]
