"""Won auctions in chunks, as the log reader hands them to the rate network.

A chunk is a DataFrame in memory or a Parquet file spilled by
:mod:`optimizer.log.stream`; each is read again whenever it is iterated, so host
memory does not grow with the log.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd


class WonChunks:
    """Won auctions in chunks, each a DataFrame in memory or a Parquet file.

    Args:
        parts: DataFrames or Parquet paths, in log order.
        shards: per part, the data shard of its rows: an int for the whole part
            or an (n,) int array.
    """

    def __init__(self, parts: list, shards: list):
        self.parts, self.shards = parts, shards

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        """(frame, (n,) int32 shard) per part."""
        for part, shard in zip(self.parts, self.shards, strict=True):
            frame = part if isinstance(part, pd.DataFrame) else pd.read_parquet(part)
            yield frame, np.broadcast_to(np.asarray(shard, np.int32), len(frame))

    def stamps(self) -> Iterator[np.ndarray]:
        """(n,) int64 UTC nanoseconds of each part's rows."""
        for part in self.parts:
            ts = (
                part["timestamp"]
                if isinstance(part, pd.DataFrame)
                else pd.read_parquet(part, columns=["timestamp"])["timestamp"]
            )
            yield utc_ns(ts)


def utc_ns(timestamps: pd.Series) -> np.ndarray:
    """(n,) int64 UTC nanoseconds of timestamps (naive ones are taken as UTC)."""
    ts = pd.to_datetime(timestamps, utc=True).dt.tz_localize(None)
    return ts.to_numpy().astype("datetime64[ns]").astype(np.int64)
