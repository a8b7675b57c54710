"""HTML report: structure, escaping, offline-ness, inputs, and a real Chromium run.

Inputs are small synthetic result folders written here in the shapes that
``adplan train / plan / simulate / whatif / frontier`` write; the report only
reads them, so the numbers need not come from a real model.
"""

from __future__ import annotations

import doctest
import json
import re
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optimizer.errors import InputError
from optimizer.io.columns import COMPARISON_COLUMNS
from optimizer.market.price_rates import price_rate_summary
from reports import charts, formatting, sections, text, write_report

XSS = "<script>alert(1)</script>"
CHROMIUM = Path("/usr/bin/chromium")
SIM_METRICS = ("spend", "impressions", "clicks", "conversions", "value", "cpa", "roas")


# --------------------------------------------------------------------------
# Synthetic result folders.
# --------------------------------------------------------------------------


def _head_metrics(rng: np.random.Generator, base_rate: float) -> dict:
    """One validation-metrics block (model or baseline) with 10 calibration bins."""
    predicted = np.sort(rng.uniform(0.2, 2.5, 10)) * base_rate
    observed = predicted * rng.uniform(0.8, 1.2, 10)
    return {
        "auc": float(rng.uniform(0.58, 0.7)),
        "log_loss": float(rng.uniform(0.08, 0.09)),
        "ece": float(rng.uniform(0.001, 0.003)),
        "calibration": [
            {"mean_predicted": float(p), "observed_rate": float(o), "count": 100}
            for p, o in zip(predicted, observed, strict=True)
        ],
    }


def _landscape(rng: np.random.Generator, name: str) -> dict:
    bids = np.linspace(0.003, 0.013, 10)
    fitted = 1.0 - np.exp(-bids / 0.006)
    return {
        "audience": name,
        "auctions": 40000,
        "won": 18000,
        "family": "lognormal",
        "max_abs_win_rate_error": 0.015,
        "naive_max_abs_win_rate_error": 0.3,
        "win_rate_by_bid": [
            {
                "bid": float(b),
                "auctions": 4000,
                "empirical_win_rate": float(f + rng.normal(0, 0.01)),
                "fitted_win_rate": float(f),
                "naive_win_rate": float(min(1.0, 1.5 * f)),
            }
            for b, f in zip(bids, fitted, strict=True)
        ],
    }


def write_model(folder: Path, names: list[str], seed: int = 0) -> None:
    """model.json and metrics.json as written by ``adplan train``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    versions = {"adplan": "0.1.0", "jax": "0.10.2", "numpy": "2.4.6"}
    model = {
        "format": "adplan-model/1",
        "model_id": "abc123def456",
        "created": "2026-11-25T18:08:06+00:00",
        "events_file": "/data/events.csv",
        "events_sha256": "0" * 64,
        "rows": 606311,
        "audiences": names,
        "auction_type": "second_price",
        "seed": 0,
        "versions": versions,
    }
    heads = {
        head: {
            "model": _head_metrics(rng, rate),
            "model_uncalibrated": _head_metrics(rng, rate),
            "baselines": {
                "audience_average": _head_metrics(rng, rate),
                "logistic_regression": _head_metrics(rng, rate),
            },
        }
        for head, rate in (("click", 0.017), ("conversion", 0.0017))
    }
    metrics = {
        "rates": {
            "heads": heads,
            "rows": {"train": 261294, "validation": 43322},
            "epochs_run": 9,
            "best_epoch": 7,
        },
        "market": {
            "auction_type": "second_price",
            "days_in_log": 14,
            "landscapes": [_landscape(rng, n) for n in names],
            "rate_spread": {
                "click": {"slope": 1.02, "sd": 0.04, "events": 9000},
                "conversion": {"slope": 1.35, "sd": 0.12, "events": 240},
            },
        },
    }
    (folder / "model.json").write_text(json.dumps(model))
    (folder / "metrics.json").write_text(json.dumps(metrics))


def _plan_row(rng: np.random.Generator, name: str, days: float) -> dict:
    budget = round(float(rng.uniform(10, 600)), 2)
    conversions = budget / rng.uniform(3, 9)
    value = conversions * rng.uniform(20, 140)
    return {
        "audience": name,
        "budget": budget,
        "daily_budget": round(budget / days, 2),
        "bid": 0.02,
        "expected_spend": budget,
        "expected_impressions": budget * 90,
        "expected_clicks": budget * 1.8,
        "expected_conversions": conversions,
        "expected_value": value,
        "cpa": budget / conversions,
        "roas": value / budget,
        "marginal_cpa": 9.38,
        "current_spend": round(float(rng.uniform(0, 300)), 2),
        "current_conversions": float(rng.uniform(1, 40)),
        "bid_cpm": 20.0,
    }


def _price_fit(names: list[str]) -> dict:
    """market.json's price-rate fit: slope 0.5 +- 0.1 for every audience, pooled."""
    fit = {"slope": 0.5, "sd": 0.1, "reference_price": 0.004, "events": 700}
    return {
        "estimated": True,
        "pooled_slope": 0.5,
        "spread": 0.0,
        "audiences": {n: {**fit, "doubling_factor": 2**0.5} for n in names},
    }


