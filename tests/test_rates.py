"""Rate network: acceptance on a synthetic market, storage, OOV, determinism."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from optimizer.errors import InputError
from optimizer.io.files import dumps_json
from optimizer.io.schema import validate_event_log
from optimizer.log.chunks import WonChunks, utc_ns
from optimizer.rates import calibration
from optimizer.rates.evaluate import calibration_table, expected_calibration_error
from optimizer.rates.rows import validation_cutoff
from optimizer.rates.store import RateModel, load_rate_model
from optimizer.rates.train import fit_rate_model
from simulations.synthetic.generate import generate_events, make_truth
from simulations.synthetic.truth import Truth


def _market(n_audiences: int, days: int, seed: int) -> tuple[dict, pd.DataFrame]:
    truth = make_truth(n_audiences, days, seed)
    return truth, validate_event_log(generate_events(truth, seed))


def compare_to_truth(
    model: RateModel,
    events: pd.DataFrame,
    true_click: np.ndarray,
    true_conversion: np.ndarray,
) -> dict[str, Any]:
    """How close the predictions are to known true rates (synthetic markets).

    Args:
        events: rows to score (typically the won auctions).
        true_click, true_conversion: (n,) true p(click) and p(conversion) per
            won impression for those rows.

    Returns:
        Per head: log-odds correlation and ECE against the true rates (bins of
        predictions; observed = mean true rate), and per audience: conversions,
        predicted and true mean conversion rate and their relative error.
    """
    preds = model.predict(events)
    out: dict[str, Any] = {}
    for head, key, truth in (
        ("click", "p_click", true_click),
        ("conversion", "p_conversion", true_conversion),
    ):
        p = preds[key]
        table = calibration_table(p, np.asarray(truth, np.float64))
        out[head] = {
            "log_odds_correlation": float(
                np.corrcoef(calibration.log_odds(p), calibration.log_odds(truth))[0, 1]
            ),
            "ece_vs_truth": expected_calibration_error(table),
            "mean_true_rate": float(np.mean(truth)),
        }
    frame = pd.DataFrame(
        {
            "audience": events["audience"].to_numpy(),
            "pred": preds["p_conversion"],
            "true": true_conversion,
            "conversions": events["conversion"].to_numpy(),
        }
    )
    per = frame.groupby("audience").agg(
        conversions=("conversions", "sum"),
        predicted=("pred", "mean"),
        true=("true", "mean"),
    )
    per["relative_error"] = per["predicted"] / per["true"] - 1
    out["audiences"] = per.reset_index().to_dict(orient="records")
    return out


@pytest.fixture(scope="module")
def market():
    """2 high-volume audiences over 150 days (~0.9M auctions, ~2,000 conversions).

    The per-audience criterion is a statistical one: an audience's conversion rate
    is learned from its own conversions, with relative standard error about
    1/sqrt(conversions) (14% at 50). To test "within 10%" without testing luck,
    every audience here has 600+ conversions (SE <= 4%). 20 validation days give
    the calibration and the metrics ~250 validation conversions.
    """
    truth, events = _market(2, 150, 72)
    model = fit_rate_model(events, seed=0, validation_days=20, progress=False)
    won = events.loc[events["won"] == 1]
    true_click, true_conv = Truth(truth).rates_for_rows(won)
    return events, model, compare_to_truth(model, won, true_click, true_conv)


@pytest.fixture(scope="module")
def small():
    """A 4-audience, 8-day market (~69k auctions, 72 conversions) and a quick fit."""
    _, events = _market(4, 8, 0)
    return events, fit_rate_model(events, seed=1, epochs=3, progress=False)


def test_per_audience_conversion_rate_within_10_percent_of_truth(market):
    _, _, report = market
    checked = [a for a in report["audiences"] if a["conversions"] >= 50]
    assert checked, "the market must have audiences with 50+ conversions"
    for aud in checked:
        assert abs(aud["relative_error"]) < 0.10, aud


def test_calibrated_against_truth_and_labels(market):
    _, model, report = market
    for head in ("click", "conversion"):
        # ECE against the true rates: no label noise, so 10% of the mean is a
        # real calibration requirement, not a sampling-noise one.
        assert report[head]["ece_vs_truth"] < 0.10 * report[head]["mean_true_rate"]
        assert report[head]["log_odds_correlation"] > 0.9
    # With ~1,500 validation clicks per bin the label-based ECE is meaningful for
    # the click head; ~25 conversions per bin would put label noise (~20%) above
    # the 10% bar for the conversion head, hence the truth-based check above.
    click = model.metrics["heads"]["click"]["model"]
    assert click["ece"] < 0.10 * click["observed_rate"]


def test_auc_at_least_logistic_regression(market):
    _, model, _ = market
    for head in ("click", "conversion"):
        metrics = model.metrics["heads"][head]
        baseline = metrics["baselines"]["logistic_regression"]["auc"]
        assert metrics["model"]["auc"] >= baseline, head


def test_metrics_are_complete_and_json_ready(market):
    _, model, _ = market
    metrics = json.loads(dumps_json(model.metrics))
    for head in ("click", "conversion"):
        entries = metrics["heads"][head]
        for entry in (
            entries["model"],
            *entries["baselines"].values(),
        ):
            assert {"auc", "log_loss", "ece", "calibration"} <= set(entry)
            table = entry["calibration"]
            assert sum(row["count"] for row in table) == metrics["rows"]["validation"]
        assert set(entries["baselines"]) == {"audience_average", "logistic_regression"}
    assert (
        metrics["rows"]["train"] + metrics["rows"]["validation"]
        == metrics["rows"]["won"]
    )
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"]
    assert metrics["seconds"] > 0 and metrics["seed"] == 0


def test_predictions_are_consistent_probabilities(market):
    events, model, _ = market
    preds = model.predict(events.head(5000))
    for key in ("p_click", "p_conversion", "p_conversion_given_click"):
        assert preds[key].dtype == np.float64 and preds[key].shape == (5000,)
        assert ((preds[key] > 0) & (preds[key] < 1)).all()
    np.testing.assert_allclose(
        preds["p_click"] * preds["p_conversion_given_click"],
        preds["p_conversion"],
        rtol=1e-12,  # float64 arithmetic on the same arrays
    )


def test_save_load_round_trip_is_identical(small, tmp_path):
    events, model = small
    folder = model.save(tmp_path)
    assert folder == tmp_path / "rates"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rates"]
    loaded = load_rate_model(tmp_path)
    assert isinstance(loaded, RateModel)
    before, after = model.predict(events), loaded.predict(events)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    assert loaded.metrics == json.loads(dumps_json(model.metrics))


def test_oov_new_audience_unseen_category_missing_columns(small):
    events, model = small
    rows = events.head(200)
    changed = rows.assign(audience="brand_new", device="smartwatch", extra="x")
    preds = model.predict(changed)
    assert np.isfinite(preds["p_conversion"]).all()
    # An unseen audience is the OOV audience, whatever its name.
    other = model.predict(rows.assign(audience="another_new", device="smartwatch"))
    np.testing.assert_array_equal(preds["p_click"], other["p_click"])
    missing = model.predict(rows.drop(columns=["device", "page_score", "revenue"]))
    assert all(np.isfinite(v).all() and len(v) == 200 for v in missing.values())
    assert not np.array_equal(missing["p_click"], model.predict(rows)["p_click"])


def test_lost_auctions_get_per_impression_rates(small):
    events, model = small
    lost = events.loc[events["won"] == 0].head(100)
    assert (model.predict(lost)["p_click"] > 0).all()


def test_same_seed_same_model_other_seed_differs(small):
    events, model = small
    again = fit_rate_model(events, seed=1, epochs=3, progress=False)
    other = fit_rate_model(events, seed=2, epochs=3, progress=False)
    rows = events.head(2000)
    np.testing.assert_array_equal(
        model.predict(rows)["p_conversion"], again.predict(rows)["p_conversion"]
    )
    assert not np.array_equal(
        model.predict(rows)["p_conversion"], other.predict(rows)["p_conversion"]
    )


def _tamper_param_shapes(folder):
    """Swap in a consistent-looking config whose recorded shapes are wrong."""
    config = json.loads((folder / "config.json").read_text())
    config["param_shapes"]["head/bias"] = [3]
    (folder / "config.json").write_text(json.dumps(config))


def _tamper_params(folder):
    blob = bytearray((folder / "params.msgpack").read_bytes())
    blob[-1] ^= 0xFF
    (folder / "params.msgpack").write_bytes(bytes(blob))


def _tamper_net(folder):
    """Edit the network shape and re-sign nothing: params no longer fit."""
    config = json.loads((folder / "config.json").read_text())
    config["net"]["embed_dim"] = 4
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda f: (f / "features.json").unlink(), "missing"),
        (lambda f: (f / "config.json").write_text("{not json"), "not JSON"),
        (lambda f: (f / "config.json").write_text("{}"), "malformed"),
        (_tamper_params, "checksum"),
        (_tamper_param_shapes, "shapes"),
        (_tamper_net, "does not match|shapes"),
    ],
)
def test_tampered_model_dir_raises_input_error(small, tmp_path, tamper, message):
    _, model = small
    model.save(tmp_path)
    tamper(tmp_path / "rates")
    with pytest.raises(InputError, match=message):
        load_rate_model(tmp_path)


def test_missing_model_dir_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="no rate model"):
        load_rate_model(tmp_path / "nowhere")


def test_progress_lines_go_to_stderr_only_when_asked(capsys):
    _, events = _market(4, 8, 0)
    fit_rate_model(events, seed=0, epochs=1, progress=False)
    assert capsys.readouterr() == ("", "")
    fit_rate_model(events, seed=0, epochs=1, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "epoch   1" in err and "AUC" in err


def test_generic_logs_audience_only_and_rare_conversions():
    _, events = _market(4, 8, 0)
    only_audience = events[
        ["timestamp", "audience", "bid", "won", "cost", "click", "conversion"]
    ]
    model = fit_rate_model(only_audience, seed=0, epochs=2, progress=False)
    assert np.isfinite(model.predict(only_audience)["p_conversion"]).all()


def test_log_without_clicks_is_an_input_error():
    _, events = _market(4, 8, 0)
    with pytest.raises(InputError, match="click"):
        fit_rate_model(
            events.assign(click=np.int8(0), conversion=np.int8(0)), progress=False
        )


def test_log_without_conversions_trains_a_post_click_prior():
    """A new campaign's log (no conversions yet) trains; the conversion head is
    the prior (tests/test_sparse_conversions.py follows it through the CLI)."""
    _, events = _market(4, 8, 0)
    model = fit_rate_model(
        events.assign(conversion=np.int8(0)), epochs=1, progress=False
    )
    prior = model.calibration["conversion"]
    assert prior.conversions == 0
    assert model.metrics["heads"]["conversion"]["prior"]["rate"] == prior.rate


def validation_mask(timestamps: pd.Series, validation_days: float) -> np.ndarray:
    """(n,) bool: rows in the last ``validation_days`` of the log (see
    :func:`validation_cutoff`)."""
    frame = pd.DataFrame({"timestamp": timestamps})
    cutoff = validation_cutoff(WonChunks([frame], [0]), validation_days)
    return utc_ns(timestamps) > cutoff


def test_short_log_falls_back_to_last_fifth_with_warning():
    ts = pd.Series(pd.date_range("2026-01-05", periods=10, freq="h", tz="UTC"))
    with pytest.warns(UserWarning, match="too short"):
        mask = validation_mask(ts, 2.0)
    assert mask.tolist() == [False] * 8 + [True] * 2
    assert validation_mask(ts, 0.25).sum() == 6  # cutoff 9 h - 6 h: hours 4..9


def test_platt_recovers_a_known_map_and_keeps_order():
    rng = np.random.default_rng(0)
    z = rng.normal(-3.0, 1.0, 200_000)
    y = rng.uniform(size=z.size) < calibration.sigmoid(-3.0 + 0.7 * (z + 3.0) + 0.3)
    fitted = calibration.fit_platt(z, y)
    # 200k rows, ~10k positives: standard errors ~0.01-0.02 on both parameters.
    assert fitted.slope == pytest.approx(0.7, abs=0.05)
    assert fitted.intercept + (fitted.centre + 3.0) * (
        1 - fitted.slope
    ) == pytest.approx(0.3, abs=0.05)
    assert np.all(np.diff(fitted(np.sort(z))) >= 0)
