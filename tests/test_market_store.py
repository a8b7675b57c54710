"""market.json: a fitted market, its rate evidence included, reads back as written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optimizer.errors import InputError
from optimizer.io.schema import read_event_log
from optimizer.market.fit import fit_market
from optimizer.market.store import load_market, save_market


@pytest.fixture(scope="module")
def fitted(small_market):
    events = read_event_log(small_market / "events.csv")
    n = len(events)
    return fit_market(events, np.full(n, 0.02), np.full(n, 5e-4))


def test_market_reads_back_with_its_rate_evidence(fitted, tmp_path):
    save_market(tmp_path, fitted)
    loaded = load_market(tmp_path)
    assert loaded.names == fitted.names and loaded.metrics == fitted.metrics
    np.testing.assert_array_equal(loaded.params.p_conv, fitted.params.p_conv)
    ev, back = fitted.evidence, loaded.evidence
    np.testing.assert_array_equal(back.conversions_observed, ev.conversions_observed)
    np.testing.assert_array_equal(back.conversions_expected, ev.conversions_expected)
    assert back.spread == ev.spread


def test_older_market_json_has_partial_evidence(fitted, tmp_path):
    save_market(tmp_path, fitted)
    path = tmp_path / "market.json"
    data = json.loads(path.read_text())
    del data["metrics"]["rate_spread"]
    for entry in data["metrics"]["rate_anchoring"].values():
        del entry["conversions_expected"]
    path.write_text(json.dumps(data))
    evidence = load_market(tmp_path).evidence
    assert evidence.conversions_expected is None and evidence.spread is None
    np.testing.assert_array_equal(
        evidence.conversions_observed, fitted.evidence.conversions_observed
    )


def test_missing_market_json_says_how_to_get_one(tmp_path):
    with pytest.raises(InputError, match=r"no market\.json"):
        load_market(tmp_path)