def write_plan(folder: Path, names: list[str], seed: int = 0) -> dict:
    """plan.json, plan.csv and curves.json as written by ``adplan plan``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    days = 14.0
    rows = [_plan_row(rng, n, days) for n in names]
    frame = pd.DataFrame(rows)
    totals = {
        "budget": float(frame["budget"].sum()),
        "expected_spend": float(frame["expected_spend"].sum()),
        "expected_impressions": float(frame["expected_impressions"].sum()),
        "expected_clicks": float(frame["expected_clicks"].sum()),
        "expected_conversions": float(frame["expected_conversions"].sum()),
        "expected_value": float(frame["expected_value"].sum()),
        "current_spend": float(frame["current_spend"].sum()),
        "current_conversions": float(frame["current_conversions"].sum()),
    }
    totals["cpa"] = totals["expected_spend"] / totals["expected_conversions"]
    totals["roas"] = totals["expected_value"] / totals["expected_spend"]
    totals["current_cpa"] = totals["current_spend"] / totals["current_conversions"]
    plan = {
        "format": "adplan-plan/1",
        "created": "2026-11-25T18:08:57+00:00",
        "objective": "conversions",
        "auction_type": "second_price",
        "days": days,
        "budget": totals["budget"],
        "budget_used": totals["budget"],
        "totals": totals,
        "uplift_vs_current": totals["expected_conversions"]
        / totals["current_conversions"]
        - 1.0,
        "audiences": rows,
        "certificate": {
            "dual_price": 0.1066,
            "marginal_cpa_at_optimum": 9.38,
            "kkt_residual": 1e-15,
            "duality_gap": 0.0,
            "relative_gap": 0.0,
        },
        "sensitivities": {
            "d_objective_d_budget": 0.1066,
            "d_objective_d_price_level": -426.6,
        },
        "warnings": [f"'{names[0]}': planned bid is well above the bids in the log."],
        "price_rates": price_rate_summary(_price_fit(names), names),
        "scenario": {
            "name": "base",
            "budget": totals["budget"],
            "days": days,
            "rate_shift": {},
            "remove_audiences": [],
        },
        "provenance": {
            "model_id": "abc123def456",
            "events_sha256": "0" * 64,
            "settings_file": "/data/audiences.csv",
            "settings_sha256": "1" * 64,
            "scenario_file": None,
            "scenario_sha256": None,
            "seed": 0,
            "versions": {"adplan": "0.1.0", "jax": "0.10.2", "numpy": "2.4.6"},
        },
    }
    spend = np.linspace(0, 1000, 40)
    curves = {
        r["audience"]: {
            "bid": list(np.linspace(0.001, 0.05, 40)),
            "spend": list(spend),
            "conversions": list(r["expected_conversions"] * np.log1p(spend / 200)),
            "value": list(spend * 3),
        }
        for r in rows
    }
    (folder / "plan.json").write_text(json.dumps(plan))
    frame.to_csv(folder / "plan.csv", index=False)
    (folder / "curves.json").write_text(json.dumps(curves))
    return plan


def _summary(plan: dict, scale: float) -> pd.DataFrame:
    """Summary rows (audience, metric, mean, p10, p50, p90) around the plan."""
    records = [*plan["audiences"], {"audience": "TOTAL", **plan["totals"]}]
    rows = []
    for rec in records:
        for metric in SIM_METRICS:
            mean = scale * float(rec.get(f"expected_{metric}", rec.get(metric, 1.0)))
            rows.append((rec["audience"], metric, mean, 0.8 * mean, mean, 1.2 * mean))
    return pd.DataFrame(
        rows, columns=["audience", "metric", "mean", "p10", "p50", "p90"]
    )


def write_simulation(folder: Path, plan: dict, truth: bool = True) -> None:
    """summary.csv, paths.csv (TOTAL only) and optionally truth_summary.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    _summary(plan, 1.0).to_csv(folder / "summary.csv", index=False)
    if truth:
        _summary(plan, 0.9).to_csv(folder / "truth_summary.csv", index=False)
    hours = np.arange(1, int(24 * plan["days"]) + 1)
    totals = plan["totals"]
    frames = [
        pd.DataFrame(
            {
                "run": run,
                "hour": hours,
                "audience": "TOTAL",
                "cumulative_spend": totals["expected_spend"] * hours / hours[-1],
                "cumulative_conversions": totals["expected_conversions"]
                * (0.9 + 0.02 * run)
                * hours
                / hours[-1],
            }
        )
        for run in range(10)
    ]
    pd.concat(frames).to_csv(folder / "paths.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"runs": 200}))


def write_whatif(folder: Path, plan: dict, scenarios: list[str]) -> None:
    """comparison.csv with both variants for each scenario."""
    folder.mkdir(parents=True, exist_ok=True)
    totals = plan["totals"]
    rows = []
    for i, name in enumerate(scenarios):
        for variant, factor in (("base_plan", 0.85 - 0.05 * i), ("reoptimized", 0.93)):
            conv = totals["expected_conversions"] * factor
            rows.append(
                (
                    name,
                    variant,
                    totals["budget"],
                    totals["expected_spend"],
                    conv,
                    totals["expected_value"] * factor,
                    totals["expected_spend"] / conv,
                    10.0,
                )
            )
    pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS)).to_csv(
        folder / "comparison.csv", index=False
    )


