"""The CLI's notes and refusals as a planner meets them (issue 18, "CLI and notes")."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.allocate.problem import capacity
from optimizer.cli import main
from optimizer.commands.rules import plan_market
from optimizer.market.store import load_market
from optimizer.plan.health import model_health
from optimizer.plan.resolve import resolve
from optimizer.plan.scenario import Scenario

COMMANDS = ("generate", "train", "predict", "plan", "simulate", "report", "whatif")


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def _plan(trained, out, *extra) -> tuple[int, str, dict]:
    code, output = run(
        "plan", "--model", trained["model"], "--days", "7", "--out", out, *extra
    )
    doc = json.loads((out / "plan.json").read_text()) if code == 0 else {}
    return code, output, doc


@pytest.mark.parametrize("command", [*COMMANDS, "frontier"])
def test_every_help_has_an_example(command):
    code, output = run(command, "--help")
    assert code == 0 and "Example:" in output and f"adplan {command} --" in output


def test_frozen_audience_and_binding_group_cap_get_one_note_each(trained, tmp_path):
    names = pd.read_csv(trained["plan"] / "plan.csv")["audience"].tolist()
    settings = pd.DataFrame(
        {
            "audience": names,
            "min_spend": [40.0] + [np.nan] * 5,
            "max_spend": [40.0] + [np.nan] * 5,
            "group": ["a", "a", "b", "b", "b", "b"],
            "currency": "EUR",
        }
    )
    settings.to_csv(tmp_path / "settings.csv", index=False)
    (tmp_path / "caps.toml").write_text("[group_caps]\nb = 60.0\n")
    code, output, doc = _plan(
        trained,
        tmp_path / "plan",
        "--budget",
        "300",
        "--audiences",
        tmp_path / "settings.csv",
        "--scenario",
        tmp_path / "caps.toml",
    )
    assert code == 0, output
    about_frozen = [w for w in doc["warnings"] if w.startswith(f"'{names[0]}'")]
    assert len(about_frozen) == 1 and "frozen at 40.00 EUR" in about_frozen[0]
    group_notes = [w for w in doc["warnings"] if w.startswith("group 'b'")]
    assert len(group_notes) == 1 and "cap of 60.00 EUR" in group_notes[0]
    assert doc["currency"] == "EUR"
    kinds = {c["constraint"] for c in doc["constraint_costs"]}
    assert "group_cap" in kinds
    for c in doc["constraint_costs"]:
        assert set(c) == {
            "constraint",
            "audience",
            "group",
            "limit",
            "unit",
            "per_unit",
            "step",
            "gain_at_step",
            "sentence",
        }
    assert "what the constraints cost:" in output
    assert doc["constraint_costs"][0]["sentence"] in output


def test_target_conversions_says_which_budget_or_refuses(trained, tmp_path):
    code, output, doc = _plan(trained, tmp_path / "p1", "--target-conversions", "5")
    assert code == 0, output
    assert any("smallest that reaches the target of 5" in w for w in doc["warnings"])
    needed = doc["budget"]
    code, output, _ = _plan(
        trained,
        tmp_path / "p2",
        "--target-conversions",
        "5",
        "--budget",
        f"{needed / 2:.2f}",
    )
    assert code == 1 and "needs a budget of about" in output
    assert not (tmp_path / "p2").exists()


def test_implausible_max_bid_is_refused_and_cpm_accepted(trained, tmp_path):
    code, output, _ = _plan(
        trained, tmp_path / "p", "--budget", "300", "--max-bid", "20"
    )
    assert code == 1 and "per impression" in output and "--max-bid-cpm 20" in output
    code, output, doc = _plan(
        trained,
        tmp_path / "p",
        "--budget",
        "300",
        "--max-bid-cpm",
        "20",
        "--currency",
        "USD",
    )
    assert code == 0, output
    assert doc["scenario"]["max_bid"] == pytest.approx(0.02)
    assert doc["currency"] == "USD" and "USD" in output


def test_min_budget_pauses_and_plan_reoptimizes(trained, tmp_path):
    code, output, doc = _plan(
        trained, tmp_path / "p", "--budget", "300", "--min-budget", "60"
    )
    assert code == 0, output
    plan = pd.read_csv(tmp_path / "p" / "plan.csv")
    budget = plan["budget"].to_numpy()
    # Paused, or at least 60, or all that the audience can spend at its max bid
    # (bidding as the plan does: by its rule when it has one).
    market = plan_market(trained["model"], load_market(trained["model"]), doc)
    inputs = resolve(market, Scenario(budget=300.0, days=7.0))
    can = np.asarray(capacity(inputs.problem, inputs.config))
    assert np.all((budget == 0) | (budget >= np.minimum(60, can) - 0.01))
    assert doc["paused"] and budget.sum() >= 299.9
    assert any("paused: the best plan left it less" in w for w in doc["warnings"])


def test_frontier_says_when_spend_saturates(trained, tmp_path):
    code, output = run(
        "frontier",
        "--model",
        trained["model"],
        "--budgets",
        "100:100000000:3",
        "--days",
        "7",
        "--out",
        tmp_path / "f",
    )
    assert code == 0, output
    assert "nan" not in output and "spend saturates" in output


def test_whatif_from_another_folder_keeps_the_plan_settings(
    trained, tmp_path, monkeypatch
):
    doc = json.loads((trained["plan"] / "plan.json").read_text())
    recorded = doc["provenance"]["settings_file"]
    assert recorded.startswith("/")  # stored absolute
    monkeypatch.chdir(tmp_path)
    args = ["whatif", "--model", trained["model"], "--budget-scale", "1.1"]
    code, output = run(*args, "--plan", trained["plan"], "--out", "w")
    assert code == 0, output
    # A plan whose recorded settings file is gone: a clear error, not a silent drop.
    moved = tmp_path / "moved_plan"
    shutil.copytree(trained["plan"], moved)
    doc["provenance"]["settings_file"] = "gone/audiences.csv"
    (moved / "plan.json").write_text(json.dumps(doc))
    code, output = run(*args, "--plan", moved, "--out", "w2")
    assert code == 1 and "gone/audiences.csv" in output and "--audiences" in output


def test_model_health_warns_against_baselines():
    def metrics(model, lr, avg):
        return {
            "heads": {
                "conversion": {
                    "model": {"auc": model},
                    "baselines": {
                        "logistic_regression": {"auc": lr},
                        "audience_average": {"auc": avg},
                    },
                }
            }
        }

    assert model_health(metrics(0.70, 0.68, 0.60)) == []
    (note,) = model_health(metrics(0.6757, 0.6788, 0.60))
    assert "0.676" in note and "logistic regression (AUC 0.679)" in note
    (note,) = model_health(metrics(0.389, 0.6, 0.6))
    assert "worse than chance" in note
