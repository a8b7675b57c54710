"""``--realism real`` markets: atoms, a cap, a latent price-linked quality, drift,
and a truth that stays exact under all of them."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.io.schema import validate_event_log
from optimizer.market.params import per_auction
from simulations.synthetic import realism
from simulations.synthetic.generate import generate_events, make_truth
from simulations.synthetic.truth import Truth


@pytest.fixture(scope="module")
def real():
    truth = make_truth(3, 8, seed=11, realism="real")
    return truth, generate_events(truth, seed=11)


def test_demo_market_is_the_default_and_real_keeps_its_features(real):
    demo = make_truth(3, 8, seed=11)
    assert "realism" not in demo and "latent" not in demo
    assert real[0]["click"] == demo["click"]
    assert demo["tie_rule"] == real[0]["tie_rule"] == "win iff bid > price"


def test_log_has_atoms_a_cap_and_no_latent_column(real):
    truth, events = real
    validate_event_log(events, "real")
    assert set(events.columns) == set(generate_events(make_truth(1, 1), 0).columns)
    won = events[events["won"] == 1]
    for aud in truth["audiences"]:
        cost = won.loc[won["audience"] == aud["audience"], "cost"]
        assert cost.max() <= aud["price"]["cap"]
        assert set(cost.round(6)) <= set(aud["price"]["prices"])
        assert cost.value_counts(normalize=True).iloc[0] > 0.05  # an atom


@pytest.mark.parametrize("day", [0, 5])
def test_closed_forms_match_sampled_auctions_at_atom_and_cap_bids(real, day):
    """Win rate, second-price cost and clicks per auction: the truth's closed form
    against 200,000 auctions drawn as the generator draws them (bid == price loses)."""
    truth, _ = real
    t = Truth(truth)
    params = t.market_params(day=day)
    rng = np.random.default_rng(day)
    n = 200_000
    for a, aud in enumerate(truth["audiences"]):
        price, lift = realism.sample_latent_prices(
            aud, truth["latent"], np.full(n, day), truth["days"], rng
        )
        prices = np.asarray(aud["price"]["prices"])
        atom = prices[np.argmax(aud["price"]["shares"])]
        bids = np.array(
            [atom, atom * 1.001, aud["price"]["cap"], aud["price"]["cap"] * 2]
        )
        one = params.take(jnp.asarray([a] * len(bids)))
        closed = np.asarray(per_auction(one, jnp.asarray(bids)))
        mean_click = float(closed[-1, 2])  # every auction won above the cap
        for b, row in zip(bids, closed, strict=True):
            won = price < b
            p_win = np.clip(row[0], 0.0, 1.0)
            assert (
                abs(won.mean() - row[0]) < 4 * np.sqrt(p_win * (1 - p_win) / n) + 1e-6
            )
            assert abs(np.mean(price * won) - row[1]) < 5 * price.std() / np.sqrt(n)
            clicks = mean_click * np.mean(lift * won)
            assert abs(clicks - row[2]) < 5 * mean_click * lift.std() / np.sqrt(n)
        # the tie rule: bidding exactly the atom's price does not win its auctions
        assert closed[1, 0] - closed[0, 0] > 0.05


def test_latent_quality_raises_clicks_with_price(real):
    params = Truth(real[0]).market_params()
    for a in range(3):
        w = np.asarray(params.weight[a])
        rate = np.asarray(params.p_click[a]) / np.sum(w * np.asarray(params.p_click[a]))
        cdf = np.cumsum(w)
        cheap, dear = cdf <= 0.2, cdf > 0.8
        assert np.sum(w[cheap] * rate[cheap]) / w[cheap].sum() < 0.7
        assert np.sum(w[dear] * rate[dear]) / w[dear].sum() > 1.4


def test_drift_moves_volume_and_prices_to_the_horizon(real):
    truth, events = real
    t = Truth(truth)
    first, horizon = t.market_params(day=0), t.market_params()
    days = truth["days"]
    day = events["timestamp"].str.slice(0, 10)
    for a, aud in enumerate(truth["audiences"]):
        drift = aud["drift"]
        assert float(horizon.volume_per_day[a]) == pytest.approx(
            aud["volume_per_day"] * drift["volume"]
        )
        counts = day[events["audience"] == aud["audience"]].value_counts().sort_index()
        expected = aud["volume_per_day"] * drift["volume"] ** ((days - 1) / days)
        assert abs(counts.iloc[-1] - expected) < 5 * np.sqrt(expected)
        mean_price = [
            float(jnp.sum(p.weight[a] * jnp.exp(p.price_loc[a])))
            for p in (first, horizon)
        ]
        assert np.sign(mean_price[1] - mean_price[0]) == np.sign(drift["price_tilt"])
    assert "drift" in truth["horizon"]


def test_optimal_plan_is_exact_and_beats_every_flat_bid_multiplier(real):
    t = Truth(real[0])
    usual = t.expected_outcome(t.usual_bids(), None, 7)
    budget = 0.8 * float(jnp.sum(usual.spend))
    best = t.optimal_plan(budget, 7)
    spend = np.asarray(best.spend)
    assert spend.sum() <= budget * (1 + 1e-9) and spend.sum() > 0.97 * budget
    out = t.expected_outcome(np.exp(np.asarray(best.log_bid)), spend, 7)
    assert float(jnp.sum(out.conversions)) == pytest.approx(float(best.objective))
    for m in np.exp(np.linspace(-2, 2, 41)):
        flat = t.expected_outcome(t.usual_bids() * m, None, 7)
        if float(jnp.sum(flat.spend)) <= budget:
            assert float(jnp.sum(flat.conversions)) <= float(best.objective) * (
                1 + 1e-9
            )


def test_generate_command_writes_a_real_market(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            *("generate", "--out", str(tmp_path / "m"), "--audiences", "2"),
            *("--days", "2", "--realism", "real"),
        ],
    )
    assert result.exit_code == 0, result.output
    truth = json.loads((tmp_path / "m" / "truth.json").read_text())
    assert truth["realism"] == "real" and "price atoms" in result.output
