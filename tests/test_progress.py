"""Progress bars: shown with an ETA on a terminal, silent in logs and under -q."""

from __future__ import annotations

import io
import sys

import numpy as np
import pandas as pd

from optimizer.io.progress import progress_bar
from optimizer.market.landscape import LandscapeData, fit_landscapes
from tests.markets import second_price_rows


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _data() -> LandscapeData:
    rng = np.random.default_rng(0)
    n = 400
    log_bid = rng.normal(0.0, 0.5, n)
    log_price = rng.normal(0.0, 0.5, n)
    return second_price_rows(np.zeros(n, np.int32), log_bid, log_price)


def test_bar_only_on_a_terminal_and_when_asked(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert not progress_bar(3, "work", "step").disable
    assert progress_bar(3, "work", "step", show=False).disable
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(3, "work", "step").disable


def test_landscape_fit_shows_its_bar(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fit_landscapes(_data(), iterations=20, progress=True)
    assert "bid landscapes" in terminal.getvalue()
    assert "2/2" in terminal.getvalue()
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    fit_landscapes(_data(), iterations=20, progress=False)
    assert quiet.getvalue() == ""


def test_the_daily_rate_network_shows_its_bar(monkeypatch):
    from optimizer.rates.counts import fit_count_rates
    from simulations.synthetic.daily import synthetic_report

    _, report, _ = synthetic_report(3, 14, 0)
    report["date"] = pd.to_datetime(report["date"])
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fit_count_rates(report, ["device"], 0, show=True)
    assert "rate network (" in terminal.getvalue() and "/600 [" in terminal.getvalue()
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    fit_count_rates(report, ["device"], 0, show=False)
    assert quiet.getvalue() == ""
