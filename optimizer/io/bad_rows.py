"""Bad rows of an event log: counted by reason, kept for the planner, dropped or refused.

Real logs hold a few broken rows (a won auction with price 0, a click on a lost
auction, a blank timestamp). Under the ``drop`` policy validation drops them
when they are at most ``MAX_BAD_SHARE`` of the log and records each one (file,
data row, reason and its raw cells) for ``bad_rows.csv``; above that share, or
under ``fail``, the log is refused with the usual message. ``report`` lists
every reason and stops without training.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputError

POLICIES = ("drop", "report", "fail")
DEFAULT_POLICY = "drop"
MAX_BAD_SHARE = 0.001
# Rows kept in memory for bad_rows.csv; further bad rows are only counted.
MAX_KEPT_ROWS = 100_000


@dataclasses.dataclass
class BadRows:
    """Bad rows found so far, by reason (e.g. ``"cost is 0 on a won auction"``).

    Attributes:
        counts: reason -> rows.
        first: reason -> (file, first data row), the earliest row seen.
        fixes: reason -> what to do about it.
        kept: raw rows with ``file``, ``data_row`` and ``reason`` columns first.
    """

    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    first: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    fixes: dict[str, str] = dataclasses.field(default_factory=dict)
    kept: list[pd.DataFrame] = dataclasses.field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(
        self,
        path: Path,
        reason: str,
        fix: str,
        rows: np.ndarray,
        raw: pd.DataFrame,
    ) -> None:
        """Record ``raw`` (the bad rows' cells) at 1-based data ``rows`` of ``path``."""
        if len(rows) == 0:
            return
        self.counts[reason] = self.counts.get(reason, 0) + len(rows)
        self.fixes.setdefault(reason, fix)
        seen = self.first.get(reason)
        if seen is None or (seen[0] == str(path) and int(rows[0]) < seen[1]):
            self.first[reason] = (str(path), int(rows[0]))
        room = MAX_KEPT_ROWS - sum(len(k) for k in self.kept)
        if room > 0:
            part = raw.iloc[:room].astype(str)
            part.insert(0, "reason", reason)
            part.insert(0, "data_row", rows[:room])
            part.insert(0, "file", Path(path).name)
            self.kept.append(part.reset_index(drop=True))

    def merge(self, other: BadRows) -> None:
        """Add another process's (or file's) counts, keeping the earliest first rows."""
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
            self.fixes.setdefault(reason, other.fixes[reason])
            self.first.setdefault(reason, other.first[reason])
        self.kept.extend(other.kept)

    def lines(self) -> list[str]:
        """One line per reason: count, first row and fix, most frequent first."""
        return [
            f"  {n:,} row(s): {reason} (first: {Path(self.first[reason][0]).name} "
            f"data row {self.first[reason][1]}). {self.fixes[reason]}"
            for reason, n in sorted(self.counts.items(), key=lambda kv: -kv[1])
        ]

    def frame(self) -> pd.DataFrame:
        """The kept bad rows, in the order found (file, data_row, reason, raw cells)."""
        if not self.kept:
            return pd.DataFrame(columns=["file", "data_row", "reason"])
        return pd.concat(self.kept, ignore_index=True)


def enforce(bad: BadRows, n_rows: int, policy: str, what: str) -> list[str]:
    """Apply the policy once the whole log is read; return lines for the summary.

    ``n_rows`` counts every row read, bad ones included.

    Raises:
        InputError: under ``report`` when any row is bad (every reason listed),
            and under ``drop`` when bad rows exceed ``MAX_BAD_SHARE`` of the log.
    """
    if bad.total == 0:
        return []
    share = bad.total / max(n_rows, 1)
    head = f"{what}: {bad.total:,} bad row(s) of {n_rows:,} ({share:.3%})"
    if policy == "report":
        raise InputError(
            "\n".join(
                [f"{head}; nothing was trained (--bad-rows report):", *bad.lines()]
            )
        )
    if share > MAX_BAD_SHARE:
        raise InputError(
            "\n".join(
                [
                    f"{head}, more than the {MAX_BAD_SHARE:.1%} that adplan drops on "
                    "its own; nothing was trained. Fix the rows below (or export the "
                    "log again):",
                    *bad.lines(),
                ]
            )
        )
    return [f"  dropped {head[len(what) + 2 :]}, listed in bad_rows.csv:", *bad.lines()]
