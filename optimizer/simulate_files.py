"""``adplan simulate``: replay a plan on the fitted (and optionally the true) market."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from optimizer.errors import InputError
from optimizer.fileio import atomic_dir, write_csv, write_json
from optimizer.market_fit import load_market, rate_uncertainty_shape
from optimizer.plan_reader import read_plan

_RATE_DRAWS = 20  # market draws per simulation when rate uncertainty is on


def _run(params, bid, budget, days, first_price, pacing, runs, seed, quiet):
    from simulations.simulator import simulate

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


def simulate_with_rate_uncertainty(
    market, bid, budget, days, first_price, pacing, runs, seed
):
    """Replications in groups, each group on a market whose conversion rates are
    drawn from their uncertainty (a Gamma multiplier per audience with mean 1 and
    relative sd 1/sqrt(conversions in the log + 20)): the spread then covers what
    the model does not know, not only auction luck."""
    shape = rate_uncertainty_shape(market)
    rng = np.random.default_rng([seed, 7])
    groups = min(_RATE_DRAWS, runs)
    per_group = -(-runs // groups)
    parts = []
    for g in range(groups):
        factor = jnp.asarray(rng.gamma(shape, 1.0 / shape))
        p = market.params
        drawn = dataclasses.replace(
            p, p_conv=jnp.minimum(p.p_conv * factor[:, None], p.p_click)
        )
        parts.append(
            _run(
                drawn,
                bid,
                budget,
                days,
                first_price,
                pacing,
                per_group,
                seed + 1000 * g,
                True,
            )
        )
    joined = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:runs], *parts)
    return dataclasses.replace(
        joined,
        path_spend=parts[0].path_spend,
        path_conversions=parts[0].path_conversions,
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
    from simulations.simulator import budget_out_summary, hourly_paths, summarize
    from simulations.truth import Truth

    market = load_market(model_dir)
    doc, bid, budget = read_plan(plan_dir, market.names)
    days = doc["days"]
    if abs(days - round(days)) > 1e-9:
        raise InputError(
            f"plan {plan_dir}: the simulator replays whole days, but the plan covers {days:g} days. Plan a whole number of days."
        )
    days = round(days)
    first_price = doc.get("auction_type", market.auction_type) == "first_price"
    if rate_uncertainty:
        result = simulate_with_rate_uncertainty(
            market, bid, budget, days, first_price, pacing, runs, seed
        )
    else:
        result = _run(
            market.params, bid, budget, days, first_price, pacing, runs, seed, quiet
        )
    summary = summarize(result, market.names)
    out = {
        "runs": runs,
        "seed": seed,
        "pacing": pacing,
        "days": days,
        "rate_uncertainty": rate_uncertainty,
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
        true_params = truth.market_params().take(
            jnp.asarray([truth.audiences.index(n) for n in market.names])
        )
        truth_result = _run(
            true_params, bid, budget, days, first_price, pacing, runs, seed + 1, quiet
        )
        truth_summary = summarize(truth_result, market.names)
        out["truth"] = truth_summary.to_dict(orient="records")
    with atomic_dir(out_dir) as tmp:
        write_csv(tmp / "summary.csv", summary)
        write_json(tmp / "summary.json", out)
        write_csv(tmp / "paths.csv", hourly_paths(result, market.names))
        if truth_summary is not None:
            write_csv(tmp / "truth_summary.csv", truth_summary)
    total = summary[summary["audience"] == "TOTAL"].set_index("metric")
    lines = [
        f"Simulated the plan {runs} times over {days} days ({pacing} pacing, seed {seed}{', conversion-rate uncertainty included' if rate_uncertainty else ''}).",
        f"  spend        mean {total.loc['spend', 'mean']:,.2f}  (P10 {total.loc['spend', 'p10']:,.2f} - P90 {total.loc['spend', 'p90']:,.2f})",
        f"  conversions  mean {total.loc['conversions', 'mean']:,.1f}  (P10 {total.loc['conversions', 'p10']:,.1f} - P90 {total.loc['conversions', 'p90']:,.1f})",
    ]
    if truth_summary is not None:
        t = truth_summary[truth_summary["audience"] == "TOTAL"].set_index("metric")
        lines.append(
            f"  on the true market: conversions mean {t.loc['conversions', 'mean']:,.1f} (P10 {t.loc['conversions', 'p10']:,.1f} - P90 {t.loc['conversions', 'p90']:,.1f}), spend {t.loc['spend', 'mean']:,.2f}"
        )
    lines.append(f"Written to {out_dir / 'summary.csv'}")
    return lines
