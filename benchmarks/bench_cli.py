"""CLI benchmark: whole-process wall time of adplan commands, with and without the
persistent compilation cache.

On a demo-size market (``make demo``'s: 24 audiences, 14 days, seed 0; 7 days with
``ADPLAN_BENCH_QUICK=1``), trained once by ``adplan train``:

* ``plan`` (budget 4000 over 14 days), ``whatif`` (the plan against 3 scenarios of
  ``simulations/scenarios/``) and ``frontier`` (30 budgets from 1000 to 8000), each
  run as its own process three ways: ``no_cache`` (``ADPLAN_NO_CACHE=1``),
  ``first`` (an empty cache folder: the first call after install) and ``second``
  (the same folder again: every later call);
* ``train``'s share of wall time spent in XLA compilation (empty cache folder).

Every process reports its XLA compilations (count and seconds, from
``jax.monitoring``). Ratios printed: ``first / no_cache``, ``second / no_cache``,
and whatif and frontier over plan (each with a warm cache). Writes
``benchmarks/results/cli.json``. Run: ``python -m benchmarks.run cli``.
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
RESULTS = ROOT / "benchmarks" / "results" / "cli.json"
SCENARIOS = sorted((ROOT / "simulations" / "scenarios").glob("*.toml"))[:3]

# Runs the CLI in this process with a listener counting XLA compilations; prints
# one JSON line {"compiles", "compile_seconds"} to stderr at exit.
_COUNTING_CLI = """
import json, sys
from jax import monitoring
seen = {"compiles": 0, "compile_seconds": 0.0}
def listen(event, seconds, **_):
    if event == "/jax/core/compile/backend_compile_duration":
        seen["compiles"] += 1
        seen["compile_seconds"] += seconds
monitoring.register_event_duration_secs_listener(listen)
from optimizer.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print("BENCH " + json.dumps(seen), file=sys.stderr)
"""


def _adplan(args: list[str], cache: Path | None) -> dict:
    """One ``adplan`` process: wall seconds (start to exit) and its compilations."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ADPLAN_NO_CACHE", None)
    if cache is None:
        env["ADPLAN_NO_CACHE"] = "1"
    else:
        env["ADPLAN_CACHE_DIR"] = str(cache)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _COUNTING_CLI, "-q", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"adplan {' '.join(args)} failed:\n{done.stderr}")
    line = [x for x in done.stderr.splitlines() if x.startswith("BENCH ")][-1]
    return {"seconds": seconds, **json.loads(line[len("BENCH ") :])}


def _commands(work: Path) -> dict[str, list[str]]:
    model, market = str(work / "model"), work / "market"
    audiences = ["--audiences", str(market / "audiences.csv")]
    scenarios = [a for s in SCENARIOS for a in ("--scenario", str(s))]
    plan = ["--budget", "4000", "--days", "14", *audiences]
    frontier = ["--budgets", "1000:8000:30", "--days", "14", *audiences]
    whatif = ["--plan", str(work / "plan"), *scenarios]
    return {
        name: [name, "--model", model, *extra, "--out", str(work / name)]
        for name, extra in (("plan", plan), ("whatif", whatif), ("frontier", frontier))
    }


def main(quick: bool = False) -> list[dict]:
    """Run the benchmark; print the table and ratios; write ``RESULTS``."""
    days = "7" if quick else "14"
    rows = []
    with tempfile.TemporaryDirectory(prefix="adplan-bench-cli-") as tmp:
        work = Path(tmp)
        market = work / "market"
        generate = ["generate", "--out", str(market), "--audiences", "24"]
        _adplan([*generate, "--days", days, "--seed", "0"], None)
        train = ["train", "--events", str(market / "events.csv")]
        row = _adplan(
            [*train, "--out", str(work / "model"), "--seed", "0"], work / "c0"
        )
        rows.append({"command": "train", "run": "first", **row})
        print(
            f"train: {row['seconds']:.1f} s, {row['compiles']} compilations, "
            f"{row['compile_seconds']:.1f} s compiling "
            f"({row['compile_seconds'] / row['seconds']:.0%} of wall time)",
            flush=True,
        )
        commands = _commands(work)
        for i, (name, args) in enumerate(commands.items(), start=1):
            cache = work / f"c{i}"
            for run, folder in (
                ("no_cache", None),
                ("first", cache),
                ("second", cache),
            ):
                row = {"command": name, "run": run, **_adplan(args, folder)}
                rows.append(row)
                print(
                    f"{name:9s} {run:9s} {row['seconds']:6.1f} s  "
                    f"{row['compiles']:4d} compilations  "
                    f"{row['compile_seconds']:6.1f} s compiling",
                    flush=True,
                )
    seconds = {(r["command"], r["run"]): r["seconds"] for r in rows}
    ratios = {}
    for name in commands:
        base = seconds[(name, "no_cache")]
        ratios[f"{name} first/no_cache"] = seconds[(name, "first")] / base
        ratios[f"{name} second/no_cache"] = seconds[(name, "second")] / base
    for name in ("whatif", "frontier"):
        ratios[f"{name}/plan (warm)"] = (
            seconds[(name, "second")] / seconds[("plan", "second")]
        )
    for key, value in ratios.items():
        print(f"{key:28s} {value:5.2f}x")
    rows.append({"command": "ratio", **ratios})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main(quick=os.environ.get("ADPLAN_BENCH_QUICK", "") not in ("", "0"))
