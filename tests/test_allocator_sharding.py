"""Sharded allocator and what-if batch: the same plans on 4 devices as on one.

JAX fixes its device count when it starts, so each check runs a script in a
subprocess with 4 emulated CPU devices (``--xla_force_host_platform_device_count``)
that solves on one device and sharded, and saves both for the asserts here. Both
scripts start together (compiling is most of their time, one core each).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICES = 4
# float64 money; sharding only reorders sums (one rounding each), and the
# allocator's steps are contractive, so plans agree to ~1e-14 (measured).
RTOL = 1e-9

PREAMBLE = """
import sys
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from optimizer import devices
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import capacity, make_problem
from tests.markets import random_market

assert len(jax.devices()) == 4, jax.devices()
out = sys.argv[1]
"""

ALLOCATOR = """
from optimizer.allocate.allocator import allocate
from optimizer.allocate.sharded import allocate_sharded, shard_problem

A = 23  # not a multiple of 4: one padding audience on the last device
params = random_market(4, audiences=A)
cap = np.asarray(jax.jit(capacity, static_argnums=1)(make_problem(params, 7.0, 1.0), SolveConfig()))
rng = np.random.default_rng(4)
lower = np.where(rng.uniform(size=A) < 0.3, 0.05 * cap, 0.0)
upper = np.where(rng.uniform(size=A) < 0.3, 0.5 * cap, np.inf)
group = rng.integers(0, 3, A)
group_cap = np.array([0.08, np.inf, 0.2]) * cap.sum()
problem = make_problem(params, 7.0, 0.15 * cap.sum(), lower, upper, None, group,
                       group_cap)
mesh = devices.mesh("audiences")
placed = shard_problem(problem, mesh)
shards = sorted(s.data.shape for s in placed.lower.addressable_shards)
one = allocate(problem)
many = allocate_sharded(problem, mesh)
np.savez(out, shards=np.array(shards),
         **{f"one_{k}": np.asarray(v) for k, v in vars(one).items()},
         **{f"many_{k}": np.asarray(v) for k, v in vars(many).items()})
"""

WHATIF = """
import pickle
from optimizer.plan.scenario import Scenario
from optimizer.market.fit import FittedMarket
from optimizer.plan.batch import allocate_batch, run_whatif

A = 6
params = random_market(5, audiences=A)
names = [f"aud{i}" for i in range(A)]
market = FittedMarket(names, "second_price", params, np.full(A, 0.01),
                      np.full(A, 10.0), np.full(A, 1.0), False, {})
base = Scenario(budget=300.0, days=7.0)
scenarios = [  # 5 scenarios: padded to 8 on 4 devices
    Scenario(name="more", budget=300.0, days=7.0, budget_scale=1.4),
    Scenario(name="pricier", budget=300.0, days=7.0, price_shift=0.15),
    Scenario(name="no_aud2", budget=300.0, days=7.0, remove_audiences=("aud2",)),
    Scenario(name="rates", budget=300.0, days=7.0, rate_shift={"aud0": -0.3}),
    Scenario(name="less", budget=300.0, days=7.0, budget_scale=0.5),
]
bid, cap = np.full(A, 0.01), np.full(A, 50.0)
mesh = devices.mesh("scenarios")
result = {
    "one": run_whatif(market, base, scenarios, None, bid, cap),
    "many": run_whatif(market, base, scenarios, None, bid, cap, mesh=mesh),
}
# The batch solve itself, unrounded: S = 5 problems of different budgets (the
# shapes of the what-if batch above, so both solves are already compiled).
batch = devices.stack([make_problem(params, 7.0, b) for b in (50.0, 120, 300, 700, 2e3)])
for key, m in (("batch_one", None), ("batch_many", mesh)):
    alloc = allocate_batch(batch, mesh=m)
    result[key] = {k: np.asarray(v) for k, v in vars(alloc).items()}
with open(out, "wb") as f:
    pickle.dump(result, f)
"""


def _start(script: str, out: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={DEVICES}"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), env.get("PYTHONPATH")])
    )
    code = textwrap.dedent(PREAMBLE) + textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code, str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both scripts started at once; each test waits for its own output file."""
    root = tmp_path_factory.mktemp("sharding")
    outs = {"allocator": root / "alloc.npz", "whatif": root / "whatif.pkl"}
    procs = {
        name: _start(script, outs[name])
        for name, script in (("allocator", ALLOCATOR), ("whatif", WHATIF))
    }
    yield {name: (procs[name], outs[name]) for name in procs}
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _output(runs: dict, name: str) -> Path:
    proc, out = runs[name]
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log[-4000:]
    return out


def _assert_same(one: dict, many: dict, scale: float) -> None:
    for key in ("bid", "budget", "spend", "gain", "marginal", "dual_price"):
        # atol: audiences the plan leaves at zero spend (1e-12 of the budget).
        np.testing.assert_allclose(
            many[key], one[key], rtol=RTOL, atol=1e-12 * scale, err_msg=key
        )
    np.testing.assert_allclose(many["objective"], one["objective"], rtol=RTOL)
    assert np.all(many["kkt_residual"] < 1e-6)


def test_sharded_allocator_matches_one_device(runs):
    with np.load(_output(runs, "allocator")) as npz:
        data = {k: npz[k] for k in npz.files}
    # 23 audiences padded to 24: six per device.
    assert data["shards"].tolist() == [[6]] * DEVICES
    one = {k[4:]: v for k, v in data.items() if k.startswith("one_")}
    many = {k[5:]: v for k, v in data.items() if k.startswith("many_")}
    assert many["bid"].shape == one["bid"].shape == (23,)
    assert float(one["dual_price"]) > 0  # the budget binds: a real price search
    _assert_same(one, many, float(one["spend"].sum()))
    np.testing.assert_allclose(
        many["duality_gap"], one["duality_gap"], rtol=1e-6, atol=1e-9
    )


def test_whatif_sharded_over_scenarios_matches_one_device(runs):
    import pickle

    with open(_output(runs, "whatif"), "rb") as f:
        result = pickle.load(f)
    one, many = result["batch_one"], result["batch_many"]
    assert many["bid"].shape == one["bid"].shape == (5, 6)
    _assert_same(one, many, 1.0)
    (table_one, plans_one), (table_many, plans_many) = result["one"], result["many"]
    assert len(table_one) == 11  # base + 2 rows for each of the 5 scenarios
    # Rounded outputs: identical unless a value sits on a rounding boundary.
    pd.testing.assert_frame_equal(table_many, table_one, rtol=RTOL, atol=1e-2)
    assert plans_many.keys() == plans_one.keys()
    for name, plan in plans_one.items():
        pd.testing.assert_frame_equal(plans_many[name], plan, rtol=RTOL, atol=1e-2)


@pytest.mark.parametrize(("n", "multiple", "padded"), [(23, 4, 24), (8, 4, 8)])
def test_pad_to(n, multiple, padded):
    from optimizer.devices import pad_to

    assert pad_to(n, multiple) == padded
