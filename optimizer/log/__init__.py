"""Log stage: the event log read in chunks, with exact totals and a market sample.

``stream`` validates and streams a file or folder (CSV or Parquet) chunk by chunk,
keeping a per-audience sample for the market fit and spilling won auctions for the
rate network (``chunks``); ``totals`` adds up the log's exact per-audience totals
(:class:`LogTotals`) and detects whether the exchange charged first or second price.
"""

from optimizer.log.chunks import WonChunks
from optimizer.log.stream import StreamedLog, stream_log
from optimizer.log.totals import LogTotals, detect_auction_type

__all__ = ["LogTotals", "StreamedLog", "WonChunks", "detect_auction_type", "stream_log"]
