"""What adplan writes is safe to open and what it reads is what it wrote (issue #20,
points 3, 5, 6, 7, 8): formula neutralization, totals apart from audience names,
unique what-if files, plans tied to their model, checksummed model folders.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import jax
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.io.files import folder_checksums, neutralize, write_csv
from reports.inputs import read_inputs
from reports.sections.common import TOTAL, sim_value

EVIL = '=HYPERLINK("http://x.example","click")'


def run(*args) -> tuple[int, str]:
    # The simulator kernel is not yet strict about rank promotion (conftest).
    with jax.numpy_rank_promotion("allow"):
        result = CliRunner().invoke(main, ["-q", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exc_info
    )
    return result.exit_code, result.output


def _reseal(folder: Path) -> str:
    """Record ``folder``'s files in model.json as ``adplan train`` does; new id."""
    info = json.loads((folder / "model.json").read_text())
    info["sha256"] = {
        k: v for k, v in folder_checksums(folder).items() if k != "model.json"
    }
    info["model_id"] = hashlib.sha256(
        (folder / "market.json").read_bytes()
    ).hexdigest()[:12]
    (folder / "model.json").write_text(json.dumps(info))
    return info["model_id"]


def _copy_model(trained, dst: Path, rename: dict[str, str] | None = None) -> Path:
    """A copy of the trained model, audiences renamed (or the fit nudged), resealed."""
    shutil.copytree(trained["model"], dst)
    text = (dst / "market.json").read_text()
    info = json.loads((dst / "model.json").read_text())
    if rename:
        for old, new in rename.items():
            text = text.replace(json.dumps(old), json.dumps(new))
        info["audiences"] = [rename.get(n, n) for n in info["audiences"]]
    else:
        data = json.loads(text)
        data["current_bid"][0] *= 1.001
        text = json.dumps(data)
    (dst / "market.json").write_text(text)
    (dst / "model.json").write_text(json.dumps(info))
    if rename:  # the rule sample renamed too, but for the first audience: it has
        # no rows then and bids flat
        rows = pd.read_parquet(dst / "rule_rows.parquet")
        first = info["audiences"][0]
        rows["audience"] = rows["audience"].replace(
            {k: v for k, v in rename.items() if v != first}
        )
        rows.to_parquet(dst / "rule_rows.parquet", index=False)
    _reseal(dst)
    return dst


@pytest.fixture(scope="module")
def hostile(trained, tmp_path_factory):
    """A model whose audiences are called TOTAL and a spreadsheet formula; planned
    and simulated by the CLI."""
    root = tmp_path_factory.mktemp("hostile")
    names = json.loads((trained["model"] / "model.json").read_text())["audiences"]
    model = _copy_model(trained, root / "model", {names[0]: "TOTAL", names[1]: EVIL})
    code, output = run("plan", "--model", model, "--budget", "300", "--days", "7",
                       "--out", root / "plan")  # fmt: skip
    assert code == 0, output
    code, output = run("simulate", "--model", model, "--plan", root / "plan",
                       "--runs", "4", "--out", root / "sim")  # fmt: skip
    assert code == 0, output
    return {"model": model, "plan": root / "plan", "sim": root / "sim", "root": root}


def test_write_csv_neutralizes_text_not_numbers(tmp_path):
    cells = [EVIL, "+1", "-x", "@SUM(A1)", "\tx", "plain", "a=b"]
    frame = pd.DataFrame({"audience": cells, "bid": [-1.5, 2, -0.25, 0, 1, 1, 1]})
    write_csv(tmp_path / "x.csv", frame)
    back = pd.read_csv(tmp_path / "x.csv", keep_default_na=False)
    assert list(back["audience"]) == [
        "'" + EVIL, "'+1", "'-x", "'@SUM(A1)", "'\tx", "plain", "a=b",
    ]  # fmt: skip
    assert list(back["bid"]) == [-1.5, 2.0, -0.25, 0.0, 1.0, 1.0, 1.0]
    assert frame["audience"].iloc[0] == EVIL  # the caller's frame is untouched
    assert neutralize("\rx") == "'\rx" and neutralize(-3.0) == -3.0


def test_plan_and_simulation_csvs_are_formula_safe_json_exact(hostile):
    plan_csv = pd.read_csv(hostile["plan"] / "plan.csv", keep_default_na=False)
    plan_json = json.loads((hostile["plan"] / "plan.json").read_text())
    assert "'" + EVIL in set(plan_csv["audience"]) and EVIL not in set(
        plan_csv["audience"]
    )
    assert EVIL in {r["audience"] for r in plan_json["audiences"]}
    for name in ("summary.csv", "paths.csv"):
        text = (hostile["sim"] / name).read_text()
        assert "\n=" not in text and ",=" not in text and "'=HYPERLINK" in text
    rows = json.loads((hostile["sim"] / "summary.json").read_text())["rows"]
    assert EVIL in {r["audience"] for r in rows}


