"""``adplan train``: fit the rate network and the market model into one model folder.

The log is streamed (:mod:`optimizer.log.stream`), the rate network trains
data-parallel over every device of the job (:mod:`optimizer.rates.data_parallel`), and
the market model is fitted on a per-audience sample plus exact totals. With
several processes each reads its own chunks, and process 0 gathers the market
sample and writes the model folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer import distributed
from optimizer.errors import InputError
from optimizer.io.atomic import MIN_FREE_BYTES, check_writable
from optimizer.io.bad_rows import BadRows, enforce
from optimizer.io.files import (
    atomic_dir,
    file_sha256,
    folder_checksums,
    library_versions,
    write_csv,
    write_json,
)
from optimizer.log.stream import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_SAMPLE_PER_AUDIENCE,
    StreamedLog,
    keep_sample,
    stream_log,
)
from optimizer.log.totals import LogTotals, merge_totals
from optimizer.market.fit import fit_market
from optimizer.market.landscape import sharing_row_sizes
from optimizer.market.store import save_market, save_rule_rows
from optimizer.plan.health import model_health
from optimizer.rates import data_parallel
from optimizer.rates import rows as train_rows
from optimizer.rates.train import fit_rate_model_chunks

LOG_SUFFIXES = (".csv", ".parquet", ".pq")


def event_files(path: Path) -> list[Path]:
    """The log's files: ``path`` itself, or the CSV/Parquet files of a folder, by name."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in LOG_SUFFIXES)
        if not files:
            raise InputError(
                f"event log folder {path}: no .csv or .parquet files in it. "
                "Point --events at a log file or a folder of them."
            )
        return files
    if not path.is_file():
        raise InputError(f"event log {path}: file not found. Check the path.")
    return [path]