def write_frontier(folder: Path, plan: dict) -> None:
    """frontier.csv (budgets around the plan) and frontier.json."""
    folder.mkdir(parents=True, exist_ok=True)
    budget = np.linspace(0.25, 2.0, 20) * plan["budget"]
    conversions = (
        plan["totals"]["expected_conversions"]
        * np.log1p(budget / plan["budget"])
        / np.log(2)
    )
    frame = pd.DataFrame(
        {
            "budget": budget,
            "expected_spend": budget,
            "expected_conversions": conversions,
            "expected_value": conversions * 60,
            "cpa": budget / conversions,
            "marginal_cpa": 2
            * (plan["budget"] + budget)
            / plan["totals"]["expected_conversions"],
        }
    )
    frame.to_csv(folder / "frontier.csv", index=False)
    # Per-audience splits: the plan's shares scaled to each budget.
    names = [r["audience"] for r in plan["audiences"]]
    share = np.array([r["budget"] for r in plan["audiences"]]) / plan["budget"]
    conv = np.array([r["expected_conversions"] for r in plan["audiences"]])
    ratio = conversions / plan["totals"]["expected_conversions"]
    splits = {
        "budget": np.outer(budget, share).round(3).tolist(),
        "expected_spend": np.outer(budget, share).round(3).tolist(),
        "expected_conversions": np.outer(ratio, conv).round(3).tolist(),
    }
    (folder / "frontier.json").write_text(
        json.dumps(
            {"chosen_budget": plan["budget"], "audiences": names, "splits": splits}
        )
    )


def build_folders(root: Path, names: list[str], scenarios: list[str]) -> dict:
    """Every result folder for ``names``; returns write_report keyword arguments."""
    plan = write_plan(root / "plan", names)
    write_model(root / "model", names)
    write_simulation(root / "sim", plan)
    write_whatif(root / "whatif", plan, scenarios)
    write_frontier(root / "frontier", plan)
    return {
        "model_dir": root / "model",
        "plan_dir": root / "plan",
        "simulation_dir": root / "sim",
        "whatif_dir": root / "whatif",
        "frontier_dir": root / "frontier",
    }


