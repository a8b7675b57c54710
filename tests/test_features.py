"""Feature encoding: vocabularies with OOV, normalization, time fields, JSON form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.errors import InputError
from optimizer.features import (
    OOV,
    FeatureSpec,
    encode,
    fit_features,
)
from optimizer.io.schema import feature_columns


def _log(n: int = 12) -> pd.DataFrame:
    """A tiny validated-style log: two categorical features and one numeric."""
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-05T00:00Z", periods=n, freq="13h"),
            "audience": ["a", "b", "a", "c"] * (n // 4),
            "bid": 1.0,
            "won": np.ones(n, np.int8),
            "cost": 0.5,
            "click": np.zeros(n, np.int8),
            "conversion": np.zeros(n, np.int8),
            "device": ["mobile", "desktop", "mobile"] * (n // 3),
            "score": np.arange(n, dtype=np.float64),
        }
    )


def test_feature_columns_split_by_dtype_and_skip_outcomes():
    categorical, numeric = feature_columns(_log())
    assert categorical == ["audience", "device"]
    assert numeric == ["score"]


def test_vocabulary_is_frequency_ordered_and_rare_values_go_to_oov():
    spec = fit_features(_log(), min_count=3)
    assert spec.vocab["audience"] == ["a", "b", "c"]  # a: 6, b: 3, c: 3
    assert spec.vocab["device"] == ["mobile", "desktop"]
    rare = fit_features(_log(), min_count=4)
    assert rare.vocab["audience"] == ["a"]


def test_encode_offsets_oov_and_time_fields():
    log = _log()
    spec = fit_features(log, min_count=1)
    batch = encode(spec, log)
    sizes = spec.field_sizes
    assert sizes == [4, 3, 24, 7]
    assert batch.codes.dtype == np.int32 and batch.codes.shape == (12, 4)
    starts = np.cumsum([0, *sizes[:-1]])
    local = batch.codes - starts
    assert (local >= 0).all() and (local < np.array(sizes)).all()
    assert local[0, 0] == 1 and local[1, 0] == 2  # a, b
    ts = log["timestamp"]
    np.testing.assert_array_equal(local[:, 2], ts.dt.hour)
    np.testing.assert_array_equal(local[:, 3], ts.dt.dayofweek)


def test_unseen_and_missing_values_map_to_oov_and_mean():
    log = _log()
    spec = fit_features(log, min_count=1)
    new = log.drop(columns=["device", "score"]).assign(
        audience=["zzz"] * 12, extra=["ignored"] * 12
    )
    batch = encode(spec, new)
    assert (batch.codes[:, 0] == OOV).all()  # new audience
    assert (batch.codes[:, 1] == spec.field_sizes[0] + OOV).all()  # missing column
    assert (batch.numeric == 0).all()  # missing numeric -> mean


def test_numeric_standardized_clipped_float32():
    log = _log()
    spec = fit_features(log)
    mean, std = spec.numeric["score"]
    assert mean == pytest.approx(5.5) and std == pytest.approx(np.std(np.arange(12)))
    far = log.assign(score=[1e9] + [np.nan] * 11)
    values = encode(spec, far).numeric[:, 0]
    assert values.dtype == np.float32
    assert values[0] == 5.0 and (values[1:] == 0).all()


def test_categorical_dtype_column_encodes_like_strings():
    log = _log()
    spec = fit_features(log, min_count=1)
    as_cat = log.assign(device=log["device"].astype("category"))
    np.testing.assert_array_equal(encode(spec, as_cat).codes, encode(spec, log).codes)


def test_audience_only_and_numeric_only_logs():
    log = _log().drop(columns=["device", "score"])
    spec = fit_features(log, min_count=1)
    assert list(spec.vocab) == ["audience"] and spec.numeric == {}
    assert encode(spec, log).numeric.shape == (12, 0)
    numeric_only = _log().drop(columns=["device"])
    assert list(fit_features(numeric_only).numeric) == ["score"]


def test_spec_json_round_trip_and_malformed():
    spec = fit_features(_log(), min_count=1)
    again = FeatureSpec.from_dict(spec.to_dict())
    assert again == spec
    with pytest.raises(InputError, match="malformed"):
        FeatureSpec.from_dict({"vocab": {}})
    broken = spec.to_dict() | {"numeric": {"score": [0.0, 0.0]}}
    with pytest.raises(InputError, match="std"):
        FeatureSpec.from_dict(broken)


def test_encode_needs_timestamp():
    spec = fit_features(_log())
    with pytest.raises(InputError, match="timestamp"):
        encode(spec, _log().drop(columns=["timestamp"]))