def _log_sha256(files: list[Path]) -> str:
    """SHA-256 of the log: of the file itself, or of the folder's (name, hash) list."""
    if len(files) == 1:
        return file_sha256(files[0])
    listing = "\n".join(f"{p.name} {file_sha256(p)}" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def _gather_market_inputs(
    log: StreamedLog, per_audience: int
) -> tuple[pd.DataFrame, LogTotals]:
    """Every process's market sample and totals, combined (a no-op in one process)."""
    if distributed.process_count() == 1:
        return log.sample, log.totals
    buffer = io.BytesIO()
    log.sample.to_parquet(buffer, index=False)
    samples = [
        pd.read_parquet(io.BytesIO(blob))
        for blob in distributed.allgather_bytes(buffer.getvalue())
    ]
    totals = [
        LogTotals(**json.loads(blob))
        for blob in distributed.allgather_bytes(
            json.dumps(dataclasses.asdict(log.totals)).encode()
        )
    ]
    sample = keep_sample(pd.concat(samples, ignore_index=True), per_audience)
    return sample.reset_index(drop=True), merge_totals(totals)


def _gather_bad_rows(bad: BadRows) -> BadRows:
    """Every process's bad rows, combined (a no-op in one process)."""
    if distributed.process_count() == 1:
        return bad
    blob = {"counts": bad.counts, "first": bad.first, "fixes": bad.fixes}
    kept = bad.frame().to_csv(index=False)
    out = BadRows()
    for meta, rows in zip(
        distributed.allgather_bytes(json.dumps(blob).encode()),
        distributed.allgather_bytes(kept.encode()),
        strict=True,
    ):
        part = json.loads(meta)
        frame = pd.read_csv(io.BytesIO(rows), dtype=str, keep_default_na=False)
        out.merge(
            BadRows(
                counts=part["counts"],
                first={k: tuple(v) for k, v in part["first"].items()},
                fixes=part["fixes"],
                kept=[frame] if len(frame) else [],
            )
        )
    return out


def train_model(
    events_path: Path,
    model_dir: Path,
    *,
    epochs: int,
    seed: int,
    validation_days: float,
    auction_type: str | None,
    quiet: bool,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    shard_data: bool = False,
    bad_rows: str = "drop",
) -> list[str]:
    """Train both models on the log at ``events_path`` (a file or a folder of files)
    and write ``model_dir``; return summary lines (empty on processes other than 0).

    ``shard_data`` gives each device its own chunks of the log (chunk i to device
    i mod devices) instead of a copy of every row; it is implied by several
    processes, and one process with it reproduces a multi-process run.

    ``bad_rows`` is the policy for rows that break a rule
    (:mod:`optimizer.io.bad_rows`); it is applied after the whole log is read
    and before the first training epoch.
    """
    files = event_files(events_path)
    if distributed.process_index() == 0:
        check_writable(model_dir, folder=True)
    # The encoded rows spill to $TMPDIR: about the log's size, checked before work.
    log_bytes = sum(p.stat().st_size for p in files)
    check_writable(
        Path(tempfile.gettempdir()), folder=True, need_bytes=MIN_FREE_BYTES + log_bytes
    )
    mesh = data_parallel.make_mesh()
    shard_data = shard_data or distributed.process_count() > 1
    n_shards = mesh.size if shard_data else 1
    owned = data_parallel.local_shards(mesh) if shard_data else [0]
    bad = None if bad_rows == "fail" else BadRows()
    with train_rows.workdir() as spill:
        log = stream_log(
            files,
            Path(spill),
            chunk_rows=chunk_rows,
            seed=seed,
            n_shards=n_shards,
            owned=owned,
            progress=not quiet,
            bad=bad,
        )
        if bad is not None:
            bad = _gather_bad_rows(bad)
            n_read = int(distributed.combine(np.array(log.n_events), sum)) + bad.total
            dropped = enforce(bad, n_read, bad_rows, f"event log {events_path}")
            if bad_rows == "report":
                return [
                    f"event log {events_path}: {n_read:,} rows, no bad rows; nothing "
                    "was trained (--bad-rows report)."
                ]
        rates = fit_rate_model_chunks(
            log.won,
            seed=seed,
            epochs=epochs,
            validation_days=validation_days,
            progress=not quiet,
            n_shards=n_shards,
            n_events=log.n_events,
        )
    sample, totals = _gather_market_inputs(log, DEFAULT_SAMPLE_PER_AUDIENCE)
    if distributed.process_index() != 0:
        return []
    preds = rates.predict(sample)
    if not quiet:
        print("Fitting bid landscapes and volumes ...", flush=True)
    market = fit_market(
        sample,
        preds["p_click"],
        preds["p_conversion"],
        auction_type,
        totals=totals,
        progress=not quiet,
    )
    n_events = sum(totals.auctions.values())
    with atomic_dir(model_dir) as tmp:
        if bad is not None and bad.total:
            write_csv(tmp / "bad_rows.csv", bad.frame())
        rates.save(tmp)
        save_market(tmp, market)
        save_rule_rows(tmp, market)
        model_id = hashlib.sha256((tmp / "market.json").read_bytes()).hexdigest()[:12]
        write_json(
            tmp / "metrics.json", {"rates": rates.metrics, "market": market.metrics}
        )
        checksums = folder_checksums(tmp)  # every file but model.json itself
        write_json(
            tmp / "model.json",
            {
                "format": "adplan-model/1",
                "model_id": model_id,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "events_file": str(events_path),
                "events_sha256": _log_sha256(files),
                "rows": n_events,
                "audiences": market.names,
                "auction_type": market.auction_type,
                "seed": seed,
                "epochs": epochs,
                "validation_days": validation_days,
                "chunk_rows": chunk_rows,
                "devices": rates.metrics.get("devices", 1),
                "processes": distributed.process_count(),
                "data_shards": n_shards,
                "bad_rows": {"policy": bad_rows, "dropped": bad.counts if bad else {}},
                "versions": library_versions(),
                "sha256": checksums,
            },
        )
    fits = market.metrics["landscapes"]
    worst = max(fits, key=lambda f: f["max_abs_win_rate_error"])
    conv = rates.metrics.get("heads", {}).get("conversion", {}).get("model", {})
    lines = [
        f"Trained on {n_events:,} auctions, {len(market.names)} audiences ({market.auction_type}).",
        f"  model folder: {model_dir} (model id {model_id})",
        *(dropped if bad is not None else []),
        f"  bid landscapes: {sum(f['family'] == 'mixture' for f in fits)} two-mode, worst win-rate fit off by {worst['max_abs_win_rate_error']:.1%} ('{worst['audience']}')",
    ]
    if conv.get("auc") is not None:
        lines.append(
            f"  conversion model: validation AUC {conv['auc']:.3f}, log-loss {conv['log_loss']:.4f}"
        )
    lines += [f"  warning: {w}" for w in model_health(rates.metrics)]
    return lines


def train_command(events_path: Path, model_dir: Path, *, backtest: bool, **kwargs):
    """``adplan train``: :func:`train_model`, then (unless ``backtest`` is False)
    the held-out check that calibrates the model's P10-P90 band."""
    with sharing_row_sizes():  # the band check's landscape fit reuses the program
        lines = train_model(events_path, model_dir, **kwargs)
        if backtest and lines:
            lines += calibrate_band(
                events_path,
                model_dir,
                kwargs["epochs"],
                kwargs["seed"],
                kwargs["quiet"],
            )
    return lines


def calibrate_band(
    events_path: Path, model_dir: Path, epochs: int, seed: int, quiet: bool
) -> list[str]:
    """Backtest the log (its last quarter of days held out, 2 epochs on the rest)
    and store the band's widening factor in ``model_dir/band.json``."""
    import tempfile

    from optimizer.commands.backtest import backtest, summary_lines

    if not quiet:
        print("Checking the forecast on the log's last days ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="adplan-band-") as tmp:
        try:
            _, summary = backtest(
                events_path,
                Path(tmp) / "model",
                holdout_days=None,
                audiences=None,
                epochs=min(epochs, 2),
                seed=seed,
                runs=60,
                quiet=True,
            )
        except InputError as exc:
            return [f"  band not checked (backtest skipped): {exc}"]
    write_json(Path(model_dir) / "band.json", summary)
    return summary_lines(summary)
