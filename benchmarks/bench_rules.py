"""Bid rules against the per-impression optimum: ``python -m benchmarks.run rules``.

Per synthetic market (trained like the quality benchmark) and budget level,
every plan is scored by its exact expected conversions under the truth:

  per_impression  the truth's per-impression optimum (bid = true rate / one price)
  flat_oracle     the best flat bid per audience under the truth
  adplan_rules    adplan's plan with bid rules (falls back to flat where a rule
                  does not add), evaluated with the rule applied to every true
                  impression kind, each stratum capped at the plan's max bid
  adplan_flat     adplan's plan with --flat-bids
  true_rules      the same rule fitting on the truth's per-row rates (the rule
                  form's ceiling, with adplan's landscapes from the log)

``capture`` = (rules - flat_oracle) / (per_impression - flat_oracle): the share
of the per-impression gain over the best flat plan a rule realizes. Results in
``benchmarks/results/rules.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_quality import BUDGETS, DAYS, QUICK_MARKETS, MarketSpec, prepare

RESULTS = Path(__file__).resolve().parent / "results" / "rules.json"
METHODS = ("per_impression", "flat_oracle", "adplan_rules", "adplan_flat", "true_rules")


def _truth(spec: MarketSpec):
    from simulations.synthetic.generate import make_truth
    from simulations.synthetic.truth import Truth

    data = make_truth(
        spec.audiences, DAYS, spec.seed, spec.auction_type, spec.competition_slope
    )
    for aud in data["audiences"]:
        aud["volume_per_day"] *= spec.volume_scale
    return Truth(data)


def _solve(market, budget: float):
    from optimizer.plan.resolve import solve_plan
    from optimizer.plan.scenario import load_scenario

    solved = solve_plan(
        market, load_scenario(None, {"budget": budget, "days": float(DAYS)})
    )
    return solved


def _rule_plan(market, rows, budget: float):
    """(rule or None, solved plan): the rule plan where it adds over flat in the
    model (as ``adplan plan`` decides), else the flat plan."""
    from optimizer.plan.bid_rules import MIN_RULE_GAIN, rule_market_for

    flat = _solve(market, budget)
    rule, ruled_market = rule_market_for(market, rows, "conversions")
    if rule.is_flat:
        return None, flat
    ruled = _solve(ruled_market, budget)
    gain = float(ruled.allocation.objective) / float(flat.allocation.objective) - 1
    return (rule, ruled) if gain >= MIN_RULE_GAIN else (None, flat)


def _true_score(truth, order, names, rule, solved, first_price: bool) -> dict:
    """Exact conversions and spend under the truth of a plan (by ``rule`` or flat)."""
    from optimizer.market.params import expected_outcomes, with_rule
    from simulations.synthetic.oracle import truth_rule_market

    bid = solved.allocation.bid
    cap = solved.allocation.budget
    if rule is None:
        params = truth.market_params().take(order)
    else:
        params = truth_rule_market(truth, rule).take(order)
        max_bid = np.exp(np.asarray(solved.inputs.problem.max_log_bid))
        params = with_rule(params, params.log_bid_factor, max_bid)
    out = expected_outcomes(params, bid, float(DAYS), cap, first_price)
    return {
        "conversions": float(np.sum(np.asarray(out.conversions))),
        "spend": float(np.sum(np.asarray(out.spend))),
        "rule_audiences": 0 if rule is None else len(rule.names) - len(rule.flat),
    }


def run_market(spec: MarketSpec, workdir: Path, epochs: int) -> list[dict]:
    """One row per budget level: every method's true conversions and the ratios."""
    import jax.numpy as jnp

    from optimizer.allocate.config import SolveConfig
    from optimizer.allocate.exact import solve_exact
    from optimizer.allocate.problem import make_problem
    from optimizer.market.store import load_rule_rows
    from simulations.synthetic.oracle import per_impression_optimum

    start = time.perf_counter()
    ctx = prepare(spec, workdir, epochs)
    truth = _truth(spec)
    order = jnp.asarray([truth.audiences.index(n) for n in ctx.names])
    rows_model = load_rule_rows(workdir / f"{spec.name}_model")
    rows_true = ctx.true_rates_market.rule_rows
    config = SolveConfig("conversions", ctx.first_price)
    out = []
    for level, frac in BUDGETS.items():
        budget = frac * float(ctx.daily_spend.sum()) * DAYS
        opt, _ = per_impression_optimum(truth, budget, float(DAYS))
        flat_opt = solve_exact(
            make_problem(ctx.true_params, float(DAYS), budget), config
        )
        conv = {
            "per_impression": float(opt.objective),
            "flat_oracle": float(flat_opt.objective),
        }
        spend = {}
        for name, market, rows in (
            ("adplan_rules", ctx.market, rows_model),
            ("adplan_flat", ctx.market, None),
            ("true_rules", ctx.true_rates_market, rows_true),
        ):
            if rows is None:
                rule, solved = None, _solve(market, budget)
            else:
                rule, solved = _rule_plan(market, rows, budget)
            s = _true_score(truth, order, ctx.names, rule, solved, ctx.first_price)
            conv[name], spend[name] = s["conversions"], s["spend"] / budget
            if name == "adplan_rules":
                used = s["rule_audiences"]
        gap = conv["per_impression"] - conv["flat_oracle"]
        row = {
            "market": spec.name,
            "auction_type": spec.auction_type,
            "budget_level": level,
            "budget": budget,
            **{f"conv_{m}": conv[m] for m in METHODS},
            **{f"regret_{m}": 1 - conv[m] / conv["per_impression"] for m in METHODS},
            "per_impression_gain": conv["per_impression"] / conv["flat_oracle"] - 1,
            "capture_adplan_rules": (conv["adplan_rules"] - conv["flat_oracle"]) / gap,
            "capture_true_rules": (conv["true_rules"] - conv["flat_oracle"]) / gap,
            "rules_vs_flat": conv["adplan_rules"] / conv["adplan_flat"] - 1,
            "spend_ratio_rules": spend["adplan_rules"],
            "spend_ratio_flat": spend["adplan_flat"],
            "rule_audiences": used,
            "audiences": len(ctx.names),
        }
        out.append(row)
        print(
            f"{spec.name} {level:>6}: per-impression +{row['per_impression_gain']:.1%} "
            f"over flat oracle; regret rules {row['regret_adplan_rules']:.1%}, flat "
            f"{row['regret_adplan_flat']:.1%}, true-rate rules "
            f"{row['regret_true_rules']:.1%}; capture {row['capture_adplan_rules']:.0%}; "
            f"rules vs flat {row['rules_vs_flat']:+.1%}; spend {spend['adplan_rules']:.3f}",
            flush=True,
        )
    print(f"{spec.name}: done in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def summarize(rows: list[dict]) -> dict:
    """Medians over cases and the acceptance checks."""
    med = {
        k: float(np.median([r[k] for r in rows]))
        for k in (
            "capture_adplan_rules",
            "capture_true_rules",
            "rules_vs_flat",
            "per_impression_gain",
            *(f"regret_{m}" for m in METHODS),
        )
    }
    worst = min(r["rules_vs_flat"] for r in rows)
    spend_off = max(abs(r["spend_ratio_rules"] - 1) for r in rows)
    return {
        "median": med,
        "worst_rules_vs_flat": worst,
        "max_spend_deviation_rules": spend_off,
        "targets": {
            "capture >= 60% (median)": med["capture_adplan_rules"] >= 0.6,
            "never > 1% worse than flat": worst >= -0.01,
            "spend within 2% of budget": spend_off <= 0.02,
        },
    }


def main(quick: bool = True) -> dict:
    """Run on the quality benchmark's quick markets; print and write rules.json."""
    import jax

    jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_rules_") as tmp:
        for spec in QUICK_MARKETS:
            rows += run_market(spec, Path(tmp), epochs=4)
    summary = summarize(rows)
    print(json.dumps(summary, indent=2))
    result = {
        "config": {
            "days": DAYS,
            "budgets": BUDGETS,
            "markets": [
                dataclasses.asdict(s) | {"name": s.name} for s in QUICK_MARKETS
            ],
            "seconds": round(time.perf_counter() - start, 1),
        },
        "summary": summary,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main(quick="--full" not in sys.argv[1:])