# --------------------------------------------------------------------------
# Parsing helpers.
# --------------------------------------------------------------------------


class PageParser(HTMLParser):
    """Collects the title, every tag's attributes and the plan table's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.plan_rows: dict[str, list[list[str]]] = {"tbody": [], "tfoot": []}
        self._stack: list[str] = []
        self._part: str | None = None
        self._in_plan = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table" and attrs.get("id") == "plan-table":
            self._in_plan = True
        elif self._in_plan and tag in ("tbody", "tfoot"):
            self._part = tag
        elif self._in_plan and self._part and tag == "tr":
            self.plan_rows[self._part].append([])
        elif self._in_plan and self._part and tag == "td":
            self._cell = []
        self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_plan = False
        elif tag in ("tbody", "tfoot"):
            self._part = None
        elif tag == "td" and self._cell is not None:
            self.plan_rows[self._part][-1].append("".join(self._cell).strip())
            self._cell = None
        if self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._stack and self._stack[-1] == "title":
            self.title += data
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


def external_references(html: str, parser: PageParser) -> list[str]:
    """Anything that could make the page load a resource from elsewhere."""
    found = re.findall(r"https?://\S{0,60}", html)
    found += re.findall(r"url\((?!#)[^)]*\)|@import", html)
    for _, attrs in parser.tags:
        for name in ("src", "href", "xlink:href", "action", "poster", "srcset"):
            value = attrs.get(name) or ""
            if value and not value.startswith("#"):
                found.append(f"{name}={value}")
    found += [
        tag for tag, _ in parser.tags if tag in ("link", "iframe", "img", "object")
    ]
    return found


# --------------------------------------------------------------------------
# Fixtures.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> tuple[Path, dict, str]:
    """A report with every section at 50 audiences (the size target)."""
    root = tmp_path_factory.mktemp("full")
    names = [f"audience_{i:02d}_25-34" for i in range(50)]
    folders = build_folders(root, names, ["price_up_10", "drop_small"])
    out = write_report(out_file=root / "out" / "report.html", **folders)
    plan = json.loads((root / "plan" / "plan.json").read_text())
    return out, plan, out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> tuple[Path, str]:
    """Six audiences, one named like a script; hostile scenario and warning text."""
    root = tmp_path_factory.mktemp("hostile")
    names = [XSS, "a&b \"quoted\" 'x'", "$5 deals", "NA", "007", "plain"]
    folders = build_folders(root, names, [f"scenario {XSS}", "base"])
    out = write_report(out_file=root / "report.html", **folders)
    return out, out.read_text(encoding="utf-8")


# --------------------------------------------------------------------------
# Structural tests.
# --------------------------------------------------------------------------


def test_title_and_one_row_per_audience(full_report):
    _, plan, html = full_report
    page = parse(html)
    assert page.title == text.TITLE
    rows = page.plan_rows["tbody"]
    assert len(rows) == len(plan["audiences"])
    assert sorted(r[0] for r in rows) == sorted(
        a["audience"] for a in plan["audiences"]
    )
    budgets = [float(r[1].replace(",", "")) for r in rows]
    assert budgets == sorted(budgets, reverse=True), "largest budget first"


def test_totals_row_matches_plan_json(full_report):
    _, plan, html = full_report
    (total,) = parse(html).plan_rows["tfoot"]
    totals = plan["totals"]
    keys = [c[0] for c in text.COLUMNS]
    assert total[0] == text.TOTAL_ROW
    assert total[keys.index("budget")] == formatting.decimal(totals["budget"])
    assert total[keys.index("expected_conversions")] == formatting.decimal(
        totals["expected_conversions"], 1
    )
    assert total[keys.index("expected_value")] == formatting.decimal(
        totals["expected_value"], 0
    )
    assert total[keys.index("cpa")] == formatting.decimal(totals["cpa"])
    # Budget cells are plan.json values rounded to cents: they add up exactly.
    summed = sum(float(r[1].replace(",", "")) for r in parse(html).plan_rows["tbody"])
    assert summed == pytest.approx(totals["budget"], abs=0.005 * len(plan["audiences"]))


def test_headline_shows_budget_range_and_gap(full_report):
    _, plan, html = full_report
    assert formatting.decimal(plan["budget"]) in html
    assert "P10–P90" in html
    assert "Proven optimal" in html
    assert formatting.percent(plan["uplift_vs_current"], sign=True) in html


def test_model_health_states_the_fitted_spread(full_report):
    _, _, html = full_report
    assert "more spread out between impressions" in html
    assert "spread x1.35, give or take 0.12" in html
    same = {"rate_spread": {"conversion": {"slope": 0.95, "sd": 0.1, "events": 80}}}
    assert "as the network predicted" in sections.model._spread_text(same)
    narrow = {"rate_spread": {"conversion": {"slope": 0.6, "sd": 0.1, "events": 80}}}
    assert "less spread out" in sections.model._spread_text(narrow)
    assert sections.model._spread_text({}) is None  # a model trained before the fit


def test_landscape_table_states_how_rates_rise_with_price(full_report):
    _, plan, html = full_report
    assert text.LANDSCAPE_HEAD[-1] in html
    # slope 0.5 +- 0.1: 2^0.5 = 1.41x, P10-P90 2^(0.5 -+ 1.28 x 0.1), every audience
    assert html.count(">1.41x (1.29-1.55x)<") == len(plan["audiences"])
    assert "impressions that cost twice as much convert 1.41x as often" in html
    assert "every audience uses that" in html  # spread 0: one pooled slope


def test_landscape_table_of_a_plan_without_price_rates(tmp_path):
    """A plan.json written before price rates: the column says n/a, the note why."""
    folders = build_folders(tmp_path, ["a", "b"], ["base"])
    path = tmp_path / "plan" / "plan.json"
    plan = json.loads(path.read_text())
    del plan["price_rates"]
    path.write_text(json.dumps(plan))
    html = write_report(out_file=tmp_path / "report.html", **folders).read_text()
    assert text.PRICE_RATE_OLD_PLAN in html
    assert ">1.41x" not in html


def test_no_external_urls_anywhere(full_report):
    _, _, html = full_report
    assert external_references(html, parse(html)) == []


def test_every_chart_is_inline_svg_under_size_budget(full_report):
    path, _, html = full_report
    page = parse(html)
    classes = [a.get("class", "") for tag, a in page.tags if tag == "svg"]
    for name in (
        "spend",
        "curves",
        "marginal",
        "frontier",
        "fan",
        "intervals",
        "whatif",
        "calibration",
        "landscapes",
    ):
        assert f"chart-{name}" in " ".join(classes), name
    assert path.stat().st_size < 5 * 1024 * 1024
    ids = [a["id"] for _, a in page.tags if a.get("id")]
    assert len(ids) == len(set(ids)), "ids repeat across inline SVGs"


def test_user_text_is_escaped(hostile_report):
    _, html = hostile_report
    page = parse(html)
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    scripts = [a for tag, a in page.tags if tag == "script"]
    assert scripts == [{"type": "application/json", "id": "slider-data"}, {}], (
        "only the slider's data and the page's own script"
    )
    names = [r[0] for r in page.plan_rows["tbody"]]
    assert XSS in names and "$5 deals" in names and "a&b \"quoted\" 'x'" in names
    # Names that CSV readers like to coerce ("NA" -> NaN, "007" -> 7) still match.
    sim_column = [k for k, _, _ in text.COLUMNS].index("sim_range")
    ranges = [r[sim_column] for r in page.plan_rows["tbody"]]
    assert all(re.fullmatch(r"[\d.,]+ – [\d.,]+", cell) for cell in ranges), ranges
    assert external_references(html, page) == []


def test_optional_sections_say_how_to_get_them(tmp_path):
    names = ["a", "b", "c"]
    write_model(tmp_path / "model", names)
    write_plan(tmp_path / "plan", names)
    (tmp_path / "plan" / "curves.json").write_text("{}")
    out = write_report(tmp_path / "model", tmp_path / "plan", tmp_path / "r.html")
    html = out.read_text(encoding="utf-8")
    for message in (
        text.SIM_MISSING,
        text.WHATIF_MISSING,
        text.FRONTIER_MISSING,
        text.CURVES_MISSING,
    ):
        assert message in html
    assert text.CARD_NO_RANGE in html
    sim_label = {k: label for k, label, _ in text.COLUMNS}["sim_range"]
    assert sim_label not in html
    assert len(parse(html).plan_rows["tbody"]) == 3


def test_simulation_without_paths_or_truth(tmp_path):
    names = ["a", "b"]
    write_model(tmp_path / "model", names)
    plan = write_plan(tmp_path / "plan", names)
    write_simulation(tmp_path / "sim", plan, truth=False)
    (tmp_path / "sim" / "paths.csv").unlink()
    out = write_report(
        tmp_path / "model", tmp_path / "plan", tmp_path / "r.html", tmp_path / "sim"
    )
    html = out.read_text(encoding="utf-8")
    assert text.SIM_NO_PATHS in html
    assert text.SIM_TRUTH not in html


def test_missing_plan_json_raises_input_error(tmp_path):
    write_model(tmp_path / "model", ["a"])
    (tmp_path / "plan").mkdir()
    with pytest.raises(InputError, match=r"plan\.json not found.*adplan plan"):
        write_report(tmp_path / "model", tmp_path / "plan", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda root: (root / "plan" / "plan.json").write_text("{not json"),
            "not valid JSON",
        ),
        (
            lambda root: (root / "plan" / "plan.json").write_text("{}"),
            "lacks 'objective'",
        ),
        (
            lambda root: (root / "model" / "metrics.json").write_text('{"rates": {}}'),
            "lacks 'market'",
        ),
        (
            lambda root: (root / "whatif" / "comparison.csv").write_text(
                "scenario\nx\n"
            ),
            "lacks column",
        ),
        (lambda root: shutil.rmtree(root / "sim"), "is not a folder"),
        (lambda root: (root / "plan" / "curves.json").write_text("[]"), "curves file"),
        (lambda root: (root / "model" / "model.json").unlink(), "model.json not found"),
    ],
)
def test_garbled_inputs_raise_input_error(tmp_path, damage, message):
    folders = build_folders(tmp_path, ["a", "b"], ["s"])
    damage(tmp_path)
    with pytest.raises(InputError, match=message):
        write_report(out_file=tmp_path / "r.html", **folders)


def test_doctests_of_formatters_and_charts():
    for module in (formatting, charts, sections.slider):
        assert doctest.testmod(module).failed == 0


# --------------------------------------------------------------------------
# Headless Chromium.
# --------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Any host lookup fails, so a stray request could never reach the network.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
)


def run_chromium(page: Path, workdir: Path, *args: str, hash_: str = "") -> dict:
    """Load ``page`` in a fresh profile; return its log lines and page requests.

    Page requests are read from Chromium's NetLog: every URL request whose
    isolation key is the file:// page. Browser housekeeping (updates, time sync)
    has another key and is not counted.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    netlog = workdir / "net.json"
    result = subprocess.run(
        [
            str(CHROMIUM),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={workdir / 'profile'}",
            f"--log-net-log={netlog}",
            *args,
            page.resolve().as_uri() + hash_,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return {
        "stdout": result.stdout,
        "console": [x for x in result.stderr.splitlines() if ":CONSOLE" in x],
        "requests": page_requests(netlog),
    }


def page_requests(netlog: Path) -> list[str]:
    """URLs the page itself asked for (not file: or data: URLs)."""
    log = json.loads(netlog.read_text(encoding="utf-8"))
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start
        and str(event["params"].get("network_isolation_key", "")).startswith("file://")
        and not event["params"]["url"].startswith(("file:", "data:"))
    ]


browser = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


@pytest.mark.browser
@browser
def test_detectors_catch_errors_and_requests(tmp_path):
    """Control: the checks below do see a console error and an outside request."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><img src="http://example.org/a.png">'
        "<script>undefinedFunction();</script></body></html>"
    )
    seen = run_chromium(page, tmp_path / "run", "--dump-dom")
    assert any("Uncaught" in line for line in seen["console"])
    assert seen["requests"] == ["http://example.org/a.png"]


@pytest.mark.browser
@browser
def test_report_in_headless_chromium(hostile_report, tmp_path):
    path, _ = hostile_report
    loaded = run_chromium(path, tmp_path / "dom", "--dump-dom")
    dom = parse(loaded["stdout"])
    assert loaded["console"] == []
    assert loaded["requests"] == []
    tables = [
        a for tag, a in dom.tags if tag == "table" and a.get("id") == "plan-table"
    ]
    assert tables and tables[0].get("data-sortable") == "ready", "sorter script ran"
    assert len(dom.plan_rows["tbody"]) == 6
    assert sum(tag == "svg" for tag, _ in dom.tags) >= 9
    assert sum(tag == "script" for tag, _ in dom.tags) == 2, "no injected script"
    assert external_references(loaded["stdout"], dom) == []

    shot = tmp_path / "report.png"
    taken = run_chromium(
        path, tmp_path / "shot", f"--screenshot={shot}", "--window-size=1400,3000"
    )
    assert taken["console"] == [] and taken["requests"] == []
    assert shot.stat().st_size > 10_000


def _slider_values(dom: str) -> dict[str, str]:
    """The slider's cards as shown, keyed by card."""
    return dict(re.findall(r'id="slider-([a-z]+)">([^<]*)<', dom))


def _slider_rows(dom: str) -> list[list[str]]:
    """Cells of the slider's per-audience table, as shown."""
    body = re.search(r'<tbody id="slider-rows">(.*?)</tbody>', dom, re.DOTALL)
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.DOTALL)
    return [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows]


