"""Scale-out of training: device meshes, streamed logs, several processes.

Emulated devices need ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
before JAX starts, and ``jax.distributed`` needs processes of its own, so those
tests run Python in subprocesses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from flax import serialization

from optimizer.cli import main

ROOT = Path(__file__).resolve().parents[1]
CLI = "from optimizer.cli import main; main()"


def _python(code: str, *args: str, devices: int = 1, timeout: int = 300):
    """Run ``code`` in a fresh Python with ``devices`` emulated CPU devices."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: int = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _params(model: Path) -> list[np.ndarray]:
    import jax

    blob = (model / "rates" / "params.msgpack").read_bytes()
    return [np.asarray(x) for x in jax.tree.leaves(serialization.msgpack_restore(blob))]


_LINEAR = """
import sys, numpy as np, jax, jax.numpy as jnp, optax
jax.config.update("jax_enable_x64", True)
from optimizer.rates.data_parallel import DataParallel, Rows, make_mesh, replicate, to_local
rng = np.random.default_rng(0)
x = rng.normal(size=(5000, 8)); y = x @ rng.normal(size=8) + rng.normal(size=5000)
n_shards = int(sys.argv[1])
dp = DataParallel(Rows((x, y), (np.arange(5000) // 700) % n_shards), n_shards, 256, make_mesh())
tx = optax.sgd(1e-4) if sys.argv[2] == "sgd" else optax.adam(1e-2)
epoch = dp.epoch_fn(lambda p, xb, yb: jnp.sum((xb @ p["w"] - yb) ** 2), tx)
p = replicate(dp.mesh, {"w": np.zeros(8)})
state = (p, p, replicate(dp.mesh, tx.init({"w": np.zeros(8)})))
for e in range(3):
    *state, loss = epoch(*state, replicate(dp.mesh, np.float64(0.9)),
                         jax.random.key(e))
print(jax.device_count(), *to_local(state[0])["w"])
"""


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_data_parallel_epoch_equals_single_device(optimizer):
    """Same seed and global batch: 4 devices give the 1-device parameters (float64)."""
    runs = [_python(_LINEAR, "1", optimizer, devices=d) for d in (1, 4)]
    one, four = (np.array(_finish(p).split(), float) for p in runs)
    assert one[0] == 1 and four[0] == 4
    np.testing.assert_allclose(four[1:], one[1:], rtol=1e-10, atol=1e-14)


def test_sharded_data_needs_one_shard_per_device():
    code = _LINEAR.replace("n_shards = int(sys.argv[1])", "n_shards = 3")
    out, _ = _python(code, "1", "sgd", devices=2).communicate(timeout=120)
    assert "data shards must be 1 or the device count 2" in out


def _train_args(events: Path, out: Path, *extra: str) -> list[str]:
    return [
        "-q",
        "train",
        "--events",
        str(events),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--chunk-rows",
        "5000",
        *extra,
    ]


def test_rate_network_on_four_devices_matches_one(small_market, tmp_path):
    """The real network: same model on 1 and 4 devices up to float32 rounding."""
    events = small_market / "events.csv"
    runs = [
        _python(CLI, *_train_args(events, tmp_path / f"d{d}"), devices=d)
        for d in (1, 4)
    ]
    for proc in runs:
        _finish(proc)
    for a, b in zip(_params(tmp_path / "d1"), _params(tmp_path / "d4"), strict=True):
        np.testing.assert_allclose(b, a, atol=2e-3, rtol=0)
    history = [
        json.loads((tmp_path / f"d{d}" / "metrics.json").read_text())["rates"]
        for d in (1, 4)
    ]
    assert history[1]["devices"] == 4
    np.testing.assert_allclose(
        [h["valid_loss"] for h in history[1]["history"]],
        [h["valid_loss"] for h in history[0]["history"]],
        rtol=1e-4,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_agree_with_one(small_market, tmp_path):
    """jax.distributed on localhost: 2 processes, each reading its own chunks, write
    the model one process with 2 devices and --shard-data writes."""
    events = small_market / "events.csv"
    port = _free_port()
    procs = [
        _python(
            CLI,
            *_train_args(
                events,
                tmp_path / "multi",
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ),
        )
        for i in range(2)
    ]
    single = _python(
        CLI, *_train_args(events, tmp_path / "single", "--shard-data"), devices=2
    )
    for proc in [*procs, single]:
        _finish(proc)
    for a, b in zip(
        _params(tmp_path / "single"), _params(tmp_path / "multi"), strict=True
    ):
        np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)
    markets = [
        json.loads((tmp_path / name / "market.json").read_text())["params"]
        for name in ("single", "multi")
    ]
    for key, value in markets[0].items():
        np.testing.assert_allclose(markets[1][key], value, rtol=1e-4, atol=1e-9)
    model = json.loads((tmp_path / "multi" / "model.json").read_text())
    assert model["processes"] == 2 and model["data_shards"] == 2


