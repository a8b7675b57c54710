"""Training benchmark: the rate network against scikit-learn on synthetic logs.

For each size, a synthetic event log of that many auctions is generated once and
written to Parquet; then every method runs in its own subprocess, so its peak
resident memory (``ru_maxrss``) is its own, including reading the log:

* ``rate_network_train``: ``fit_rate_model`` to early stopping (with its
  baselines and calibration);
* ``rate_network_predict``: ``load_rate_model`` + ``predict`` on every row;
* ``sklearn_logistic_regression``: one-hot features of the won auctions, one
  ``LogisticRegression`` per head (click, conversion).

Writes ``benchmarks/results/training.json``: rows ``{"rows", "method", "seconds",
"rows_per_second", "peak_mb"}`` (rows = auctions in the log; training uses the
won ones). Run: ``python benchmarks/bench_training.py [sizes ...]``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "training.json"
METHODS = ("rate_network_train", "rate_network_predict", "sklearn_logistic_regression")


def write_log(rows: int, path: Path, seed: int = 0) -> None:
    """Generate a 24-audience synthetic log with ``rows`` auctions into Parquet.

    The market's length in days is chosen to produce at least ``rows`` auctions;
    the first ``rows`` in time order are kept.
    """
    import numpy as np

    from optimizer.io.schema import validate_event_log
    from simulations.synthetic.generate import generate_events, make_truth

    per_day = sum(a["volume_per_day"] for a in make_truth(24, 1, seed)["audiences"])
    days = int(np.ceil(1.05 * rows / per_day)) + 1
    events = generate_events(make_truth(24, days, seed), seed).head(rows)
    validate_event_log(events).to_parquet(path, index=False)


def _peak_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(method: str, log: Path, model_dir: Path) -> dict:
    """Run one method in this (fresh) process; returns seconds and peak memory."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import pandas as pd

    events = pd.read_parquet(log)
    start = time.perf_counter()
    if method == "rate_network_train":
        from optimizer.rates.train import fit_rate_model

        model = fit_rate_model(events, seed=0, progress=False)
        seconds = time.perf_counter() - start
        model.save(model_dir)
        extra = {k: model.metrics[k] for k in ("epochs_run", "best_epoch")}
    elif method == "rate_network_predict":
        from optimizer.rates.store import load_rate_model

        load_rate_model(model_dir).predict(events)
        seconds, extra = time.perf_counter() - start, {}
    else:
        seconds, extra = _sklearn(events), {}
    return {"seconds": seconds, "peak_mb": _peak_mb(), **extra}


def _sklearn(events) -> float:
    """Seconds to one-hot encode the won auctions and fit one LR per head."""
    from sklearn.linear_model import LogisticRegression

    from optimizer.features import encode, fit_features
    from optimizer.rates.evaluate import _one_hot

    start = time.perf_counter()
    won = events.loc[events["won"] == 1]
    spec = fit_features(won)
    design = _one_hot(spec, encode(spec, won))
    for col in ("click", "conversion"):
        LogisticRegression(max_iter=500, tol=1e-6).fit(design, won[col].to_numpy())
    return time.perf_counter() - start


def _run(method: str, log: Path, model_dir: Path) -> dict:
    """Run ``method`` in a subprocess and parse its JSON line."""
    done = subprocess.run(
        [sys.executable, __file__, "--worker", method, str(log), str(model_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(sizes: tuple[int, ...] = (1_000_000, 5_000_000)) -> list[dict]:
    """Benchmark every method at every size; print a table, write the JSON."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            log, model_dir = Path(tmp) / f"events_{rows}.parquet", Path(tmp) / "model"
            write_log(rows, log)
            for method in METHODS:
                out = _run(method, log, model_dir)
                row = {
                    "rows": rows,
                    "method": method,
                    "seconds": round(out["seconds"], 3),
                    "rows_per_second": round(rows / out["seconds"]),
                    "peak_mb": round(out["peak_mb"], 1),
                }
                if "epochs_run" in out:
                    row["epochs_run"] = out["epochs_run"]
                    row["best_epoch"] = out["best_epoch"]
                results.append(row)
                print(_format(row), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def _format(row: dict) -> str:
    epochs = (
        f"  epochs {row['epochs_run']} (best {row['best_epoch']})"
        if "epochs_run" in row
        else ""
    )
    return (
        f"{row['rows']:>10,} rows  {row['method']:<28} {row['seconds']:8.1f} s  "
        f"{row['rows_per_second']:>10,} rows/s  peak {row['peak_mb']:7.0f} MB{epochs}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
    else:
        main(tuple(int(s) for s in sys.argv[1:]) or (1_000_000, 5_000_000))