@pytest.mark.browser
@browser
def test_budget_slider_in_headless_chromium(hostile_report, tmp_path):
    """Moving the slider (a scripted input event) shows another frontier budget."""
    path, _ = hostile_report
    frontier = pd.read_csv(path.parent / "frontier" / "frontier.csv")
    loaded = run_chromium(path, tmp_path / "start", "--dump-dom")
    start = _slider_values(loaded["stdout"])
    assert loaded["console"] == [] and loaded["requests"] == []
    assert 'data-ready="ready"' in loaded["stdout"]

    moved_page = tmp_path / "moved.html"
    mover = (
        '<script>window.addEventListener("load", function () {'
        'var s = document.getElementById("slider-input"); s.value = "0";'
        's.dispatchEvent(new Event("input")); });</script></body>'
    )
    moved_page.write_text(
        path.read_text(encoding="utf-8").replace("</body>", mover), encoding="utf-8"
    )
    moved = run_chromium(moved_page, tmp_path / "moved", "--dump-dom")
    assert moved["console"] == [] and moved["requests"] == []
    after = _slider_values(moved["stdout"])
    first = frontier.iloc[0]
    assert after["budget"] == formatting.decimal(first["budget"])
    assert after["conversions"] == formatting.decimal(first["expected_conversions"], 1)
    assert after["cpa"] == formatting.decimal(first["cpa"])
    assert after["conversions"] != start["conversions"], "the numbers follow the slider"
    rows = _slider_rows(moved["stdout"])
    assert len(rows) == 6
    shares = [float(r[2].rstrip("%")) for r in rows]
    assert sum(shares) == pytest.approx(100, abs=0.5)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in [r[0] for r in rows]


