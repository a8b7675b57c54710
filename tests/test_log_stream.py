"""Streaming the event log: chunk independence, the market sample and exact totals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from optimizer.errors import InputError
from optimizer.io.schema import read_event_log
from optimizer.log.stream import PRIORITY, stream_log
from optimizer.log.totals import log_totals, merge_totals
from optimizer.market.fit import fit_market


def _same_totals(a, b) -> None:
    """Equal totals; money sums may differ in the last bits with the summing order."""
    a, b = dataclasses.asdict(a), dataclasses.asdict(b)
    for key in ("revenue", "revenue_total"):
        assert a.pop(key) == pytest.approx(b.pop(key), rel=1e-12)
    assert a == b


@pytest.fixture(scope="module")
def log_file(small_market):
    return small_market / "events.csv"


def _won(log) -> pd.DataFrame:
    frames = [frame for frame, _ in log.won]
    text = [c for c in frames[0].columns if frames[0][c].dtype == "category"]
    return pd.concat(frames, ignore_index=True).astype({c: str for c in text})


def test_chunk_size_changes_nothing(log_file, tmp_path):
    whole = stream_log(
        [log_file],
        tmp_path / "a",
        chunk_rows=10**7,
        sample_per_audience=700,
        progress=False,
    )
    chunked = stream_log(
        [log_file],
        tmp_path / "b",
        chunk_rows=3001,
        sample_per_audience=700,
        progress=False,
    )
    pd.testing.assert_frame_equal(_won(whole), _won(chunked))
    pd.testing.assert_frame_equal(whole.sample, chunked.sample)
    _same_totals(whole.totals, chunked.totals)
    assert whole.n_events == chunked.n_events


def test_won_rows_are_spilled_to_disk_and_complete(log_file, tmp_path):
    events = read_event_log(log_file)
    log = stream_log([log_file], tmp_path, chunk_rows=5000, progress=False)
    assert len(log.won.parts) == -(-len(events) // 5000)
    assert all(p.parent == tmp_path and p.is_file() for p in log.won.parts)
    won = _won(log)
    assert len(won) == int(events["won"].sum()) and (won["won"] == 1).all()


def test_totals_add_up_over_chunks(log_file):
    events = read_event_log(log_file)
    parts = [log_totals(events.iloc[i : i + 7000]) for i in range(0, len(events), 7000)]
    _same_totals(merge_totals(parts), log_totals(events))


def test_sample_is_uniform_per_audience_and_capped(log_file, tmp_path):
    log = stream_log(
        [log_file], tmp_path, chunk_rows=5000, sample_per_audience=500, progress=False
    )
    sizes = log.sample.groupby("audience").size()
    assert (sizes == np.minimum(500, pd.Series(log.totals.auctions)[sizes.index])).all()
    # a uniform sample: its win rate is close to the audience's
    events = read_event_log(log_file)
    full = events.groupby("audience")["won"].mean()
    sampled = log.sample.groupby("audience")["won"].mean()
    assert np.abs(sampled - full[sampled.index]).max() < 0.08
    assert log.sample[PRIORITY].between(0, 1).all()


def test_market_from_sample_keeps_exact_totals(log_file, tmp_path):
    """Volumes, hour profiles, observed conversions and value come from the totals."""
    events = read_event_log(log_file)
    log = stream_log(
        [log_file], tmp_path, chunk_rows=5000, sample_per_audience=400, progress=False
    )

    def rates(frame):
        return np.full(len(frame), 0.02), np.full(len(frame), 5e-4)

    full = fit_market(events, *rates(events))
    sampled = fit_market(log.sample, *rates(log.sample), totals=log.totals)
    for field in ("volume_per_day", "hour_profile", "value"):
        np.testing.assert_allclose(
            getattr(sampled.params, field), getattr(full.params, field), rtol=1e-12
        )
    assert (
        sampled.metrics["rate_anchoring"].keys()
        == full.metrics["rate_anchoring"].keys()
    )
    for name, entry in full.metrics["rate_anchoring"].items():
        assert (
            sampled.metrics["rate_anchoring"][name]["conversions_observed"]
            == (entry["conversions_observed"])
        )
    # spend per day is estimated from the sample: close, not exact
    np.testing.assert_allclose(
        sampled.current_daily_spend, full.current_daily_spend, rtol=0.25
    )


def test_empty_share_of_a_process_is_a_clear_error(log_file, tmp_path):
    with pytest.raises(InputError, match="smaller --chunk-rows or fewer processes"):
        stream_log(
            [log_file],
            tmp_path,
            chunk_rows=10**7,
            n_shards=2,
            owned=[1],
            progress=False,
        )
