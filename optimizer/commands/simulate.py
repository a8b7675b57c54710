"""``adplan simulate``: replay a plan on the fitted (and optionally the true) market."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from optimizer.errors import InputError
from optimizer.io.files import atomic_dir, write_csv, write_json
from optimizer.io.plan_dir import read_plan
from optimizer.market.fit import (
    audience_factors,
    load_market,
    rate_uncertainty,
    rate_uncertainty_summary,
    spread_tilts,
)

_RATE_DRAWS = 20  # market draws per simulation when rate uncertainty is on


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


def simulate_rate_draws(
    market, multipliers, bid, budget, days, first_price, pacing, runs, seed
):
    """Replications in groups, group g on the market whose conversion rates are
    multiplied by ``multipliers[g]``, per audience (G, A) or per stratum
    (G, A, K); ``runs`` are split evenly."""
    groups = len(multipliers)
    per_group = -(-runs // groups)
    parts = []
    for g, factor in enumerate(np.asarray(multipliers)):
        p = market.params
        factor = jnp.asarray(factor if factor.ndim == 2 else factor[:, None])
        drawn = dataclasses.replace(p, p_conv=jnp.minimum(p.p_conv * factor, p.p_click))
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


def rate_draws(market, groups: int, seed: int) -> np.ndarray:
    """(G, A, K) conversion-rate multipliers of the strata, one per group of
    runs: each audience's level (:func:`rate_uncertainty`) times the
    within-audience spread (:func:`spread_tilts`)."""
    rng = np.random.default_rng([seed, 7])
    levels = rate_uncertainty(market, rng, groups)
    return levels[:, :, None] * spread_tilts(market, rng, groups)


def _rate_draws(market, runs, seed) -> np.ndarray:
    return rate_draws(market, min(_RATE_DRAWS, runs), seed)


def band_parts(result, multipliers: np.ndarray) -> dict:
    """Relative sd (1 sd / mean) of total conversions from each source.

    ``rate``: the drawn conversion rates alone, i.e. the sd over groups of
    ``multipliers @ C`` with ``multipliers`` (G, A) each audience's factor on
    its conversions (:func:`audience_factors`) and C (A,) the mean conversions
    per audience; ``luck``:
    auction luck alone, the pooled sd of runs within a group (None with fewer
    than two runs per group).
    """
    conversions = np.asarray(result.conversions)
    runs, groups = conversions.shape[0], len(multipliers)
    per_group = -(-runs // groups)
    mean = conversions.mean(axis=0)
    rate = np.std(multipliers @ mean) / max(mean.sum(), 1e-300)
    luck = None
    if per_group >= 2:
        total = conversions.sum(axis=1)
        group = np.arange(runs) // per_group
        spread = total - (np.bincount(group, total) / np.bincount(group))[group]
        dof = max(runs - group.max() - 1, 1)
        luck = float(np.sqrt(np.sum(spread**2) / dof) / max(total.mean(), 1e-300))
    return {"rate_sd": float(rate), "luck_sd": luck}


def uncertainty_text(uncertainty: dict) -> str:
    """Plain words on what the simulated band holds (for the simulate output)."""
    luck = uncertainty.get("luck_sd")
    luck_part = "auction luck" + (
        f" (about +-{luck:.0%} on its own)" if luck is not None else ""
    )
    rate_part = (
        "what the log leaves open about conversion rates "
        f"(about +-{uncertainty['rate_sd']:.0%} for this plan)"
    )
    if "audience_spread" not in uncertainty:
        return (
            f"  uncertainty: the band holds {luck_part} and {rate_part}, each "
            "audience's rate drawn from how many conversions the log had for it. "
            "Retrain the model to also draw the overall conversion level."
        )
    quality = uncertainty.get("quality_spread_sd")
    quality_part = (
        ", and how much better an audience's pricier impressions convert (known "
        f"to about +-{quality:.0%}; it matters where the plan bids away from the log)"
        if quality is not None
        else ""
    )
    return (
        f"  uncertainty: the band holds {luck_part} and {rate_part}: their overall "
        "level, shared by every audience, and each audience's own level (audiences "
        f"depart from the model by about {uncertainty['audience_spread']:.0%}; the "
        f"log's {uncertainty['conversions_in_log']:,} conversions narrow that most "
        f"where an audience has many){quality_part}."
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
    from simulations.simulator.summary import (
        budget_out_summary,
        hourly_paths,
        summarize,
    )
    from simulations.synthetic.truth import Truth

    market = load_market(model_dir)
    doc, bid, budget = read_plan(plan_dir, market.names)
    days = doc["days"]
    if abs(days - round(days)) > 1e-9:
        raise InputError(
            f"plan {plan_dir}: the simulator replays whole days, but the plan covers {days:g} days. Plan a whole number of days."
        )
    days = round(days)
    first_price = doc.get("auction_type", market.auction_type) == "first_price"
    uncertainty = None
    if rate_uncertainty:
        draws = _rate_draws(market, runs, seed)
        result = simulate_rate_draws(
            market, draws, bid, budget, days, first_price, pacing, runs, seed
        )
        factors = audience_factors(market.params, draws, bid)
        uncertainty = band_parts(result, factors) | (
            rate_uncertainty_summary(market) or {}
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
        "uncertainty": uncertainty,
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
    if uncertainty is not None:
        lines.append(uncertainty_text(uncertainty))
    lines.append(f"Written to {out_dir / 'summary.csv'}")
    return lines
