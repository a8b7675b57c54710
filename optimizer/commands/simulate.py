"""``adplan simulate``: replay a plan on the fitted (and optionally the true) market."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from optimizer.commands.rules import plan_market, truth_params_for
from optimizer.errors import InputError
from optimizer.io.atomic import check_writable
from optimizer.io.files import atomic_dir, check_model_folder, write_csv, write_json
from optimizer.io.plan_dir import read_plan
from optimizer.market.store import load_market


def _run(params, bid, budget, days, first_price, pacing, runs, seed, quiet):
    from simulations.simulator.run import simulate

    return simulate(
        jax.random.key(seed),
        params,
        jnp.asarray(bid),
        jnp.asarray(budget),
        days,
        first_price=first_price,
        pacing=pacing,
        runs=runs,
        progress=not quiet,
    )


def write_simulation(
    model_dir: Path,
    plan_dir: Path,
    out_dir: Path,
    *,
    runs: int,
    seed: int,
    pacing: str,
    truth_file: Path | None,
    quiet: bool,
    rate_uncertainty: bool = True,
) -> list[str]:
    """Simulate the plan and write summary.csv/.json, paths.csv (and truth_summary.csv)."""
    from simulations.simulator.band import (
        band_factors,
        band_widening,
        guessed_curve_factors,
        widen_summary,
    )
    from simulations.simulator.summary import (
        budget_out_summary,
        hourly_paths,
        summarize,
    )
    from simulations.simulator.uncertainty import (
        simulate_with_rate_uncertainty,
        uncertainty_text,
    )
    from simulations.synthetic.truth import Truth

    check_writable(out_dir, folder=True)
    info = check_model_folder(model_dir)
    market = load_market(model_dir)
    doc, bid, budget = read_plan(plan_dir, market.names, info.get("model_id"))
    market = plan_market(model_dir, market, doc)
    days = doc["days"]
    if abs(days - round(days)) > 1e-9:
        raise InputError(
            f"plan {plan_dir}: the simulator replays whole days, but the plan covers {days:g} days. Plan a whole number of days."
        )
    days = round(days)
    first_price = doc.get("auction_type", market.auction_type) == "first_price"
    uncertainty = None
    if rate_uncertainty:
        result, uncertainty = simulate_with_rate_uncertainty(
            market, bid, budget, days, first_price, pacing, runs, seed
        )
    else:
        result = _run(
            market.params, bid, budget, days, first_price, pacing, runs, seed, quiet
        )
    summary = summarize(result, market.names)
    band = band_widening(model_dir)
    # The factors were measured on the full band (luck and rates): a luck-only run
    # is shown as simulated.
    widening = band_factors(band) if rate_uncertainty else {}
    guessed = guessed_curve_factors(band, market) if rate_uncertainty else {}
    if any(f > 1.0 for f in widening.values()) or guessed:
        caps = dict(zip(market.names, np.asarray(budget, float).tolist(), strict=True))
        summary = widen_summary(summary, widening, caps, guessed)
    out = {
        "runs": runs,
        "seed": seed,
        "pacing": pacing,
        "days": days,
        "rate_uncertainty": rate_uncertainty,
        "uncertainty": uncertainty,
        "band_widening": widening,
        "band_widening_guessed_curves": guessed,
        "band_check": band,
        "model_id": doc.get("provenance", {}).get("model_id"),
        "rows": summary.to_dict(orient="records"),
        "budget_out": budget_out_summary(result, market.names).to_dict(
            orient="records"
        ),
    }
    truth_summary = None
    if truth_file is not None:
        truth = Truth.load(truth_file)
        missing = sorted(set(market.names) - set(truth.audiences))
        if missing:
            raise InputError(
                f"truth file {truth_file}: audiences {missing[:5]} are not in this market; use the truth.json generated with the event log."
            )
        if info.get("input_kind") == "daily":
            true_params, true_bid, exact = _daily_truth(
                truth, market.names, budget, days
            )
            out["truth_exact"] = exact
        else:
            true_params, true_bid = truth_params_for(truth, doc, market.names), bid
        truth_result = _run(
            true_params,
            true_bid,
            budget,
            days,
            first_price,
            pacing,
            runs,
            seed + 1,
            quiet,
        )
        truth_summary = summarize(truth_result, market.names)
        out["truth"] = truth_summary.to_dict(orient="records")
    # The lines are built before anything is written: nothing can fail after.
    total = summary[summary["row"] == "total"].set_index("metric")
    lines = [
        f"Simulated the plan {runs} times over {days} days ({pacing} pacing, seed {seed}{', conversion-rate uncertainty included' if rate_uncertainty else ''}).",
        f"  spend        mean {total.loc['spend', 'mean']:,.2f}  (P10 {total.loc['spend', 'p10']:,.2f} - P90 {total.loc['spend', 'p90']:,.2f})",
        f"  conversions  mean {total.loc['conversions', 'mean']:,.1f}  (P10 {total.loc['conversions', 'p10']:,.1f} - P90 {total.loc['conversions', 'p90']:,.1f})",
    ]
    if truth_summary is not None:
        t = truth_summary[truth_summary["row"] == "total"].set_index("metric")
        lines.append(
            f"  on the true market: conversions mean {t.loc['conversions', 'mean']:,.1f} (P10 {t.loc['conversions', 'p10']:,.1f} - P90 {t.loc['conversions', 'p90']:,.1f}), spend {t.loc['spend', 'mean']:,.2f}"
        )
        if "truth_exact" in out:
            exact = out["truth_exact"]
            lines.append(
                f"  exact expectation there (the platform spending each daily budget, "
                f"each day of the week at its own bid): conversions "
                f"{exact['conversions']:,.1f}, spend {exact['spend']:,.2f}"
            )
    if uncertainty is not None:
        lines.append(uncertainty_text(uncertainty))
    throttled = (doc.get("pacing") or {}).get("throttled") or {}
    if throttled and pacing != "even":
        lines.append(
            f"  {len(throttled)} audience(s) bid higher on a share of their auctions; "
            "the plan's forecast spreads that share evenly over the horizon "
            "(--pacing even replays it; the expected totals are the same)."
        )
    lines.append(_band_text(band, widening))
    if guessed:
        worst = max(next(iter(guessed.values())).values())
        lines.append(
            f"  {len(guessed)} ad set(s) with a guessed spend curve (spend never varied): "
            f"their ranges are widened up to {worst:.2f}x, as much as a guessed curve "
            "missed by on the report's last days."
        )
    with atomic_dir(out_dir) as tmp:
        write_csv(tmp / "summary.csv", summary)
        write_json(tmp / "summary.json", out)
        write_csv(tmp / "paths.csv", hourly_paths(result, market.names))
        if truth_summary is not None:
            write_csv(tmp / "truth_summary.csv", truth_summary)
    lines.append(f"Written to {out_dir / 'summary.csv'}")
    return lines


def _daily_truth(truth, names: list[str], budget: np.ndarray, days: int):
    """A daily plan on the true market: the true market (audiences ``names``), the
    bid the platform would place to spend each daily budget (``budget`` (A,) over
    ``days``) on an average day, and the exact expected total of each measure
    over the horizon, each weekday at its own bid (truth.json's "daily" block)."""
    import jax.numpy as jnp

    from simulations.synthetic.daily import (
        DailyEffects,
        bids_for_budgets,
        budget_outcomes,
    )

    if truth.auction_type != "first_price":
        raise InputError(
            "the truth file is of a second-price auction log, and the plan is a daily "
            "report's budget plan: use the truth.json written by adplan generate --daily."
        )
    order = [truth.audiences.index(n) for n in names]
    params = truth.market_params().take(jnp.asarray(order))
    block = truth.data.get("daily")
    effects = DailyEffects.from_json(block).take(order) if block else None
    per_day = np.asarray(budget, float) / days
    exact = budget_outcomes(params, per_day, float(days), effects)
    totals = {k: float(np.sum(v)) for k, v in exact.items()}
    return params, bids_for_budgets(params, per_day), totals


def _band_text(band: dict | None, widening: dict[str, float]) -> str:
    """How the P10-P90 band was checked against the log (band.json)."""
    if not band or not band.get("outcomes"):
        return (
            "  band not checked against the log (model trained with --no-backtest or "
            "too short a log): it may be too narrow."
        )
    seen = (
        f"  band checked on the log's last {band['holdout_days']} day(s): it held "
        f"{band['coverage']:.0%} of {band['outcomes']} outcomes"
    )
    wider = {m: f for m, f in widening.items() if f > 1.0 and m not in ("cpa", "roas")}
    if wider:
        parts = ", ".join(f"{m} {f:.2f}x" for m, f in wider.items())
        return seen + f", so P10-P90 here are widened to hold about 80% ({parts})."
    return seen + " (about 80% expected), so it is shown as simulated."
