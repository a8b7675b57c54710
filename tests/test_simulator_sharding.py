"""Simulator split over devices: the same replications as on one device.

The check runs in a subprocess because the number of emulated CPU devices is
fixed when JAX starts (``XLA_FLAGS=--xla_force_host_platform_device_count=4``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# argv: path runs, then pacings. For each pacing, one plan simulated on 1 device
# and on all 4, with budgets that run out, 10 runs in batches of 6 (the second
# padded, and 6 not a multiple of 4); prints per-output differences as JSON.
SCRIPT = """
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
from optimizer.market.params import expected_outcomes
from simulations.simulator.run import simulate
from simulations.synthetic.generate import make_truth
from simulations.synthetic.truth import Truth

truth = Truth(make_truth(6, 7, seed=3))
params, bid = truth.market_params(), jnp.asarray(truth.usual_bids())
budget = 0.4 * expected_outcomes(params, bid, 1).spend
report = {"devices": jax.device_count()}
for pacing in sys.argv[2:]:
    runs = {}
    for name, devices in (("one", jax.devices()[:1]), ("all", None)):
        result = simulate(
            jax.random.key(4), params, bid, budget, 1, first_price=False,
            pacing=pacing, runs=10, path_runs=int(sys.argv[1]), batch=6, chunk=64,
            devices=devices,
        )
        report[f"{pacing}_{name}_devices"] = len(result.spend.sharding.device_set)
        runs[name] = {k: np.asarray(v) for k, v in vars(result).items()}
    one, all_ = runs["one"], runs["all"]
    report[pacing] = {
        field: {
            "shape_equal": one[field].shape == all_[field].shape,
            "nan_equal": bool(np.array_equal(np.isnan(one[field]), np.isnan(all_[field]))),
            "max_rel_diff": float(np.nanmax(
                np.abs(one[field] - all_[field]) / np.maximum(np.abs(one[field]), 1e-300),
                initial=0.0,
            )),
        }
        for field in one
    }
    report[pacing]["stopped_runs"] = int(np.sum(~np.isnan(one["out_hour"])))
print(json.dumps(report))
"""


def _compare(path_runs: int, *pacings: str) -> dict:
    """Run SCRIPT with 4 emulated CPU devices; its report."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path_runs), *pacings],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_devices_match_one_device():
    """Every output of a run split over 4 devices equals the 1-device run's
    (float64 sums may be reordered: 1e-12 relative, which keeps counts exact;
    NaNs and shapes exactly), with budgets that run out in some replications.

    Stop pacing and no paths, to compile only two programs (seconds each); even
    pacing and the path batch go through the same batching and sharding code
    (``_compare(3, "stop", "even")`` checks them too, in about a minute).
    """
    report = _compare(0, "stop")
    assert report["devices"] == 4
    assert report["stop_one_devices"] == 1 and report["stop_all_devices"] == 4
    checks = report["stop"]
    assert checks.pop("stopped_runs") > 0
    for field, check in checks.items():
        assert check["shape_equal"] and check["nan_equal"], field
        assert check["max_rel_diff"] <= 1e-12, (field, check)
