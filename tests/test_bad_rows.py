"""A handful of bad rows never rejects a whole log, and never late (issue #20.11)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.errors import InputError
from optimizer.io.bad_rows import BadRows, enforce
from optimizer.io.schema import validate_event_log
from optimizer.log.stream import stream_log

COST_ZERO = "column 'cost' is 0 on a won auction"


def _spoil(events: pd.DataFrame, n_cost_zero: int, n_click_lost: int = 0):
    """A copy with ``n_cost_zero`` won rows at cost 0 and ``n_click_lost`` lost
    rows with a click; returns it and the 1-based data rows spoiled."""
    events = events.copy()
    won = np.flatnonzero(events["won"].to_numpy() == 1)
    lost = np.flatnonzero(events["won"].to_numpy() == 0)
    rng = np.random.default_rng(0)
    zero = np.sort(rng.choice(won, n_cost_zero, replace=False))
    click = np.sort(rng.choice(lost, n_click_lost, replace=False))
    events.loc[zero, "cost"] = 0.0
    events.loc[click, "click"] = 1
    return events, zero + 1, click + 1


@pytest.fixture(scope="module")
def raw(small_market):
    return pd.read_csv(small_market / "events.csv")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output + repr(result.exception)


def test_rows_are_recorded_by_first_reason_and_dropped(raw):
    events, zero, click = _spoil(raw.iloc[:2000], 3, 2)
    bad = BadRows()
    out = validate_event_log(events, "log.csv", bad=bad)
    assert len(out) == len(events) - 5
    assert bad.counts == {
        COST_ZERO: 3,
        "column 'click' is 1 on an auction that was not won": 2,
    }
    assert bad.first[COST_ZERO] == ("log.csv", int(zero[0]))
    kept = bad.frame()
    assert sorted(kept["data_row"]) == sorted([*zero, *click])
    assert set(kept.columns[:3]) == {"file", "data_row", "reason"}
    with pytest.raises(InputError, match=r"'cost' is 0 on a won auction in 3 row\(s\)"):
        validate_event_log(_spoil(raw.iloc[:2000], 3)[0], "log.csv")


def test_streamed_counts_add_up_across_chunks(raw, tmp_path):
    events, zero, click = _spoil(raw.iloc[:3000], 4, 3)
    path = tmp_path / "log.csv"
    events.to_csv(path, index=False)
    whole = BadRows()
    validate_event_log(events, path, bad=whole)
    for chunk_rows in (250, 3000):
        bad = BadRows()
        log = stream_log(
            [path],
            tmp_path / f"s{chunk_rows}",
            chunk_rows=chunk_rows,
            progress=False,
            bad=bad,
        )
        assert bad.counts == whole.counts
        assert bad.first == whole.first
        assert sorted(bad.frame()["data_row"]) == sorted([*zero, *click])
        assert log.n_events + bad.total == 3000


def test_share_above_the_limit_is_refused_with_every_reason():
    bad = BadRows()
    frame = pd.DataFrame({"cost": ["0"] * 3})
    bad.add("log.csv", COST_ZERO, "Fill in the price.", np.array([4, 9, 12]), frame)
    assert enforce(bad, 3000, "drop", "event log x")[0].startswith(
        "  dropped 3 bad row(s)"
    )
    with pytest.raises(InputError, match=r"3 bad row\(s\) of 2,000 \(0.150%\).*0.1%"):
        enforce(bad, 2000, "drop", "event log x")
    with pytest.raises(
        InputError, match=r"(?s)--bad-rows report.*3 row\(s\): .*data row 4"
    ):
        enforce(bad, 10**6, "report", "event log x")


def test_cli_fails_before_training_above_the_share(raw, tmp_path, monkeypatch):
    import optimizer.commands.train as train

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train, "fit_rate_model_chunks", no_training)
    events, _, _ = _spoil(raw, len(raw) // 200)  # 0.5% of rows
    path = tmp_path / "log.csv"
    events.to_csv(path, index=False)
    code, output = run(
        "train", "--events", path, "--out", tmp_path / "m", "--chunk-rows", 5000
    )
    assert code == 1
    assert "more than the 0.1%" in output and COST_ZERO in output
    assert f"{len(raw) // 200:,} row(s)" in output
    assert not (tmp_path / "m").exists()
    code, output = run(
        "train", "--events", path, "--out", tmp_path / "m", "--bad-rows", "fail"
    )
    assert code == 1 and "(first at data row" in output


def test_cli_drops_a_few_price_zero_wins_and_keeps_them(raw, tmp_path):
    events, zero, _ = _spoil(raw.iloc[:12000], 3)
    path = tmp_path / "log.csv"
    events.to_csv(path, index=False)
    model = tmp_path / "m"
    code, output = run(
        "train", "--events", path, "--out", model, "--epochs", 1,
        "--validation-days", 0.3,
    )  # fmt: skip
    assert code == 0, output
    assert "dropped 3 bad row(s)" in output and COST_ZERO in output
    assert "first_price" not in output.split("bid landscapes")[0]
    kept = pd.read_csv(model / "bad_rows.csv")
    assert kept["data_row"].tolist() == zero.tolist()
    assert set(kept["reason"]) == {COST_ZERO} and set(kept["file"]) == {"log.csv"}
    doc = json.loads((model / "model.json").read_text())
    assert doc["rows"] == 12000 - 3
    assert doc["bad_rows"] == {"policy": "drop", "dropped": {COST_ZERO: 3}}
