"""``adplan plan``: read the model, settings and scenario, solve, write plan files."""

from __future__ import annotations

import json
from pathlib import Path

from jax.sharding import Mesh

from optimizer.errors import InputError
from optimizer.io.files import (
    atomic_dir,
    file_sha256,
    library_versions,
    write_csv,
    write_json,
)
from optimizer.io.schema import read_settings
from optimizer.market.store import load_market
from optimizer.plan.output import (
    band_note,
    plan_document,
    plan_frame,
    response_curves,
    summary_lines,
)
from optimizer.plan.resolve import solve_plan
from optimizer.plan.scenario import Scenario


def read_model_info(model_dir: Path) -> dict:
    """model.json of a trained model folder."""
    path = Path(model_dir) / "model.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"model {model_dir}: model.json is missing or unreadable ({exc}). Train a model first with adplan train."
        ) from exc


def write_plan(
    model_dir: Path,
    scenario: Scenario,
    settings_file: Path | None,
    scenario_file: Path | None,
    out_dir: Path,
    target_conversions: float | None,
    mesh: Mesh | None = None,
) -> list[str]:
    """Solve and write plan.csv and plan.json into ``out_dir``; return summary lines.

    ``mesh``: shard the audiences over these devices (same plan)."""
    info = read_model_info(model_dir)
    market = load_market(model_dir)
    settings = read_settings(settings_file, market.names) if settings_file else None
    solved = solve_plan(
        market, scenario, settings, target_conversions=target_conversions, mesh=mesh
    )
    frame = plan_frame(solved)
    provenance = {
        "model_id": info.get("model_id"),
        "model_dir": str(model_dir),
        "events_sha256": info.get("events_sha256"),
        "settings_file": str(settings_file) if settings_file else None,
        "settings_sha256": file_sha256(settings_file) if settings_file else None,
        "scenario_file": str(scenario_file) if scenario_file else None,
        "scenario_sha256": file_sha256(scenario_file) if scenario_file else None,
        "seed": info.get("seed"),
        "target_conversions": target_conversions,
        "versions": library_versions(),
    }
    doc = plan_document(solved, frame, scenario.to_dict(), provenance, market.metrics)
    from simulations.simulator.uncertainty import band_widening

    doc["warnings"] += band_note(band_widening(model_dir))
    with atomic_dir(out_dir) as tmp:
        write_csv(tmp / "plan.csv", frame)
        write_json(tmp / "plan.json", doc)
        write_json(tmp / "curves.json", response_curves(solved))
    return [
        *summary_lines(doc),
        f"Plan written to {out_dir / 'plan.csv'} and {out_dir / 'plan.json'}",
    ]
