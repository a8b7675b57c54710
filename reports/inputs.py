"""Report stage: read and check the result files a report is built from.

The report never computes results; it reads what ``adplan train``, ``plan``,
``simulate``, ``whatif`` and ``frontier`` wrote. Every file is checked for the
keys or columns the report uses, and a missing or garbled file raises
:class:`~optimizer.errors.InputError` naming the file and the fix. Extra keys,
columns and files are ignored, so newer outputs still render.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from optimizer.errors import InputError
from optimizer.io.atomic import settle
from optimizer.io.columns import (
    COMPARISON_COLUMNS as WHATIF_COLUMNS,
)
from optimizer.io.columns import (
    FRONTIER_COLUMNS,
    PLAN_COLUMNS,
    SUMMARY_COLUMNS,
)
from optimizer.io.files import check_model_folder, file_sha256
from optimizer.io.plan_dir import check_plan_model
from reports import text

PLAN_KEYS = ("objective", "days", "budget", "totals", "audiences")
AUDIENCE_KEYS = PLAN_COLUMNS
TOTAL_KEYS = ("budget", "expected_spend", "expected_conversions", "expected_value")
PATH_COLUMNS = ("run", "hour", "audience", "cumulative_spend", "cumulative_conversions")
# Name columns stay text: an audience called "NA" or "007" must not become NaN or 7.
TEXT_COLUMNS = {
    name: str for name in ("audience", "metric", "scenario", "variant", "row")
}
# The audience key of total rows once read: no audience name can equal it, so an
# audience called "TOTAL" keeps its own rows (files mark totals with row=total).
TOTAL_KEY = "\x00total"


@dataclasses.dataclass(frozen=True)
class Simulation:
    """Monte-Carlo outcome summaries (``adplan simulate``).

    Attributes:
        summary: columns ``audience, metric, mean, p10, p50, p90``; totals have
            audience :data:`TOTAL_KEY`; money in currency over the horizon.
        paths: hourly cumulative paths ``run, hour, audience, cumulative_spend,
            cumulative_conversions``, or None when not written.
        truth: same shape as ``summary`` for a run on the true market, or None.
        runs: number of replications when the folder states it, else None.
    """

    summary: pd.DataFrame
    paths: pd.DataFrame | None
    truth: pd.DataFrame | None
    runs: int | None


@dataclasses.dataclass(frozen=True)
class Frontier:
    """Optimal outcome against total budget (``adplan frontier``).

    Attributes:
        table: one row per budget, columns ``budget, expected_conversions,
            marginal_cpa`` at least; money in currency.
        chosen_budget: the budget to mark, or None when the folder gives none.
        current_spend: today's spend to mark, or None.
        audiences: names of the per-audience splits, or None when not written.
        splits: ``budget``, ``expected_spend``, ``expected_conversions`` -> one
            list per table row (same order) of one value per audience, or None.
    """

    table: pd.DataFrame
    chosen_budget: float | None
    current_spend: float | None
    audiences: list[str] | None = None
    splits: dict[str, list[list[float]]] | None = None


@dataclasses.dataclass(frozen=True)
class ReportInputs:
    """Everything one report shows, as read from disk.

    Attributes:
        model: ``model.json``. metrics: ``metrics.json``. plan: ``plan.json``.
        curves: ``curves.json``: audience -> ``{spend, conversions, ...}`` lists.
        simulation, whatif, frontier: optional sections (None when not given).
        files: ``(path, sha256)`` of every file read, for provenance.
        currency: the money unit every figure is shown in.
    """

    model: dict[str, Any]
    metrics: dict[str, Any]
    plan: dict[str, Any]
    curves: dict[str, Any]
    simulation: Simulation | None
    whatif: pd.DataFrame | None
    frontier: Frontier | None
    files: list[tuple[str, str]]
    currency: str = text.DEFAULT_CURRENCY
    backtest: dict[str, Any] | None = None  # backtest.json of ``adplan backtest``


class _Reader:
    """Reads files for one report and records each path with its hash."""

    def __init__(self) -> None:
        self.files: list[tuple[str, str]] = []

    def _exists(self, path: Path, fix: str) -> Path:
        if not path.is_file():
            raise InputError(text.ERR_MISSING.format(path=path, fix=fix))
        self.files.append((str(path), file_sha256(path)))
        return path

    def json(self, path: Path, fix: str, keys: tuple[str, ...] = ()) -> Any:
        """Parse ``path`` as JSON and check that an object holds ``keys``."""
        try:
            data = json.loads(self._exists(path, fix).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(
                text.ERR_GARBLED.format(path=path, kind="JSON", detail=err, fix=fix)
            ) from err
        _check_keys(data, keys, path, fix)
        return data

    def csv(self, path: Path, fix: str, columns: tuple[str, ...]) -> pd.DataFrame:
        """Read ``path`` as CSV and check that it has ``columns``."""
        try:
            frame = pd.read_csv(
                self._exists(path, fix),
                dtype=TEXT_COLUMNS,
                keep_default_na=False,
                na_values=[""],
            )
        except (UnicodeDecodeError, pd.errors.ParserError) as err:
            raise InputError(
                text.ERR_GARBLED.format(path=path, kind="CSV", detail=err, fix=fix)
            ) from err
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame()
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InputError(
                text.ERR_COLUMNS.format(path=path, columns=", ".join(missing), fix=fix)
            )
        return frame


def _check_keys(data: Any, keys: tuple[str, ...], path: Path, fix: str) -> None:
    """Raise InputError unless ``data`` is a dict holding every key in ``keys``."""
    missing = (
        list(keys) if not isinstance(data, dict) else [k for k in keys if k not in data]
    )
    if missing:
        raise InputError(
            text.ERR_KEYS.format(path=path, keys=", ".join(map(repr, missing)), fix=fix)
        )


def _folder(path: Path | str, fix: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise InputError(text.ERR_NOT_DIR.format(path=path, fix=fix))
    return path


def _read_plan(reader: _Reader, plan_dir: Path) -> dict[str, Any]:
    """plan.json with its audience rows and totals checked."""
    path = plan_dir / "plan.json"
    plan = reader.json(path, text.FIX_PLAN, PLAN_KEYS)
    rows = plan["audiences"]
    if not isinstance(rows, list) or not rows:
        raise InputError(text.ERR_NO_AUDIENCES.format(path=path, fix=text.FIX_PLAN))
    for row in rows:
        _check_keys(row, AUDIENCE_KEYS, path, text.FIX_PLAN)
    _check_keys(plan["totals"], TOTAL_KEYS, path, text.FIX_PLAN)
    return plan


def _read_metrics(reader: _Reader, model_dir: Path) -> dict[str, Any]:
    """metrics.json with the rate-network heads and market landscapes checked."""
    path = model_dir / "metrics.json"
    metrics = reader.json(path, text.FIX_MODEL, ("rates", "market"))
    _check_keys(metrics["rates"], ("heads",), path, text.FIX_MODEL)
    _check_keys(metrics["market"], ("landscapes",), path, text.FIX_MODEL)
    return metrics


def _mark_totals(frame: pd.DataFrame) -> pd.DataFrame:
    """Total rows keyed by :data:`TOTAL_KEY`: those with ``row == "total"``, or in
    files from before the ``row`` column, those whose audience is ``TOTAL``."""
    if "row" in frame.columns:
        total = frame["row"] == "total"
    else:
        total = frame["audience"] == "TOTAL"
    frame = frame.copy()
    frame.loc[total, "audience"] = TOTAL_KEY
    return frame


def _summary_rows(
    reader: _Reader, folder: Path, stem: str, fallback: Any
) -> pd.DataFrame | None:
    """``stem.csv`` if present, else rows found in ``fallback`` (from JSON)."""
    path = folder / f"{stem}.csv"
    if path.is_file():
        return _mark_totals(reader.csv(path, text.FIX_SIMULATION, SUMMARY_COLUMNS))
    if isinstance(fallback, list) and fallback:
        frame = pd.DataFrame(fallback)
        if all(c in frame.columns for c in SUMMARY_COLUMNS):
            return _mark_totals(frame)
    return None


def _read_simulation(reader: _Reader, sim_dir: Path) -> Simulation:
    """summary.csv (or summary.json), optional paths.csv and truth summary."""
    meta: Any = {}
    if (sim_dir / "summary.json").is_file():
        meta = reader.json(sim_dir / "summary.json", text.FIX_SIMULATION)
    rows = meta.get("summary", meta.get("rows")) if isinstance(meta, dict) else meta
    summary = _summary_rows(reader, sim_dir, "summary", rows)
    if summary is None:
        raise InputError(
            text.ERR_MISSING.format(
                path=sim_dir / "summary.csv", fix=text.FIX_SIMULATION
            )
        )
    truth_rows = meta.get("truth") if isinstance(meta, dict) else None
    paths = None
    if (sim_dir / "paths.csv").is_file():
        paths = _mark_totals(
            reader.csv(sim_dir / "paths.csv", text.FIX_SIMULATION, PATH_COLUMNS)
        )
    runs = meta.get("runs") if isinstance(meta, dict) else None
    return Simulation(
        summary=summary,
        paths=paths,
        truth=_summary_rows(reader, sim_dir, "truth_summary", truth_rows),
        runs=int(runs) if isinstance(runs, int | float) else None,
    )


def _read_frontier(reader: _Reader, frontier_dir: Path) -> Frontier:
    """frontier.csv plus the marks in frontier.json when present."""
    table = reader.csv(
        frontier_dir / "frontier.csv", text.FIX_FRONTIER, FRONTIER_COLUMNS
    )
    meta: Any = {}
    if (frontier_dir / "frontier.json").is_file():
        meta = reader.json(frontier_dir / "frontier.json", text.FIX_FRONTIER)
    meta = meta if isinstance(meta, dict) else {}
    order = table["budget"].to_numpy().argsort(kind="stable")
    audiences, splits = _splits(meta, len(table))
    return Frontier(
        table=table.iloc[order].reset_index(drop=True),
        chosen_budget=_number(meta.get("chosen_budget")),
        current_spend=_number(meta.get("current_spend")),
        audiences=audiences,
        splits=None
        if splits is None
        else {k: [v[i] for i in order] for k, v in splits.items()},
    )


SPLIT_KEYS = ("budget", "expected_spend", "expected_conversions")


def _splits(meta: dict, rows: int) -> tuple[list[str] | None, dict | None]:
    """frontier.json's per-audience splits when complete (one row per budget, one
    number per audience), else (None, None): older folders lack them."""
    names, splits = meta.get("audiences"), meta.get("splits")
    if not isinstance(names, list) or not isinstance(splits, dict):
        return None, None
    try:
        found = {k: [[float(x) for x in row] for row in splits[k]] for k in SPLIT_KEYS}
    except (KeyError, TypeError, ValueError):
        return None, None
    if any(
        len(v) != rows or any(len(r) != len(names) for r in v) for v in found.values()
    ):
        return None, None
    return [str(n) for n in names], found


def _number(value: Any) -> float | None:
    """``value`` as float, or None when it is missing or not a number."""
    return float(value) if isinstance(value, int | float) else None


def read_inputs(
    model_dir: Path | str,
    plan_dir: Path | str,
    simulation_dir: Path | str | None = None,
    whatif_dir: Path | str | None = None,
    frontier_dir: Path | str | None = None,
    currency: str | None = None,
    backtest_dir: Path | str | None = None,
) -> ReportInputs:
    """Read and check every result file a report shows.

    ``currency`` overrides plan.json's ``currency`` (default "currency units").

    Raises:
        InputError: a folder or required file is missing, or a file is garbled or
            lacks a key or column the report uses.
    """
    reader = _Reader()
    model = _folder(model_dir, text.FIX_MODEL)
    plan = _folder(plan_dir, text.FIX_PLAN)
    for folder in (plan, simulation_dir, whatif_dir, frontier_dir):
        if folder is not None:
            settle(folder)
    model_json = reader.json(model / "model.json", text.FIX_MODEL, ("model_id",))
    check_model_folder(model)
    metrics = _read_metrics(reader, model)
    plan_json = _read_plan(reader, plan)
    names = model_json.get("audiences")
    if not isinstance(names, list):
        names = [r["audience"] for r in plan_json["audiences"]]
    check_plan_model(plan_json, plan, names, model_json.get("model_id"))
    curves = reader.json(plan / "curves.json", text.FIX_PLAN)
    if not isinstance(curves, dict):
        raise InputError(
            text.ERR_GARBLED.format(
                path=plan / "curves.json",
                kind="curves file",
                detail="expected an object keyed by audience",
                fix=text.FIX_PLAN,
            )
        )
    simulation = whatif = frontier = None
    if simulation_dir is not None:
        simulation = _read_simulation(
            reader, _folder(simulation_dir, text.FIX_SIMULATION)
        )
    if whatif_dir is not None:
        path = _folder(whatif_dir, text.FIX_WHATIF) / "comparison.csv"
        whatif = reader.csv(path, text.FIX_WHATIF, WHATIF_COLUMNS)
    if frontier_dir is not None:
        frontier = _read_frontier(reader, _folder(frontier_dir, text.FIX_FRONTIER))
    backtest = None
    if backtest_dir is not None:
        fix = "Run: adplan backtest --events LOG --out DIR, then pass --backtest DIR."
        backtest = reader.json(
            _folder(backtest_dir, fix) / "backtest.json",
            fix,
            ("outcomes", "rows"),
        )
    return ReportInputs(
        model=model_json,
        metrics=metrics,
        plan=plan_json,
        curves=curves,
        simulation=simulation,
        whatif=whatif,
        frontier=frontier,
        files=reader.files,
        currency=_currency(currency, plan_json.get("currency")),
        backtest=backtest,
    )


def _currency(*found: Any) -> str:
    """The first non-blank currency given, else the neutral default."""
    names = [str(c).strip() for c in found if isinstance(c, str) and c.strip()]
    return names[0] if names else text.DEFAULT_CURRENCY