def test_streamed_chunks_give_the_same_model(trained, tmp_path):
    """Reading the log 5,000 rows at a time gives the model of reading it whole
    (numeric means and deviations summed chunk by chunk may differ in the last bit)."""
    out = tmp_path / "chunked"
    args = _train_args(trained["market"] / "events.csv", out)
    args[args.index("--epochs") + 1] = "4"
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    features = [
        json.loads((m / "rates" / "features.json").read_text())
        for m in (out, trained["model"])
    ]
    assert features[0]["vocab"] == features[1]["vocab"]
    for col, stats in features[1]["numeric"].items():
        assert features[0]["numeric"][col] == pytest.approx(stats, rel=1e-12)
    for a, b in zip(_params(out), _params(trained["model"]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    markets = [
        json.loads((m / "market.json").read_text())["params"]
        for m in (out, trained["model"])
    ]
    for key, value in markets[1].items():
        np.testing.assert_allclose(markets[0][key], value, rtol=1e-6, atol=1e-12)


def test_folder_of_files_trains_on_all_rows(small_market, tmp_path):
    events = pd.read_csv(small_market / "events.csv")
    folder = tmp_path / "log"
    folder.mkdir()
    half = len(events) // 2
    events.iloc[:half].to_csv(folder / "part-0.csv", index=False)
    events.iloc[half:].to_parquet(folder / "part-1.parquet", index=False)
    result = CliRunner().invoke(main, _train_args(folder, tmp_path / "model"))
    assert result.exit_code == 0, result.output
    model = json.loads((tmp_path / "model" / "model.json").read_text())
    assert model["rows"] == len(events)


def test_error_in_a_later_chunk_names_the_file_row(small_market, tmp_path):
    events = pd.read_csv(small_market / "events.csv")
    events.loc[12_344, "bid"] = -1.0  # data row 12,345
    path = tmp_path / "events.csv"
    events.to_csv(path, index=False)
    args = _train_args(path, tmp_path / "model", "--bad-rows", "fail")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert str(path) in result.output and "'bid'" in result.output
    assert "first at data row 12345" in result.output
    assert not (tmp_path / "model").exists()


def test_incomplete_multi_process_settings_are_a_clear_error(small_market, tmp_path):
    args = _train_args(
        small_market / "events.csv", tmp_path / "m", "--coordinator", "localhost:1"
    )
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "--num-processes N and --process-id I" in result.output


def test_plan_whatif_frontier_on_four_devices_match_one(trained, tmp_path):
    """--devices 4 (emulated) writes the same plan, comparison and frontier."""
    model, market = trained["model"], trained["market"]
    base = ["--model", str(model), "--audiences", str(market / "audiences.csv")]

    def commands(devices: int, out: Path) -> list[list[str]]:
        flag = ["--devices", str(devices)]
        return [
            [
                "-q",
                "plan",
                *base,
                "--budget",
                "300",
                "--days",
                "7",
                "--out",
                str(out / "plan"),
                "--flat-bids",  # the sharding of the solves, not the rule fit
                *flag,
            ],
            [
                "-q",
                "whatif",
                *base,
                "--budget",
                "300",
                "--days",
                "7",
                "--scenario",
                str(ROOT / "simulations/scenarios/budget_plus_20.toml"),
                "--scenario",
                str(ROOT / "simulations/scenarios/prices_plus_15.toml"),
                "--scenario",
                str(ROOT / "simulations/scenarios/budget_minus_20.toml"),
                "--out",
                str(out / "whatif"),
                *flag,
            ],
            [
                "-q",
                "frontier",
                *base,
                "--budgets",
                "100:600:7",
                "--days",
                "7",
                "--out",
                str(out / "frontier"),
                *flag,
            ],
        ]

    script = "\n".join(
        f"main({args!r}, standalone_mode=False)"
        for args in commands(4, tmp_path / "four")
    )
    code = "from optimizer.cli import main\n" + script
    proc = _python(code, devices=4)
    try:
        for args in commands(1, tmp_path / "one"):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, result.output
    finally:
        _finish(proc)
    for name in ("plan/plan.csv", "whatif/comparison.csv", "frontier/frontier.csv"):
        one = pd.read_csv(tmp_path / "one" / name)
        four = pd.read_csv(tmp_path / "four" / name)
        pd.testing.assert_frame_equal(four, one, rtol=1e-9, atol=0.01)


def test_more_devices_than_the_machine_has_is_a_clear_error(trained, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "plan",
            "--model",
            str(trained["model"]),
            "--budget",
            "300",
            "--days",
            "7",
            "--devices",
            "64",
            "--out",
            str(tmp_path / "p"),
        ],
    )
    assert result.exit_code == 1
    assert "--devices 64: this machine has" in result.output
