"""The data contract: every validation error names file, column, rows and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.errors import InputError
from optimizer.io.schema import (
    read_event_log,
    read_settings,
    validate_event_log,
    validate_settings,
)


def _log(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="h").strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "audience": ["a", "b"] * (n // 2),
            "bid": [0.01] * n,
            "won": [1, 0] * (n // 2),
            "cost": [0.005, 0.0] * (n // 2),
            "click": [1, 0] * (n // 2),
            "conversion": [1, 0] * (n // 2),
            "revenue": [10.0, 0.0] * (n // 2),
            "device": ["mobile"] * n,
            "score": [1.5] * n,
        }
    )


def _error(frame: pd.DataFrame) -> str:
    with pytest.raises(InputError) as info:
        validate_event_log(frame, "log.csv")
    return str(info.value)


def test_valid_log_is_typed():
    out = validate_event_log(_log(), "log.csv")
    assert str(out["timestamp"].dt.tz) == "UTC"
    assert out["bid"].dtype == np.float64 and out["won"].dtype == np.int8
    assert out["score"].dtype == np.float64 and out["device"].iloc[0] == "mobile"


def test_missing_column_suggests_misspelling():
    msg = _error(_log().rename(columns={"conversion": "conversions"}))
    assert "log.csv" in msg and "'conversion'" in msg and "found 'conversions'" in msg


@pytest.mark.parametrize(
    ("column", "row", "value", "words"),
    [
        ("bid", 2, -1.0, ["'bid'", "not positive", "row 3"]),
        ("bid", 0, "abc", ["'bid'", "not a number", "row 1"]),
        ("bid", 1, np.nan, ["'bid'", "empty"]),
        ("cost", 0, -0.5, ["'cost'", "negative"]),
        ("cost", 1, 0.3, ["'cost'", "lost auction"]),
        ("won", 0, 2, ["'won'", "0 or 1"]),
        ("click", 1, 1, ["'click'", "not won"]),
        ("conversion", 2, 1, ["'conversion'", "without a click"]),
        ("revenue", 0, -3.0, ["'revenue'", "negative"]),
        ("timestamp", 4, "yesterday", ["'timestamp'", "ISO 8601", "row 5"]),
        ("audience", 3, "", ["'audience'", "empty"]),
    ],
)
def test_each_rule_is_reported(column, row, value, words):
    frame = _log().astype({column: object})
    if column == "conversion":
        frame.loc[row, "click"] = 0
    frame.loc[row, column] = value
    msg = _error(frame)
    assert "log.csv" in msg and "1 row(s)" in msg
    for word in words:
        assert word in msg


def test_empty_log():
    assert "no rows" in _error(_log().iloc[:0])


def test_read_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_event_log(tmp_path / "nope.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(InputError, match="could not be read as Parquet"):
        read_event_log(bad)


def test_parquet_round_trip(tmp_path):
    path = tmp_path / "log.parquet"
    _log().to_parquet(path)
    assert len(read_event_log(path)) == 6


def test_settings_validation(tmp_path):
    known = ["a", "b"]
    ok = validate_settings(
        pd.DataFrame({"audience": ["a"], "min_spend": [5.0], "max_spend": [None]}),
        known,
        "s.csv",
    )
    assert np.isnan(ok["max_spend"].iloc[0])
    cases = [
        (pd.DataFrame({"audience": ["zz"]}), "not in the model"),
        (pd.DataFrame({"audience": ["a", "a"]}), "repeats an audience"),
        (
            pd.DataFrame({"audience": ["a"], "min_spend": [-1.0]}),
            "'min_spend' is negative",
        ),
        (
            pd.DataFrame({"audience": ["a"], "min_spend": [9.0], "max_spend": [3.0]}),
            "above max_spend",
        ),
        (pd.DataFrame({"audience": ["a"], "max_spnd": [3.0]}), "found 'max_spend'"),
        (pd.DataFrame({"name": ["a"]}), "'audience'"),
        (
            pd.DataFrame({"audience": ["a"], "value_per_conversion": ["ten"]}),
            "not a number",
        ),
    ]
    for frame, words in cases:
        with pytest.raises(InputError, match=words):
            validate_settings(frame, known, "s.csv")
    path = tmp_path / "s.csv"
    pd.DataFrame({"audience": ["b"], "volume_per_day": [10]}).to_csv(path, index=False)
    assert read_settings(path, known)["volume_per_day"].iloc[0] == 10.0
