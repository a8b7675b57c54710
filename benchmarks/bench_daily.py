"""Daily-report cases of the quality benchmark (issue 19).

Per seed: a first-price synthetic market seen only as the platform's daily report
(:mod:`simulations.synthetic.daily`, budgets varying over the days, volume and
conversion rates varying by day of the week, rows split by device), adplan's
daily-report model fitted to it (the rate network on the counts, then the spend
curves: ``adplan train``'s fit), and a budget over the next ``HORIZON`` days equal
to the report's average daily spend. Every plan is a daily budget per ad set,
scored exactly on the truth (the platform bidding to spend it, each day of the
week at its own bid). Regret is against the true optimum: the best plan here,
refined by SLSQP on the true outcome (from adplan's plan and from the best other). Beside adplan: keep-current
(the last week's split, scaled), an even split, and the MMM-style baseline (per
ad set conv/day = a (1 - exp(-spend/b)) fitted to the daily rows, split by
SLSQP). Also the forecast error of adplan's total conversions, the error of its
per-ad-set conversion rates against the truth, and the backtest's band coverage
on the report's last week (learned curves, and curves guessed as for an ad set
whose spend never varied). Writes ``benchmarks/results/quality_daily.json``.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "quality_daily.json"
HORIZON = 14
N_ADSETS, LOG_DAYS = 8, 28


def _mmm_split(report: pd.DataFrame, names: list[str], daily_budget: float):
    """The MMM-style baseline's daily budgets (SLSQP on fitted saturating curves)."""
    from scipy.optimize import minimize

    from benchmarks.bench_quality import _fit_mmm, _saturating

    rows = [report[report["audience"] == n] for n in names]
    curves = _fit_mmm(
        {
            "spend": [r["spend"].to_numpy() for r in rows],
            "conversions": [r["conversions"].to_numpy() for r in rows],
        }
    )
    n = len(names)
    x0 = np.full(n, daily_budget / n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = minimize(
            lambda x: -np.sum(_saturating(x, curves[:, 0], curves[:, 1])),
            x0,
            method="SLSQP",
            bounds=[(0.0, daily_budget)] * n,
            constraints=[{"type": "eq", "fun": lambda x: np.sum(x) - daily_budget}],
        )
    return np.clip(best.x, 0.0, None)


def _true_optimum(per_adset, starts: list[np.ndarray], daily_budget: float) -> float:
    """The best true conversions per horizon over daily budget splits: SLSQP on the
    exact outcome from each of ``starts``. ``per_adset(daily) -> (A,)`` conversions;
    the outcome is separable, so one shifted call gives every partial derivative."""
    from scipy.optimize import minimize

    scale = max(float(per_adset(starts[0]).sum()), 1e-9)
    step = 1e-4

    def value_and_grad(x):
        x = np.clip(x, 0.0, None)
        here = per_adset(x * daily_budget)
        there = per_adset((x + step) * daily_budget)
        return -here.sum() / scale, -(there - here) / step / scale

    best = max(float(per_adset(x).sum()) for x in starts)
    for x0 in starts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = minimize(
                value_and_grad,
                x0 / daily_budget,
                jac=True,
                method="SLSQP",
                bounds=[(0.0, 1.0)] * len(x0),
                constraints=[{"type": "eq", "fun": lambda x: np.sum(x) - 1.0}],
                options={"maxiter": 200, "ftol": 1e-12},
            )
        x = np.clip(found.x, 0.0, None)
        best = max(best, float(per_adset(x / x.sum() * daily_budget).sum()))
    return best


def _rate_error(market, params) -> float:
    """Median |log| error of the plan's conversions per impression against the
    truth's, per ad set, at the report's recent price (the truth's device mix and
    weekday factors average to 1, so its rate is the market's)."""
    from optimizer.market.params import per_auction

    true = np.asarray(per_auction(params, jnp.asarray(market.current_bid), True))
    true_rate = true[:, 3] / true[:, 0]
    fitted = np.asarray(market.params.p_conv[:, 0])
    return float(np.median(np.abs(np.log(fitted / true_rate))))


def run_case(seed: int) -> dict:
    """One market: every method's true conversions, regret and adplan's forecast."""
    from optimizer.commands.daily import fit_report
    from optimizer.io.daily import daily_totals
    from optimizer.plan.output import plan_frame
    from optimizer.plan.resolve import solve_plan
    from optimizer.plan.scenario import load_scenario
    from simulations.synthetic.daily import budget_outcomes, synthetic_report

    truth, report, effects = synthetic_report(N_ADSETS, LOG_DAYS, seed)
    true_params = truth.market_params()
    names = [a["audience"] for a in truth.data["audiences"]]
    report["date"] = pd.to_datetime(report["date"])
    market = fit_report(report, ["device"], [], seed)
    order = [names.index(n) for n in market.names]
    params = true_params.take(jnp.asarray(order))
    effects = effects.take(order)
    daily_budget = float(report["spend"].sum()) / LOG_DAYS
    budget = daily_budget * HORIZON
    scenario = load_scenario(None, {"budget": budget, "days": float(HORIZON)})
    t0 = time.perf_counter()
    solved = solve_plan(market, scenario, None)
    seconds = time.perf_counter() - t0
    frame = plan_frame(solved)
    recent = report[report["date"] > report["date"].max() - pd.Timedelta(days=7)]
    last = recent.groupby("audience")["spend"].sum().loc[market.names].to_numpy()
    reindexed = daily_totals(report)
    plans = {
        "adplan": frame["budget"].to_numpy() / HORIZON,
        "keep_current": last / last.sum() * daily_budget,
        "even_split": np.full(len(order), daily_budget / len(order)),
        "mmm_slsqp": _mmm_split(reindexed, market.names, daily_budget),
    }

    def per_adset(daily: np.ndarray) -> np.ndarray:
        return budget_outcomes(params, daily, HORIZON, effects)["conversions"]

    scored = {k: float(per_adset(v).sum()) for k, v in plans.items()}
    ranked = sorted(plans, key=scored.get, reverse=True)
    starts = [plans["adplan"], *(plans[k] for k in ranked[:1] if k != "adplan")]
    optimum = _true_optimum(per_adset, starts, daily_budget)
    forecast = float(frame["expected_conversions"].sum())
    check = _backtest(report, seed)
    return {
        "seed": seed,
        "budget": budget,
        "true_optimum": optimum,
        "conversions": scored,
        "regret": {k: 1.0 - v / optimum for k, v in scored.items()},
        "forecast_error": abs(forecast - scored["adplan"]) / scored["adplan"],
        "identified": sum(f["identified"] for f in market.metrics["landscapes"]),
        "rate_error": _rate_error(market, params),
        "weekday_volume_used": market.metrics["weekday_volume"]["used"],
        "weekday_volume_error": float(
            np.max(
                np.abs(
                    np.log(list(market.metrics["weekday_volume"]["factors"].values()))
                    - np.log(effects.weekday_volume)
                )
            )
        ),
        "plan_seconds": seconds,
        "backtest": check,
    }


def _backtest(report: pd.DataFrame, seed: int) -> dict:
    """``adplan backtest``'s check of the report (last quarter of days held out):
    how often the P10-P90 held the held-out outcomes, before and after widening
    (the widened figure out of sample: each half of the ad sets by the other's
    factors), and the same for curves guessed as for an ad set that never varied."""
    from optimizer.commands.backtest import calibration, split_days
    from optimizer.commands.backtest_daily import MIN_TRAIN_DAYS, compare_daily
    from optimizer.io.daily import daily_totals
    from optimizer.market.daily import fit_daily_market
    from optimizer.rates.counts import fit_count_rates

    train, held, n, _ = split_days(report, None, "", "date", "", MIN_TRAIN_DAYS)
    rates = fit_count_rates(train, ["device"], seed)
    out = {}
    for kind, guess in (("fitted", False), ("guessed", True)):
        market = fit_daily_market(daily_totals(train), [], guess, rates)
        table = compare_daily(market, daily_totals(held), n, 60, seed)
        c = calibration(table[table["metric"] != "spend"])
        out[kind] = {
            "coverage": c["coverage"],
            "coverage_widened_crossfit": c["coverage_widened_crossfit"],
            "median_abs_error": c["median_abs_error"],
            "widening_by_metric": c["widening_by_metric"],
        }
    return out


def main(quick: bool = False) -> dict:
    seeds = range(3) if quick else range(8)
    cases = [run_case(s) for s in seeds]
    methods = list(cases[0]["regret"])
    summary = {
        "median_regret": {
            m: float(np.median([c["regret"][m] for c in cases])) for m in methods
        },
        "median_forecast_error": float(np.median([c["forecast_error"] for c in cases])),
        "median_rate_error": float(np.median([c["rate_error"] for c in cases])),
        "weekday_volume_found": int(sum(c["weekday_volume_used"] for c in cases)),
        "median_weekday_volume_error": float(
            np.median([c["weekday_volume_error"] for c in cases])
        ),
        "backtest": {
            kind: {
                k: float(np.median([c["backtest"][kind][k] for c in cases]))
                for k in ("coverage", "coverage_widened_crossfit", "median_abs_error")
            }
            for kind in ("fitted", "guessed")
        },
    }
    print(f"daily-report cases ({len(cases)} markets, {N_ADSETS} ad sets split by device, "
          f"{LOG_DAYS} days of report with weekday effects, {HORIZON}-day plan at the "
          "report's spend rate)")  # fmt: skip
    for m in methods:
        print(f"  median regret {m:<13} {summary['median_regret'][m]:7.2%}")
    print(f"  adplan forecast error of total conversions (median) {summary['median_forecast_error']:.1%}")  # fmt: skip
    print(f"  adplan conversion rate per ad set vs truth: median |log error| {summary['median_rate_error']:.3f}")  # fmt: skip
    print(f"  weekday volume effect found in {summary['weekday_volume_found']} of {len(cases)} markets, "
          f"median worst-day |log error| {summary['median_weekday_volume_error']:.3f}")  # fmt: skip
    for kind, label in (("fitted", "learned curves"), ("guessed", "guessed curves")):
        b = summary["backtest"][kind]
        print(f"  backtest, {label:<14}: P10-P90 held {b['coverage']:.0%} of held-out outcomes "
              f"(median over markets), widened {b['coverage_widened_crossfit']:.0%} "
              f"(out of sample; 80% wanted), median error {b['median_abs_error']:.1%}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"summary": summary, "cases": cases}, indent=1))
    return summary


if __name__ == "__main__":
    import jax

    jax.config.update("jax_enable_x64", True)
    main()
