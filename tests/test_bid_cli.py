"""adplan plan with bid rules, and adplan bid, on a model fitted to true rates."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.io.files import folder_checksums
from optimizer.io.schema import validate_event_log
from optimizer.market.fit import fit_market
from optimizer.market.store import save_market, save_rule_rows
from simulations.synthetic.generate import generate_events, make_truth
from simulations.synthetic.truth import Truth

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="module")
def rule_model(tmp_path_factory):
    """A model folder whose rates are the truth's (no network to train)."""
    root = tmp_path_factory.mktemp("rules")
    data = make_truth(3, 2, seed=4)
    events = validate_event_log(generate_events(data, seed=4), "synthetic")
    p_click, p_conv = Truth(data).rates_for_rows(events)
    market = fit_market(events, p_click, p_conv)
    model = root / "model"
    model.mkdir()
    save_market(model, market)
    save_rule_rows(model, market)
    info = {"format": "adplan-model/1", "model_id": "rules-test"}
    info["sha256"] = folder_checksums(model)
    (model / "model.json").write_text(json.dumps(info), encoding="utf-8")
    auctions = events.drop(columns=["won", "cost", "click", "conversion", "revenue"])
    auctions.head(500).to_csv(root / "auctions.csv", index=False)
    budget = 0.5 * float(events["cost"].sum())
    return {"root": root, "model": model, "budget": f"{budget:.2f}"}


def _plan(m, out, *extra):
    args = ["plan", "--model", str(m["model"]), "--budget", m["budget"]]
    return CliRunner().invoke(
        main, ["-q", *args, "--days", "2", "--out", str(out), *extra]
    )


def test_plan_bids_by_rule_and_bid_scores_auctions(rule_model):
    root = rule_model["root"]
    ruled = _plan(rule_model, root / "ruled")
    assert ruled.exit_code == 0, ruled.output
    doc = json.loads((root / "ruled" / "plan.json").read_text())
    assert doc["bid_rules"]["used"], doc["bid_rules"]["reason"]
    assert doc["bid_rules"]["objective"] > doc["bid_rules"]["flat_objective"]
    rules = pd.read_csv(root / "ruled" / "bid_rules.csv")
    assert list(rules.columns[:4]) == ["audience", "feature", "level", "factor"]
    assert rules["factor"].between(0.1, 10).all()
    # plan.csv keeps its columns (the golden flat plan's); --flat-bids is
    # covered by tests/test_golden.py (plan.json unchanged, no bid_rules.csv).
    cols = pd.read_csv(root / "ruled" / "plan.csv").columns
    assert list(cols) == list(pd.read_csv(GOLDEN / "plan.csv").columns)

    auctions = pd.read_csv(root / "auctions.csv")
    auctions.loc[0, "device"] = "smart-tv"
    auctions.to_csv(root / "auctions.csv", index=False)
    args = ["bid", "--model", str(rule_model["model"]), "--plan", str(root / "ruled")]
    out = CliRunner().invoke(
        main,
        [*args, "--events", str(root / "auctions.csv"), "--out", str(root / "b.csv")],
    )
    assert out.exit_code == 0, out.output
    assert "1 auctions have a feature level the rule never saw" in out.output
    bids = pd.read_csv(root / "b.csv")
    assert len(bids) == 500 and (bids["bid"] > 0).all()
    assert bids["bid_factor"].nunique() > 3
    plan = pd.read_csv(root / "ruled" / "plan.csv").set_index("audience")
    base = bids["audience"].map(plan["bid"])
    pd.testing.assert_series_equal(
        bids["bid"],
        (base * bids["bid_factor"]).clip(upper=None),
        check_names=False,
        rtol=1e-6,
    )

    # In chunks of 64 rows: the same file (one header, every row once).
    from optimizer.commands.bid import score_auctions

    score_auctions(
        rule_model["model"], root / "ruled", root / "auctions.csv", root / "b64.csv", 64
    )
    pd.testing.assert_frame_equal(pd.read_csv(root / "b64.csv"), bids)

    auctions.drop(columns=["region"]).to_csv(root / "short.csv", index=False)
    bad = CliRunner().invoke(
        main, [*args, "--events", str(root / "short.csv"), "--out", str(root / "c.csv")]
    )
    assert bad.exit_code != 0 and "missing column(s) region" in bad.output
    assert "Traceback" not in bad.output and not (root / "c.csv").exists()


def test_bad_factor_range_is_a_clear_error(rule_model):
    out = _plan(rule_model, rule_model["root"] / "x", "--factor-range", "2:10")
    assert out.exit_code != 0 and "--factor-range" in out.output


def test_plan_json_rebuilds_the_rule_market(rule_model):
    """simulate / whatif / frontier rebuild the plan's market from plan.json."""
    import numpy as np

    from optimizer.market.store import load_market, load_rule_rows
    from optimizer.plan.bid_rules import market_for_plan, rule_market_for, rule_section

    market = load_market(rule_model["model"])
    rows = load_rule_rows(rule_model["model"])
    rule, ruled = rule_market_for(market, rows, "conversions", 4, (0.2, 5.0))
    doc = {"bid_rules": rule_section(rule, True, "test", 1.0, 1.0, 4)}
    doc["bid_rules"]["max_bid"] = [0.5] * len(market.names)
    doc = json.loads(json.dumps(doc))  # as written to and read from plan.json
    again, same = market_for_plan(market, rows, doc)
    assert same.factors == rule.factors
    for field in ("weight", "p_conv", "price_loc", "log_bid_factor"):
        np.testing.assert_array_equal(
            getattr(again.params, field), getattr(ruled.params, field)
        )
    np.testing.assert_allclose(np.exp(again.params.log_bid_cap), 0.5)
    assert np.abs(np.asarray(ruled.params.log_bid_factor)).max() <= np.log(5.0) + 1e-12
    flat, none = market_for_plan(market, rows, {})
    assert none is None and flat.params.log_bid_factor is None


def test_the_flat_and_the_rule_solve_run_one_shape(rule_model):
    """adplan plan solves the flat plan in the rule market's shape, so the two
    solves share every compiled program (a first plan compiles half as much)."""
    from types import SimpleNamespace

    import jax
    import numpy as np

    from optimizer.commands.rules import solve_with_rules
    from optimizer.market.store import load_market

    market = load_market(rule_model["model"])
    seen = []

    def solve(m):  # records the market; the rule's objective is the larger
        seen.append(m.params)
        problem = SimpleNamespace(max_log_bid=np.zeros(len(market.names)))
        return SimpleNamespace(
            allocation=SimpleNamespace(objective=float(len(seen))),
            inputs=SimpleNamespace(problem=problem),
        )

    _, rule, section = solve_with_rules(
        rule_model["model"], market, "conversions", (True, "0.1:10", 8), solve
    )
    assert section["used"] and not rule.is_flat and len(seen) == 2
    flat, ruled = seen
    assert jax.tree_util.tree_structure(flat) == jax.tree_util.tree_structure(ruled)
    shapes = [jax.tree_util.tree_map(np.shape, p) for p in (flat, ruled)]
    assert shapes[0] == shapes[1]
    assert not np.asarray(flat.log_bid_factor).any()  # every factor 1: flat bids
    k = market.params.weight.shape[1]
    np.testing.assert_array_equal(flat.weight[:, :k], market.params.weight)
    assert not np.asarray(flat.weight[:, k:]).any()
