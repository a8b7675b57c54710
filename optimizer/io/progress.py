"""Progress bars for long work: a tqdm bar with ETA on stderr, only on a terminal.

Under ``-q`` (``show=False``) and when stderr is not a terminal (CI logs, files,
pipes) the bar is disabled, so logs stay readable.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, unit: str, show: bool = True, **kwargs) -> tqdm:
    """A bar over ``total`` units of work (``tqdm`` keyword arguments pass through);
    ``bar.disable`` tells callers whether it is shown."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not (show and sys.stderr.isatty()),
        leave=False,
        file=sys.stderr,
        **kwargs,
    )
