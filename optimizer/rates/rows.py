"""The rate network's training data, prepared from won auctions in chunks.

Passes over the chunks (each chunk is read again from disk when it was spilled
there, so host memory does not grow with the log):

1. the time span, then the validation cutoff (the last ``validation_days``);
2. vocabulary counts, numeric moments and label totals of the training rows,
   the validation rows (kept), and a random subset of training rows for the
   baselines;
3. the encoded training rows, written into arrays that are memory-mapped files
   when they are big (about 40 bytes per row).

With several processes, every statistic is combined across them, so all agree
on the split, the vocabulary and the label totals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer import distributed
from optimizer.errors import InputError
from optimizer.features import (
    FeatureCounts,
    FeatureSpec,
    count_features,
    encode,
    merge_counts,
    spec_from_counts,
)
from optimizer.io.atomic import scratch_dir
from optimizer.log.chunks import WonChunks, utc_ns
from optimizer.rates.data_parallel import Rows, release

HEADS = ("click", "conversion")
# Validation split used when the log is too short for ``validation_days``.
FALLBACK_VALIDATION_SHARE = 0.2
# The baselines are fitted on at most this many training rows.
BASELINE_ROWS = 1_000_000
# Encoded rows bigger than this go to memory-mapped files instead of RAM.
IN_MEMORY_BYTES = 256 << 20
_DAY_NS = 86400e9


def _span(chunks: WonChunks) -> tuple[int, int, int]:
    """(first, last, rows) over every process: UTC ns of the oldest and newest row."""
    local = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).min, 0])
    for stamps in chunks.stamps():
        if len(stamps):
            local[0] = max(local[0], -stamps.min())
            local[1] = max(local[1], stamps.max())
            local[2] += len(stamps)
    parts = distributed.allgather_array(local.reshape(1, -1))
    merged = np.concatenate(parts)
    return int(-merged[:, 0].max()), int(merged[:, 1].max()), int(merged[:, 2].sum())


def validation_cutoff(chunks: WonChunks, validation_days: float) -> int:
    """Rows stamped after the returned time (UTC ns) are validation rows.

    The cutoff is ``validation_days`` before the latest row of the log (all
    processes). When that leaves no training or no validation rows, the last 20%
    of rows in time order are used instead, with a warning (one process only).
    """
    first, last, rows = _span(chunks)
    cutoff = int(last - int(validation_days * _DAY_NS))
    valid = sum(int((p > cutoff).sum()) for p in chunks.stamps())
    valid = int(distributed.combine(np.array(valid), sum))
    if 0 < valid < rows:
        return cutoff
    span = (last - first) / _DAY_NS
    if distributed.process_count() > 1:
        raise InputError(
            f"the log spans {span:.2f} days, too short for a {validation_days}-day "
            "validation split; pass a smaller --validation-days."
        )
    warnings.warn(
        f"the log spans {span:.2f} days, too short for a {validation_days}-day "
        "validation split; validating on the last 20% of won auctions instead.",
        stacklevel=3,
    )
    stamps = np.sort(np.concatenate(list(chunks.stamps())))
    return int(stamps[int(len(stamps) * (1 - FALLBACK_VALIDATION_SHARE))] - 1)


def labels_of(events: pd.DataFrame) -> np.ndarray:
    """(n, 2) float32 labels: click, conversion per won impression."""
    return events[["click", "conversion"]].to_numpy(np.float32)


def _check_totals(totals: np.ndarray, what: str) -> None:
    """Raise InputError when a head has no positive or no negative example.

    No conversions at all is allowed (a new campaign): the conversion head then
    falls back to a post-click prior (see :mod:`optimizer.rates.train`).
    """
    for j, head in enumerate(HEADS):
        positives = int(totals[1 + j])
        if (positives == 0 and head == "click") or positives == totals[0]:
            raise InputError(
                f"the {what} won auctions have {positives} {head}(s) out of "
                f"{int(totals[0])}: a {head} rate needs both outcomes. Use a longer log."
            )


def _global_spec(counts: list[FeatureCounts], min_count: int) -> FeatureSpec:
    """Feature spec from the training rows of every process."""
    local = merge_counts(counts)
    parts = [
        FeatureCounts(**json.loads(blob))
        for blob in distributed.allgather_bytes(
            json.dumps(dataclasses.asdict(local)).encode()
        )
    ]
    return spec_from_counts(merge_counts(parts), min_count=min_count)


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """Everything training needs, for this process's rows.

    Attributes:
        spec: vocabularies and normalization (the same on every process).
        rows: encoded training rows: codes (n, F) int32, numeric (n, N) float32,
            labels (n, 2) float32, possibly memory-mapped; and their data shards.
        totals: [rows, clicks, conversions] of the training rows, all processes.
        won: won auctions, all processes.
        valid: this process's validation rows.
        baseline_train: a random subset (at most a million rows) of this
            process's training rows, for the baselines.
    """

    spec: FeatureSpec
    rows: Rows
    totals: np.ndarray
    won: int
    valid: pd.DataFrame
    baseline_train: pd.DataFrame


def _allocate(folder: Path, name: str, shape: tuple, dtype) -> np.ndarray:
    """Zeroed array in RAM, or a memory-mapped .npy file in ``folder`` when big."""
    if np.prod(shape) * np.dtype(dtype).itemsize * 3 <= IN_MEMORY_BYTES:
        return np.zeros(shape, dtype)
    return np.lib.format.open_memmap(folder / f"{name}.npy", "w+", dtype, shape)


def prepare(
    chunks: WonChunks,
    *,
    validation_days: float,
    min_count: int,
    seed: int,
    workdir: Path,
) -> TrainingData:
    """Split, count, encode (see the module docstring); big arrays go to ``workdir``.

    Raises:
        InputError: too few won auctions, clicks or conversions to train.
    """
    n_won = _span(chunks)[2]
    if n_won < 2:
        raise InputError(
            f"the event log has {n_won} won auction(s); training needs won impressions."
        )
    cutoff = validation_cutoff(chunks, validation_days)
    counts, valid = [], []
    baseline, baseline_keys = None, np.zeros(0)
    local = np.zeros(3)
    rng = np.random.default_rng([seed, 7])
    for frame, _ in chunks:
        in_valid = utc_ns(frame["timestamp"]) > cutoff
        train = frame.loc[~in_valid]
        valid.append(frame.loc[in_valid])
        counts.append(count_features(train))
        local += [len(train), *labels_of(train).sum(axis=0)]
        # the BASELINE_ROWS training rows with the smallest random keys so far
        keys = np.concatenate([baseline_keys, rng.random(len(train))])
        pool = train if baseline is None else pd.concat([baseline, train])
        keep = np.sort(np.argsort(keys, kind="stable")[:BASELINE_ROWS])
        baseline, baseline_keys = pool.iloc[keep], keys[keep]
    totals = distributed.combine(local, sum)
    _check_totals(totals, "training")
    spec = _global_spec(counts, min_count)

    n = int(local[0])
    fields, n_numeric = len(spec.field_sizes), len(spec.numeric)
    codes = _allocate(workdir, "codes", (n, fields), np.int32)
    numeric = _allocate(workdir, "numeric", (n, n_numeric), np.float32)
    labels = _allocate(workdir, "labels", (n, 2), np.float32)
    shard = np.zeros(n, np.int32)
    at = 0
    for frame, part_shard in chunks:
        in_valid = utc_ns(frame["timestamp"]) > cutoff
        batch = encode(spec, frame.loc[~in_valid])
        k = len(batch)
        codes[at : at + k], numeric[at : at + k] = batch.codes, batch.numeric
        labels[at : at + k] = labels_of(frame.loc[~in_valid])
        shard[at : at + k] = part_shard[~in_valid]
        at += k
    for array in (codes, numeric, labels):
        if isinstance(array, np.memmap):  # written pages need not stay resident
            array.flush()
            release(array)
    return TrainingData(
        spec=spec,
        rows=Rows((codes, numeric, labels), shard),
        totals=totals,
        won=n_won,
        valid=pd.concat(valid, ignore_index=True),
        baseline_train=baseline,
    )


def workdir() -> contextlib.AbstractContextManager[Path]:
    """Scratch folder for memory-mapped rows (under $TMPDIR), removed on exit;
    those of dead runs are removed at the next start."""
    return scratch_dir("adplan-train")