# Measures the rendered page into <body data-*> for --dump-dom: the page's width,
# the plan table's width and its frame, and the smallest on-screen chart text.
MEASURE = """<script>
window.addEventListener("load", function () {
  if (location.hash === "#print") {
    var css = "";
    Array.prototype.forEach.call(document.styleSheets, function (sheet) {
      Array.prototype.forEach.call(sheet.cssRules, function (rule) {
        if (rule.media && rule.media.mediaText === "print") {
          Array.prototype.forEach.call(rule.cssRules, function (r) {
            if (r.type === 1) { css += r.cssText + "\\n"; }
          });
        }
      });
    });
    var style = document.createElement("style");
    style.textContent = css + "body { width: 186mm; margin: 0; }";
    document.head.appendChild(style);
  }
  var sizes = Array.prototype.map.call(
    document.querySelectorAll("svg.chart-spend text"),
    function (t) { return t.getBoundingClientRect().height; }
  ).filter(function (h) { return h > 0; });
  var table = document.getElementById("plan-table");
  var body = document.body;
  body.setAttribute("data-page-width", document.documentElement.scrollWidth);
  body.setAttribute("data-view-width", document.documentElement.clientWidth);
  body.setAttribute("data-table-width", table.scrollWidth);
  body.setAttribute("data-frame-width", table.parentNode.clientWidth);
  body.setAttribute("data-chart-text", Math.min.apply(null, sizes));
  var widths = Array.prototype.map.call(document.querySelectorAll("figure svg"),
    function (svg) { return svg.getBoundingClientRect().width; });
  body.setAttribute("data-chart-width", Math.max.apply(null, widths));
  body.setAttribute("data-body-width", body.clientWidth);
  var foot = table.querySelector("tfoot");
  body.setAttribute("data-footer-repeats",
    foot && getComputedStyle(foot).display === "table-footer-group" ? 1 : 0);
  if (window.parent !== window) { window.parent.postMessage(body.outerHTML.slice(0, 400), "*"); }
});
</script></body>"""
# Headless Chromium lays pages out at least 500 px wide, so the phone is a frame.
PHONE = """<html><body style="margin:0"><iframe src="measured.html" width="{width}"
height="3000" style="border:0"></iframe><script>
window.addEventListener("message", function (e) {{
  var out = document.createElement("pre"); out.id = "measured";
  out.textContent = e.data; document.body.appendChild(out);
}});
</script></body></html>"""


