"""Simulator throughput: the JAX simulator against a plain numpy auction loop.

Both replay the same plan (usual bids, generous per-audience budgets, stop
pacing, second price) on the same 6-audience synthetic market, each method and
size in its own subprocess so peak memory (max RSS) is its own. JAX seconds
exclude compilation (a warm-up call with the same shapes runs first). Writes
``benchmarks/results/simulator.json``: rows of
``{"auctions", "method", "seconds", "auctions_per_second", "peak_mb"}``.

Run: ``.venv/bin/python benchmarks/bench_simulator.py``
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "simulator.json"
DAYS = 14
BATCH = 80
SIZES = (80, 320)  # replications: ~10.8M and ~43M auctions
SEED = 0


def _market():
    """The benchmark market (MarketParams), its usual bids and budgets (A,)."""
    import jax.numpy as jnp

    from optimizer.market import expected_outcomes
    from simulations.synthetic import make_truth
    from simulations.truth import Truth

    truth = Truth(make_truth(6, 7, seed=3))
    params = truth.market_params()
    bid = jnp.asarray(truth.usual_bids())
    budget = 2.0 * expected_outcomes(params, bid, DAYS).spend
    return params, bid, budget


def _offset_cdf(weights: np.ndarray) -> np.ndarray:
    """(A, n) row probabilities -> (A * n,) CDFs shifted by the row index."""
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    return (cdf + np.arange(len(weights))[:, None]).ravel()


def numpy_simulate(
    p: dict[str, np.ndarray],
    bid: np.ndarray,
    budget: np.ndarray,
    days: int,
    runs: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Second-price, stop-pacing replay drawing every auction, hour by hour.

    Args:
        p: MarketParams fields as numpy arrays.
        bid, budget: (A,) currency.

    Returns:
        (runs, A, 6) auctions, impressions, spend, clicks, conversions, value.
    """
    n_aud, n_strata = p["weight"].shape
    n_comp = p["mix_weight"].shape[1]
    strata_cdf, comp_cdf = _offset_cdf(p["weight"]), _offset_cdf(p["mix_weight"])
    totals = np.zeros((runs * n_aud, 6))
    stopped = np.zeros(runs * n_aud, bool)
    groups = np.arange(runs * n_aud)
    for hour in range(24 * days):
        rate = p["volume_per_day"] * p["hour_profile"][:, hour % 24]
        count = rng.poisson(np.tile(rate, runs))
        group = np.repeat(groups, count)  # run * A + audience of each auction
        a = group % n_aud
        k = np.searchsorted(strata_cdf, a + rng.random(a.size), side="right")
        k = np.minimum(k - a * n_strata, n_strata - 1)
        j = np.searchsorted(comp_cdf, a + rng.random(a.size), side="right")
        j = np.minimum(j - a * n_comp, n_comp - 1)
        log_price = p["price_loc"][a, k] + p["mix_loc"][a, j]
        price = np.exp(log_price + p["mix_scale"][a, j] * rng.standard_normal(a.size))
        cost = np.where(price < bid[a], price, 0.0)
        running = np.cumsum(cost)
        first = np.concatenate([[0], np.cumsum(count)[:-1]])
        before = np.repeat(np.concatenate([[0.0], running])[first], count)
        spent = totals[group, 2] + running - before
        take = (price < bid[a]) & ~stopped[group] & (spent <= budget[a])
        u = rng.random(a.size)
        click = take & (u < p["p_click"][a, k])
        conv = take & (u < p["p_conv"][a, k])
        columns = (
            np.ones(a.size),
            take,
            cost * take,
            click,
            conv,
            conv * p["value"][a, k],
        )
        for i, x in enumerate(columns):
            totals[:, i] += np.bincount(group, x, runs * n_aud)
        stopped |= np.bincount(group, (price < bid[a]) & ~take, runs * n_aud) > 0
    return totals.reshape(runs, n_aud, 6)


def _run_numpy(runs: int) -> tuple[float, float]:
    """(seconds, auctions) of the numpy replay."""
    import dataclasses

    params, bid, budget = _market()
    p = {
        f.name: np.asarray(getattr(params, f.name)) for f in dataclasses.fields(params)
    }
    rng = np.random.default_rng(SEED)
    start = time.perf_counter()
    totals = numpy_simulate(p, np.asarray(bid), np.asarray(budget), DAYS, runs, rng)
    return time.perf_counter() - start, float(totals[..., 0].sum())


def _run_jax(runs: int) -> tuple[float, float]:
    """(seconds, auctions) of the JAX simulator, after a same-shape warm-up."""
    import jax

    from simulations.simulator import simulate

    params, bid, budget = _market()

    def call(runs: int, seed: int):
        result = simulate(
            jax.random.key(seed),
            params,
            bid,
            budget,
            DAYS,
            first_price=False,
            runs=runs,
            path_runs=0,
            batch=BATCH,
        )
        return jax.block_until_ready(result)

    call(BATCH, SEED + 1)
    start = time.perf_counter()
    result = call(runs, SEED)
    return time.perf_counter() - start, float(result.auctions.sum())


def _worker(method: str, runs: int) -> None:
    """Subprocess entry: time one method and size, print one JSON row."""
    import jax

    jax.config.update("jax_enable_x64", True)
    seconds, auctions = {"numpy": _run_numpy, "jax": _run_jax}[method](runs)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {
        "auctions": int(auctions),
        "method": method,
        "seconds": round(seconds, 3),
        "auctions_per_second": round(auctions / seconds),
        "peak_mb": round(peak_mb, 1),
    }
    print(json.dumps(row))


def main() -> list[dict]:
    """Time both methods at every size, print a table, write the JSON rows."""
    rows = []
    for runs in SIZES:
        for method in ("numpy", "jax"):
            out = subprocess.run(
                [sys.executable, __file__, "--worker", method, str(runs)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"{'auctions':>12} {'method':>6} {'seconds':>8} {'auctions/s':>12} {'peak MB':>8}"
    )
    for r in rows:
        print(
            f"{r['auctions']:>12,} {r['method']:>6} {r['seconds']:>8.2f} "
            f"{r['auctions_per_second']:>12,} {r['peak_mb']:>8.0f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.path.insert(0, str(ROOT))
        _worker(sys.argv[2], int(sys.argv[3]))
    else:
        main()
