"""Benchmark dispatcher: ``python -m benchmarks.run {all|allocator|frontier|...}``.

Each benchmark prints its table and writes ``benchmarks/results/<name>.json``.
``all`` runs allocator, frontier, simulator, training, scaleout, cli and, where
``benchmarks/bench_quality.py`` exists, quality; one that fails is reported and
the rest still run (exit status 1 at the end). Set ``ADPLAN_BENCH_QUICK=1`` to
train on smaller logs (``QUICK_TRAINING_SIZES``) in the training benchmark and
to run the quality, scale-out and CLI benchmarks with ``main(quick=True)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
import traceback
from collections.abc import Callable

import jax

# Before any optimizer module is imported (they are imported lazily below, and
# optimizer.allocate.response builds constants at import): money is float64 everywhere.
jax.config.update("jax_enable_x64", True)

QUICK_TRAINING_SIZES = (200_000,)
ORDER = (
    "allocator",
    "frontier",
    "simulator",
    "training",
    "scaleout",
    "cli",
    "quality",
    "rules",
)
USAGE = (
    f"usage: python -m benchmarks.run {{all|{'|'.join(ORDER)}}} [training sizes ...]"
)


def _quick() -> bool:
    return os.environ.get("ADPLAN_BENCH_QUICK", "") not in ("", "0")


def _allocator(_: list[str]) -> None:
    from benchmarks import bench_allocator

    bench_allocator.main()


def _frontier(_: list[str]) -> None:
    from benchmarks import bench_frontier

    bench_frontier.main()


def _simulator(_: list[str]) -> None:
    from benchmarks import bench_simulator

    bench_simulator.main()


def _training(args: list[str]) -> None:
    from benchmarks import bench_training

    if args:
        bench_training.main(tuple(int(a) for a in args))
    elif _quick():
        print(f"ADPLAN_BENCH_QUICK: training sizes {QUICK_TRAINING_SIZES}")
        bench_training.main(QUICK_TRAINING_SIZES)
    else:
        bench_training.main()


def _scaleout(_: list[str]) -> None:
    from benchmarks import bench_scaleout

    bench_scaleout.main(quick=_quick())


def _cli(_: list[str]) -> None:
    from benchmarks import bench_cli

    bench_cli.main(quick=_quick())


def _quality(_: list[str]) -> None:
    # Written separately; imported only when present so the others run without it.
    if importlib.util.find_spec("benchmarks.bench_quality") is None:
        print("quality: benchmarks/bench_quality.py not found; skipped")
        return
    quality = importlib.import_module("benchmarks.bench_quality")
    if _quick():
        quality.main(quick=True)
    else:
        quality.main()
    from benchmarks import bench_daily  # the daily-report cases (issue 19)

    bench_daily.main(quick=_quick())


def _rules(_: list[str]) -> None:
    from benchmarks import bench_rules

    bench_rules.main()


BENCHMARKS: dict[str, Callable[[list[str]], None]] = {
    "allocator": _allocator,
    "frontier": _frontier,
    "simulator": _simulator,
    "training": _training,
    "scaleout": _scaleout,
    "cli": _cli,
    "quality": _quality,
    "rules": _rules,
}


def run_all() -> int:
    """Every benchmark in ORDER (a bar with ETA on a terminal); returns the number
    that failed."""
    from optimizer.io.progress import progress_bar

    failed = []
    with progress_bar(len(ORDER), "benchmarks", "benchmark") as bar:
        for name in ORDER:
            bar.set_postfix_str(name)
            print(f"\n=== {name} ===", flush=True)
            start = time.perf_counter()
            try:
                BENCHMARKS[name]([])
            except Exception:
                traceback.print_exc()
                failed.append(name)
            print(f"=== {name}: {time.perf_counter() - start:.0f} s ===", flush=True)
            bar.update(1)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return len(failed)


def main(argv: list[str]) -> int:
    """Dispatch on the first argument; extra arguments go to the benchmark."""
    if not argv or argv[0] not in ("all", *BENCHMARKS):
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "all":
        return 1 if run_all() else 0
    BENCHMARKS[argv[0]](argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