def _measured(page: Path, workdir: Path, width: int | None = None) -> dict[str, float]:
    """Load ``page`` with MEASURE injected, in a frame ``width`` px wide or (None)
    as printed on A4; the measurements, in CSS pixels."""
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / "measured.html"
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", MEASURE), encoding="utf-8"
    )
    if width is None:
        seen = run_chromium(probe, workdir, "--dump-dom", hash_="#print")
        found = seen["stdout"]
    else:
        outer = workdir / "phone.html"
        outer.write_text(PHONE.format(width=width), encoding="utf-8")
        seen = run_chromium(outer, workdir, "--dump-dom", "--virtual-time-budget=10000")
        found = unescape(
            re.search(
                r'<pre id="measured">(.*?)</pre>', seen["stdout"], re.DOTALL
            ).group(1)
        )
    assert seen["console"] == [] and seen["requests"] == []
    body = re.search(r"<body([^>]*)>", found).group(1)
    return {k: float(v) for k, v in re.findall(r'data-([a-z-]+)="([\d.]+)"', body)}


@pytest.mark.browser
@browser
def test_phone_width_and_print(hostile_report, tmp_path):
    """At 400 px nothing but a table or chart frame scrolls sideways and chart text
    stays readable; printed on A4 the plan table fits the page width and its total
    row prints once."""
    path, _ = hostile_report
    phone = _measured(path, tmp_path / "phone", 400)
    assert phone["page-width"] <= phone["view-width"] <= 400, phone
    assert phone["chart-text"] >= 8.0, phone

    paper = _measured(path, tmp_path / "paper")
    assert paper["table-width"] <= paper["frame-width"] + 1, paper
    assert paper["chart-width"] <= paper["body-width"] + 1, paper
    # The plan's Total row prints once, after the last audience, not at the foot of
    # every page beside a partial list.
    assert paper["footer-repeats"] == 0, paper

    pdf = tmp_path / "report.pdf"
    printed = run_chromium(
        path, tmp_path / "pdf", f"--print-to-pdf={pdf}", "--no-pdf-header-footer"
    )
    assert printed["console"] == [] and printed["requests"] == []
    raw = pdf.read_bytes()
    boxes = set(re.findall(rb"/MediaBox\s*\[([^\]]*)\]", raw))
    assert len(boxes) == 1
    width, height = (float(x) for x in boxes.pop().split()[2:])
    assert (round(width), round(height)) == (595, 842), "A4 in points"
    pages = len(re.findall(rb"/Type\s*/Page[^s]", raw))
    assert 3 <= pages <= 20, pages

    shot = tmp_path / "phone.png"
    taken = run_chromium(
        path, tmp_path / "shot", f"--screenshot={shot}", "--window-size=400,3000"
    )
    assert taken["console"] == [] and shot.stat().st_size > 10_000
