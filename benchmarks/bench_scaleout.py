"""Scale-out benchmark: streamed training of big logs, and training per device count.

* ``streamed``: ``adplan train --events FOLDER`` on logs of 5M and 50M auctions
  (folders of Parquet files of 5M auctions each: one synthetic 24-audience market
  over consecutive periods, a different seed per file), each in its own process;
  wall seconds and peak resident memory (the child's ``ru_maxrss``). Beside it,
  in the same run, the whole-log way: read the 5M log into memory with pandas
  and fit the rate network on it (what training did before streaming).
* ``devices``: ``adplan train`` on a 2M-auction log for a fixed number of epochs
  with the batch sharded over 1, 2 and 4 devices (CPU devices emulated with
  ``XLA_FLAGS=--xla_force_host_platform_device_count``; on a CPU the emulated
  devices share the same cores, so this shows the cost of the collectives, not a
  speed-up). Won auctions trained per second, from the epoch times after the
  first (which compiles).

Writes ``benchmarks/results/scaleout.json``. Run:
``python benchmarks/bench_scaleout.py [--quick]`` (quick: 5M streamed only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scaleout.json"
FILE_ROWS = 5_000_000
STREAM_SIZES = (5_000_000, 50_000_000)
DEVICE_ROWS = 2_000_000
DEVICE_COUNTS = (1, 2, 4)
DEVICE_EPOCHS = 3
CLI = "from optimizer.cli import main; main()"


def write_log(folder: Path, rows: int, file_rows: int = FILE_ROWS) -> None:
    """Parquet files of ``file_rows`` auctions of one market, consecutive periods."""
    import numpy as np
    import pandas as pd

    from simulations.synthetic.generate import generate_events, make_truth

    folder.mkdir(parents=True, exist_ok=True)
    per_day = sum(a["volume_per_day"] for a in make_truth(24, 1, 0)["audiences"])
    days = int(np.ceil(1.02 * file_rows / per_day)) + 1
    truth = make_truth(24, days, 0)
    start = pd.Timestamp(truth["start"])
    for k in range(int(np.ceil(rows / file_rows))):
        period = dict(truth, start=(start + pd.Timedelta(days=k * days)).isoformat())
        n = min(file_rows, rows - k * file_rows)
        events = generate_events(period, seed=k).head(n)
        events.to_parquet(folder / f"part-{k:03d}.parquet", index=False)


def _timed(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak resident MiB of that process)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[:6]} failed: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def _train(folder: Path, out: Path, *extra: str, env=None) -> tuple[float, float]:
    return _timed(
        [
            sys.executable,
            "-c",
            CLI,
            "-q",
            "train",
            "--events",
            str(folder),
            "--out",
            str(out),
            *extra,
        ],
        env,
    )


_WHOLE = """
import sys, pandas as pd, jax
jax.config.update("jax_enable_x64", True)
from optimizer.rates.train import fit_rate_model
from optimizer.io.schema import validate_event_log
events = validate_event_log(pd.concat(
    [pd.read_parquet(p) for p in sorted(__import__("pathlib").Path(sys.argv[1]).glob("*.parquet"))],
    ignore_index=True))
fit_rate_model(events, seed=0, epochs=int(sys.argv[2]), progress=False)
"""


def streamed(tmp: Path, sizes: tuple[int, ...], epochs: int) -> list[dict]:
    """Streamed ``adplan train`` per log size, and the whole-log way where it fits."""
    rows_out = []
    for rows in sizes:
        folder = tmp / f"log_{rows}"
        write_log(folder, rows)
        seconds, peak = _train(folder, tmp / "model", "--epochs", str(epochs))
        rows_out.append(_row("streamed", rows, seconds, peak, epochs))
        print(_format(rows_out[-1]), flush=True)
        if rows <= FILE_ROWS:  # the whole log must fit in memory
            seconds, peak = _timed(
                [sys.executable, "-c", _WHOLE, str(folder), str(epochs)]
            )
            rows_out.append(_row("whole_log_in_memory", rows, seconds, peak, epochs))
            print(_format(rows_out[-1]), flush=True)
    return rows_out


def devices(tmp: Path) -> list[dict]:
    """Training throughput with the batch sharded over 1, 2 and 4 devices."""
    folder = tmp / "log_devices"
    write_log(folder, DEVICE_ROWS, DEVICE_ROWS)
    out = []
    for count in DEVICE_COUNTS:
        env = {
            **os.environ,
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}",
        }
        model = tmp / f"model_{count}"
        seconds, peak = _train(
            folder,
            model,
            "--epochs",
            str(DEVICE_EPOCHS),
            "--validation-days",
            "1",
            env=env,
        )
        metrics = json.loads((model / "metrics.json").read_text())["rates"]
        later = [h["seconds"] for h in metrics["history"][1:]]
        won = metrics["rows"]["train"]
        row = _row(f"train_{count}dev", DEVICE_ROWS, seconds, peak, DEVICE_EPOCHS)
        row["devices"] = metrics["devices"]
        row["epoch_seconds"] = round(sum(later) / len(later), 3)
        row["won_rows_per_second"] = round(won / row["epoch_seconds"])
        out.append(row)
        print(_format(row), flush=True)
    base = out[0]["won_rows_per_second"]
    for row in out:
        row["speedup_vs_1_device"] = round(row["won_rows_per_second"] / base, 2)
    return out


def _row(method: str, rows: int, seconds: float, peak: float, epochs: int) -> dict:
    return {
        "rows": rows,
        "method": method,
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "rows_per_second": round(rows / seconds),
        "peak_mb": round(peak, 1),
    }


def _format(row: dict) -> str:
    extra = (
        f"  {row['won_rows_per_second']:>9,} won rows/s per epoch"
        if "won_rows_per_second" in row
        else ""
    )
    return (
        f"{row['rows']:>11,} auctions  {row['method']:<22} {row['seconds']:8.1f} s "
        f"(whole process)  peak {row['peak_mb']:8.0f} MB{extra}"
    )


def main(quick: bool = False) -> list[dict]:
    """Run both parts; print a table, write the JSON."""
    import jax

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        sizes = STREAM_SIZES[:1] if quick else STREAM_SIZES
        results += streamed(Path(tmp), sizes, epochs=2)
        results += devices(Path(tmp))
    meta = {"platform": jax.default_backend(), "cpus": os.cpu_count()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"machine": meta, "rows": results}, indent=2) + "\n",
        encoding="utf-8",
    )
    return results


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
