"""Read an event log in chunks: validate each one, keep only what training needs.

``adplan train`` never holds the raw log. CSV files are read ``chunk_rows`` rows
at a time and Parquet files in record batches of that size; each chunk is
validated like a whole log (row numbers in messages count from the top of the
file) and reduced to

* its won auctions, written to a Parquet file in a scratch folder (text columns
  as categories), for the rate network, which reads them back chunk by chunk;
* a uniform random sample of each audience's auctions, at most
  ``sample_per_audience`` (chosen by a seeded per-row priority, so the sample does
  not depend on the chunk size or on which process read the chunk), for the bid
  landscapes and quality strata;
* exact :class:`~optimizer.log.totals.LogTotals` for volumes, hour profiles,
  observed outcomes and value.

Memory is one raw chunk plus the sample, whatever the length of the log. With
several data shards, chunk i (counted over all files in order) belongs to shard
``i mod n_shards`` and a process keeps only the chunks of its own shards.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputError
from optimizer.io.bad_rows import BadRows
from optimizer.io.csv_format import read_csv_kwargs
from optimizer.io.schema import feature_columns, validate_event_log
from optimizer.log.chunks import WonChunks
from optimizer.log.totals import LogTotals, log_totals, merge_totals

DEFAULT_CHUNK_ROWS = 1_000_000
# Auctions per audience kept for the market fit: the landscape fit itself uses at
# most max(3000, 300k / audiences) of them, the quality strata all of them.
DEFAULT_SAMPLE_PER_AUDIENCE = 50_000
_WON_COLUMNS = ("timestamp", "audience", "won", "click", "conversion")
PRIORITY = "_priority"


@dataclasses.dataclass(frozen=True)
class StreamedLog:
    """What one process kept of the log.

    Attributes:
        won: won auctions (timestamp, audience, won, click, conversion and the
            feature columns), one spilled Parquet file per chunk, in file order,
            each with its shard (index into the caller's ``owned``).
        sample: per-audience sample of all auctions (validated columns plus the
            ``_priority`` that chose them).
        totals: exact totals of the chunks read.
        n_events: auctions in the chunks read.
    """

    won: WonChunks
    sample: pd.DataFrame
    totals: LogTotals
    n_events: int


def _priority(seed: int, file_index: int, rows: np.ndarray) -> np.ndarray:
    """(n,) uniform [0, 1) per row from a splitmix64 hash of (seed, file, row)."""
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) + np.uint64(file_index << 40)
        z = z ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _raw_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Unvalidated chunks of ``chunk_rows`` rows of one CSV or Parquet file."""
    if not path.is_file():
        raise InputError(f"event log {path}: file not found. Check the path.")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        if parquet:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        else:
            yield from pd.read_csv(path, chunksize=chunk_rows, **read_csv_kwargs(path))
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(
            f"event log {path}: could not be read as {'Parquet' if parquet else 'CSV'} "
            f"({exc}). Save it as UTF-8 CSV with a header row, or as Parquet."
        ) from exc


def _conform(chunk: pd.DataFrame, kinds: dict[str, str], path: Path) -> pd.DataFrame:
    """Give a later chunk the first chunk's feature columns and kinds."""
    categorical, numeric = feature_columns(chunk)
    seen = (set(categorical) - {"audience"}) | set(numeric)
    if seen != set(kinds):
        raise InputError(
            f"{path}: feature columns {sorted(seen)} differ from the first chunk's "
            f"{sorted(kinds)}. Give every file of the log the same columns."
        )
    for col, kind in kinds.items():
        if kind == "number" and col in categorical:
            chunk[col] = pd.to_numeric(chunk[col], errors="coerce")
        elif kind == "text" and col in numeric:
            chunk[col] = chunk[col].astype(str)
    return chunk


def keep_sample(sample: pd.DataFrame, per_audience: int) -> pd.DataFrame:
    """The ``per_audience`` lowest-priority rows of each audience."""
    sample = sample.sort_values(PRIORITY, kind="stable")
    return sample[sample.groupby("audience").cumcount() < per_audience]


def stream_log(
    paths: Sequence[Path],
    spill_dir: Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    sample_per_audience: int = DEFAULT_SAMPLE_PER_AUDIENCE,
    seed: int = 0,
    n_shards: int = 1,
    owned: Sequence[int] = (0,),
    progress: bool = True,
    bad: BadRows | None = None,
) -> StreamedLog:
    """Read the log files in order, keeping the chunks of the ``owned`` shards;
    won auctions are spilled to Parquet files in ``spill_dir``.

    With ``bad``, rows breaking a row rule are recorded there (with their data
    row in the file) and left out; without it the first one raises.

    Raises:
        InputError: unreadable file, invalid rows (file, column, row and fix
            named), or files with different feature columns.
    """
    if chunk_rows < 1:
        raise InputError(f"--chunk-rows must be >= 1, got {chunk_rows}.")
    won_parts, shard_parts, totals = [], [], []
    spill_dir = Path(spill_dir)
    spill_dir.mkdir(parents=True, exist_ok=True)
    sample = None
    kinds: dict[str, str] | None = None
    chunk_index, n_events = 0, 0
    for file_index, path in enumerate(Path(p) for p in paths):
        offset = 0
        for raw in _raw_chunks(path, chunk_rows):
            shard = chunk_index % n_shards
            chunk_index, start, offset = chunk_index + 1, offset, offset + len(raw)
            if shard not in owned:
                continue
            raw.columns = [str(c).strip() for c in raw.columns]
            raw.index = pd.RangeIndex(start, offset)
            chunk = validate_event_log(raw, path, row_offset=start, bad=bad)
            if kinds is None:
                categorical, numeric = feature_columns(chunk)
                kinds = {c: "text" for c in categorical if c != "audience"}
                kinds |= {c: "number" for c in numeric}
            chunk = _conform(chunk, kinds, path)
            n_events += len(chunk)
            totals.append(log_totals(chunk))
            chunk[PRIORITY] = _priority(seed, file_index, chunk.index.to_numpy())
            candidates = chunk if sample is None else pd.concat([sample, chunk])
            sample = keep_sample(candidates, sample_per_audience)
            won = chunk.loc[
                chunk["won"].to_numpy() == 1,
                [*_WON_COLUMNS, *kinds],
            ]
            text = ["audience", *(c for c, k in kinds.items() if k == "text")]
            spill = spill_dir / f"won-{chunk_index:06d}.parquet"
            won.astype({c: "category" for c in text}).to_parquet(spill, index=False)
            won_parts.append(spill)
            shard_parts.append(list(owned).index(shard))
            if progress:
                print(
                    f"  read {n_events:,} auctions ({path.name})",
                    file=sys.stderr,
                    flush=True,
                )
    if sample is None:
        raise InputError(
            f"event log {', '.join(str(p) for p in paths)}: no rows to read"
            + (
                f" for data shard(s) {list(owned)}: the log has only {chunk_index} "
                f"chunk(s) of {chunk_rows:,} rows for {n_shards} shards. Use a smaller "
                "--chunk-rows or fewer processes."
                if n_shards > 1
                else ". Export at least a few days of auctions."
            )
        )
    return StreamedLog(
        won=WonChunks(won_parts, shard_parts),
        sample=sample.reset_index(drop=True),
        totals=merge_totals(totals),
        n_events=n_events,
    )