def test_an_audience_called_total_keeps_its_own_rows(hostile):
    summary = pd.read_csv(
        hostile["sim"] / "summary.csv",
        dtype={"audience": str, "row": str},
        keep_default_na=False,
        na_values=[""],
    )
    named = summary[summary["audience"] == "TOTAL"]
    assert sorted(set(named["row"])) == ["audience", "total"]
    assert (named["row"] == "total").sum() == 7  # one per metric
    spend = summary[summary["metric"] == "spend"].set_index("row")
    audience_total = summary[
        (summary["row"] == "audience") & (summary["metric"] == "spend")
    ]
    assert spend.loc["total", "mean"] == pytest.approx(audience_total["mean"].sum())
    inputs = read_inputs(
        hostile["model"], hostile["plan"], simulation_dir=hostile["sim"]
    )
    own = named[(named["row"] == "audience") & (named["metric"] == "spend")][
        "mean"
    ].iloc[0]
    assert sim_value(
        inputs.simulation.summary, "TOTAL", "spend", "mean"
    ) == pytest.approx(own)
    assert sim_value(
        inputs.simulation.summary, TOTAL, "spend", "mean"
    ) == pytest.approx(spend.loc["total", "mean"])
    code, output = run("report", "--model", hostile["model"], "--plan", hostile["plan"],
                       "--simulation", hostile["sim"], "--out", hostile["root"] / "r.html")  # fmt: skip
    assert code == 0, output


def test_whatif_files_are_unique_and_named_in_the_comparison(trained, tmp_path):
    files = []
    for i, (name, scale) in enumerate(
        [("a/b", 0.8), ("a_b", 1.0), ("A_B", 1.2), (EVIL, 0.9)]
    ):
        path = tmp_path / f"s{i}.toml"
        path.write_text(f"name = {json.dumps(name)}\nbudget_scale = {scale}\n")
        files += ["--scenario", path]
    out = tmp_path / "w"
    code, output = run("whatif", "--model", trained["model"], "--plan", trained["plan"],
                       *files, "--out", out)  # fmt: skip
    assert code == 0, output
    table = pd.read_csv(out / "comparison.csv", keep_default_na=False)
    reopt = table[table["variant"] == "reoptimized"]
    assert len(set(reopt["plan_file"])) == 4 == len(list((out / "plans").iterdir()))
    for _, row in reopt.iterrows():
        plan = pd.read_csv(out / row["plan_file"])
        assert plan["budget"].sum() == pytest.approx(row["budget"], abs=0.05)
    assert "'" + EVIL in set(table["scenario"])
    mapping = json.loads((out / "comparison.json").read_text())["plan_files"]
    assert EVIL in mapping and len(set(mapping.values())) == 4


def test_a_plan_from_another_model_is_refused_alike(trained, tmp_path):
    other = _copy_model(trained, tmp_path / "other")
    messages = []
    for args in (
        ["simulate", "--runs", "2", "--out", tmp_path / "s"],
        ["whatif", "--budget-scale", "1.1", "--out", tmp_path / "w"],
        ["report", "--out", tmp_path / "r.html"],
    ):
        code, output = run(
            args[0], "--model", other, "--plan", trained["plan"], *args[1:]
        )
        assert code == 1, output
        messages.append(output.strip())
    assert "made with another model" in messages[0]
    assert len(set(messages)) == 1 and not (tmp_path / "r.html").exists()


def test_a_plan_with_unknown_audiences_is_refused_by_the_report(trained, tmp_path):
    names = json.loads((trained["model"] / "model.json").read_text())["audiences"]
    other = _copy_model(trained, tmp_path / "other", {names[0]: "renamed"})
    code, output = run("report", "--model", other, "--plan", trained["plan"],
                       "--out", tmp_path / "r.html")  # fmt: skip
    assert code == 1 and "made with another model" in output and names[0] in output


def _plan(model: Path, out: Path) -> tuple[int, str]:
    return run("plan", "--model", model, "--budget", "300", "--days", "7", "--out", out)


@pytest.mark.parametrize("legacy", [False, True])
def test_a_hand_edited_market_json_is_refused(trained, tmp_path, legacy):
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    if legacy:  # folders from before model.json listed every file
        info = json.loads((model / "model.json").read_text())
        del info["sha256"]
        (model / "model.json").write_text(json.dumps(info))
    data = json.loads((model / "market.json").read_text())
    data["params"]["volume_per_day"][0] *= 10
    (model / "market.json").write_text(json.dumps(data))
    code, output = _plan(model, tmp_path / "plan")
    assert code == 1, output
    assert "market.json: checksum does not match model.json" in output
    assert "Retrain with 'adplan train'" in output and not (tmp_path / "plan").exists()


def test_truncated_network_weights_fail_every_command(trained, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    weights = model / "rates" / "params.msgpack"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 3])
    code, output = _plan(model, tmp_path / "plan")
    assert code == 1 and "params.msgpack: checksum does not match" in output, output
    code, output = run("report", "--model", model, "--plan", trained["plan"],
                       "--out", tmp_path / "r.html")  # fmt: skip
    assert code == 1 and "params.msgpack" in output
    code, output = run("predict", "--model", model, "--events",
                       trained["market"] / "events.csv", "--out", tmp_path / "p.csv")  # fmt: skip
    assert code == 1 and "params.msgpack" in output


def test_rerunning_report_replaces_its_file(trained, tmp_path):
    """`make demo` twice: the second report overwrites the first (it was refused as
    'a part of the path is a file')."""
    out = tmp_path / "report.html"
    args = ["report", "--model", str(trained["model"]), "--plan", str(trained["plan"])]
    for _ in range(2):
        result = CliRunner().invoke(main, [*args, "--out", str(out)])
        assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    inside = tmp_path / "report.html" / "x.html"  # a file where a folder must be
    result = CliRunner().invoke(main, [*args, "--out", str(inside)])
    assert result.exit_code != 0 and "Traceback" not in result.output
