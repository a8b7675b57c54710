"""``adplan backtest``: the forecast checked on the planner's own log.

The model is trained on the log minus its last N days; for those held-out days it
forecasts, at the bids the log actually used there, each audience's spend,
impressions, clicks, conversions and value (the model's volume over the days
times its response at each logged bid), with the simulator's P10-P90 (auction
luck and what the log leaves open about conversion rates). Where an audience's
held-out bids spread out, the forecast is also checked by bid band (lowest,
middle, highest third of its bids).

The band is calibrated from it: ``widening_by_metric`` is, per metric, how many
times wider the band, around its mean, would have to be to hold 80% of the
audiences' held-out outcomes (never below 1, at most 10; ``widening`` is the
largest). ``adplan train`` stores them in the model folder (``band.json``);
simulate widens its bands by them and says so, plan warns when the band was
too narrow.
"""

from __future__ import annotations

import dataclasses
import tempfile
import types
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from optimizer.errors import InputError
from optimizer.io.files import atomic_dir, write_csv, write_json
from optimizer.io.schema import read_event_log, read_settings
from optimizer.market.fit import FittedMarket
from optimizer.market.store import load_market

METRICS = ("spend", "impressions", "clicks", "conversions", "value")
TARGET_COVERAGE = 0.8  # a P10-P90 band should hold 80% of outcomes
_BANDS = 3  # bid bands per audience where its held-out bids spread out
_SUB_BINS = 4  # forecast points per band (quantiles of its bids)
_EXPLORED = 1.2  # P90 / P10 of held-out bids above which bands are reported
_RATE_GROUPS = 20
MIN_EVENTS = 10  # errors are judged where the outcome rests on at least this many
MAX_WIDENING = 10.0  # beyond this the band says nothing; the backtest says why
_BASIS = {"spend": "impressions", "value": "conversions"}


def split_days(
    events: pd.DataFrame,
    holdout_days: int | None,
    where,
    column: str = "timestamp",
    what: str = "event log",
    min_train_days: int = 1,
) -> tuple:
    """(train rows, held-out rows, held-out days, first held-out day) of a log
    (or of a daily report: ``column`` "date"); by default its last quarter of days
    is held out, and at least ``min_train_days`` days are left to train on."""
    day = pd.to_datetime(events[column], utc=True).dt.floor("D")
    days = np.sort(day.unique())
    n = max(1, len(days) // 4) if holdout_days is None else holdout_days
    if len(days) < 2 or n < 1 or len(days) - n < min_train_days:
        raise InputError(
            f"{what} {where}: it covers {len(days)} day(s), too few to hold out "
            f"{n} and train on at least {min_train_days} day(s) before them. "
            f"Use a longer {what} or a smaller --holdout-days."
        )
    cutoff = days[-n]
    late = (day >= cutoff).to_numpy()
    return events[~late], events[late], n, pd.Timestamp(cutoff)


def _read_log(path: Path) -> pd.DataFrame:
    from optimizer.commands.train import event_files

    return pd.concat([read_event_log(p) for p in event_files(path)], ignore_index=True)


def _bands(bids: np.ndarray) -> np.ndarray:
    """(n,) bid band index 0.._BANDS-1 by thirds of the log bid, or all 0."""
    lo, hi = np.quantile(bids, [0.1, 0.9])
    if hi < _EXPLORED * lo:
        return np.zeros(len(bids), int)
    edges = np.quantile(bids, np.linspace(0, 1, _BANDS + 1)[1:-1])
    return np.searchsorted(edges, bids, side="right")


def _points(held: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Forecast points: per audience and band, the quantile bids and their shares."""
    rows = []
    for a, name in enumerate(names):
        bids = held.loc[held["audience"] == name, "bid"].to_numpy(float)
        if len(bids) == 0:
            continue
        band = _bands(bids)
        for b in np.unique(band):
            mine = np.sort(bids[band == b])
            cut = np.array_split(mine, min(_SUB_BINS, len(mine)))
            for part in cut:
                rows.append(
                    (a, name, int(b), float(np.median(part)), len(part) / len(bids))
                )
    return pd.DataFrame(rows, columns=["a", "audience", "band", "bid", "share"])


def _simulate(market: FittedMarket, points: pd.DataFrame, days: int, runs, seed):
    """(R, P) simulated outcomes of each forecast point (no budget cap); a point's
    optional ``click_factor``/``conv_factor`` scale its rates (a weekday's)."""
    from simulations.simulator.uncertainty import rate_draws, simulate_rate_draws

    idx = points["a"].to_numpy()
    host = jax.tree.map(lambda x: np.asarray(x)[idx], market.params)  # (P, ...)
    scale = {
        k: points[c].to_numpy()[:, None] if c in points else 1.0
        for k, c in (("p_click", "click_factor"), ("p_conv", "conv_factor"))
    }
    params = jax.device_put(
        dataclasses.replace(
            host,
            volume_per_day=host.volume_per_day * points["share"].to_numpy(),
            p_click=host.p_click * scale["p_click"],
            p_conv=host.p_conv * scale["p_conv"],
        )
    )
    draws = rate_draws(market, min(_RATE_GROUPS, runs), seed)[:, points["a"], :]
    result = simulate_rate_draws(
        types.SimpleNamespace(params=params),
        draws,
        points["bid"].to_numpy(),
        np.full(len(points), np.inf),
        days,
        market.first_price,
        "stop",
        runs,
        seed,
    )
    return {m: np.asarray(getattr(result, m), np.float64) for m in METRICS}


def _actual(held: pd.DataFrame) -> pd.DataFrame:
    won = held["won"].to_numpy() == 1
    out = pd.DataFrame(
        {
            "audience": held["audience"].to_numpy(),
            "spend": np.where(won, held["cost"].to_numpy(float), 0.0),
            "impressions": won.astype(float),
            "clicks": held["click"].to_numpy(float) * won,
            "conversions": held["conversion"].to_numpy(float) * won,
        }
    )
    out["value"] = (
        held["revenue"].to_numpy(float) * won if "revenue" in held.columns else np.nan
    )
    return out


def _row(audience, band, bids, sims, actual, auctions) -> list[dict]:
    rows = []
    for m in METRICS:
        x = sims[m]
        mean, p10, p90 = float(x.mean()), *np.quantile(x, [0.1, 0.9]).tolist()
        got = float(actual[m])
        rows.append(
            {
                "audience": audience,
                "bid_band": band,
                "bid_low": bids[0],
                "bid_high": bids[1],
                "auctions": auctions,
                "metric": m,
                "forecast": mean,
                "p10": p10,
                "p90": p90,
                "actual": got,
                "error": (mean - got) / got if got > 0 else np.nan,
                "events": float(actual[_BASIS.get(m, m)]),
                "inside": bool(p10 <= got <= p90) if np.isfinite(got) else None,
                "band_ratio": _band_ratio(mean, p10, p90, got),
            }
        )
    return rows


def _band_ratio(mean: float, p10: float, p90: float, got: float) -> float:
    """How far outside the band the outcome is: distance from the mean over the
    band's half on that side (<= 1: inside)."""
    if not np.isfinite(got):
        return np.nan
    half = p90 - mean if got >= mean else mean - p10
    gap = abs(got - mean)
    return gap / half if half > 0 else (0.0 if gap == 0 else np.inf)


def compare(
    market: FittedMarket, held: pd.DataFrame, days: int, runs: int, seed: int
) -> pd.DataFrame:
    """Forecast against outcome, per audience (band 'all'), per bid band, and TOTAL."""
    held = held[held["audience"].isin(market.names)]
    points = _points(held, market.names)
    sims = _simulate(market, points, days, runs, seed)
    actual = _actual(held)
    bands = {
        name: _bands(held.loc[held["audience"] == name, "bid"].to_numpy(float))
        for name in points["audience"].unique()
    }
    rows = []
    for name, group in points.groupby("audience", sort=False):
        cols = group.index.to_numpy()
        mine = actual[actual["audience"] == name]
        bids = held.loc[held["audience"] == name, "bid"].to_numpy(float)
        whole = {m: sims[m][:, cols].sum(axis=1) for m in METRICS}
        span = (float(bids.min()), float(bids.max()))
        rows += _row(name, "all", span, whole, mine[list(METRICS)].sum(), len(mine))
        if group["band"].nunique() > 1:
            for b, part in group.groupby("band"):
                sel = bands[name] == b
                label = ("low", "middle", "high")[b] + " bids"
                span = (float(bids[sel].min()), float(bids[sel].max()))
                sub = {
                    m: sims[m][:, part.index.to_numpy()].sum(axis=1) for m in METRICS
                }
                rows += _row(
                    name, label, span, sub, mine[sel][list(METRICS)].sum(), sel.sum()
                )
    total = {m: sims[m].sum(axis=1) for m in METRICS}
    span = (float(held["bid"].min()), float(held["bid"].max()))
    rows += _row("TOTAL", "all", span, total, actual[list(METRICS)].sum(), len(held))
    return pd.DataFrame(rows)


def calibration(table: pd.DataFrame) -> dict:
    """Coverage, errors and the band's widening factor from a comparison table.

    Judged on the per-audience rows (bid band 'all', not TOTAL), one factor per
    metric (volume drift moves spend and impressions, a wrong rate clicks and
    conversions); the relative errors only where the outcome rests on at least
    ``MIN_EVENTS`` impressions, clicks or conversions (a forecast of 2 clicks
    against 1 is luck, not error). The factors make 80% of each metric's outcomes
    fall inside; ``coverage_widened_crossfit`` checks that out of sample: each
    half of the audiences widened by the factors of the other half.
    """
    rows = table[(table["bid_band"] == "all") & (table["audience"] != "TOTAL")]
    rows = rows[~np.isnan(rows["band_ratio"].to_numpy(float))]
    ratio = rows["band_ratio"].to_numpy(float)
    if len(ratio) == 0:
        return {"outcomes": 0}

    def factor(r: np.ndarray) -> float:
        if not len(r):
            return 1.0
        q = np.quantile(r, TARGET_COVERAGE, method="inverted_cdf")
        return float(np.clip(q, 1.0, MAX_WIDENING))

    metric = rows["metric"].to_numpy()
    names = rows["audience"].unique()
    half = rows["audience"].isin(names[::2]).to_numpy()
    by_metric, own, cross = {}, np.zeros(len(ratio)), np.zeros(len(ratio))
    for m in METRICS:
        sel = metric == m
        by_metric[m] = factor(ratio[sel])
        own[sel] = by_metric[m]
        for mine in (half, ~half):  # each half widened by the other half's factor
            cross[sel & mine] = factor(ratio[sel & ~mine])
    err = rows["error"].to_numpy(float)
    finite = np.isfinite(err) & (rows["events"].to_numpy(float) >= MIN_EVENTS)
    worst = rows.iloc[int(np.argmax(np.where(finite, np.abs(err), -1.0)))]
    covered = rows.groupby("metric")["band_ratio"].apply(
        lambda r: float(np.mean(r <= 1))
    )
    by_band = table[~table["bid_band"].isin(["all"])]
    return {
        "outcomes": len(ratio),
        "coverage": float(np.mean(ratio <= 1)),
        "coverage_by_metric": covered.to_dict(),
        "coverage_bid_bands": (
            float(np.mean(by_band["band_ratio"].to_numpy(float) <= 1))
            if len(by_band)
            else None
        ),
        "median_abs_error": float(np.median(np.abs(err[finite])))
        if finite.any()
        else None,
        "worst_error": {
            "audience": worst["audience"],
            "metric": worst["metric"],
            "error": float(worst["error"]),
        },
        "widening": max(by_metric.values()),
        "widening_by_metric": by_metric,
        "coverage_widened": float(np.mean(ratio <= own)),
        "coverage_widened_crossfit": float(np.mean(ratio <= cross)),
    }


def _with_values(market: FittedMarket, audiences: Path | None) -> FittedMarket:
    """The market with the settings' value per conversion, where given."""
    if audiences is None:
        return market
    settings = read_settings(audiences, market.names)
    if "value_per_conversion" not in settings.columns:
        return market
    given = dict(
        zip(settings["audience"], settings["value_per_conversion"], strict=True)
    )
    value = np.array([given.get(n, np.nan) for n in market.names], float)
    old = np.asarray(market.params.value)
    new = np.where(np.isnan(value)[:, None], old, value[:, None])
    return dataclasses.replace(
        market,
        params=dataclasses.replace(
            market.params, value=jax.device_put(np.asarray(new))
        ),
    )


def backtest(
    events_path: Path,
    model_dir: Path,
    *,
    holdout_days: int | None,
    audiences: Path | None,
    epochs: int,
    seed: int,
    runs: int,
    quiet: bool,
) -> tuple[pd.DataFrame, dict]:
    """Train on the log minus its last days into ``model_dir``, check the forecast
    of those days; return the comparison table and its summary."""
    from optimizer.commands.train import train_model

    events = _read_log(Path(events_path))
    train, held, n_days, cutoff = split_days(events, holdout_days, events_path)
    with tempfile.TemporaryDirectory(prefix="adplan-backtest-") as tmp:
        path = Path(tmp) / "train_events.csv"
        train.to_csv(path, index=False)
        train_model(
            path,
            model_dir,
            epochs=epochs,
            seed=seed,
            validation_days=1.0,
            auction_type=None,
            quiet=quiet,
        )
    market = _with_values(load_market(model_dir), audiences)
    table = compare(market, held, n_days, runs, seed)
    summary = {
        "holdout_days": n_days,
        "holdout_from": cutoff.isoformat(),
        "train_auctions": len(train),
        "holdout_auctions": len(held),
        "runs": runs,
        "epochs": epochs,
        "target_coverage": TARGET_COVERAGE,
    } | calibration(table)
    return table, summary


def write_backtest(out_dir: Path, table: pd.DataFrame, summary: dict) -> None:
    """backtest.csv (one row per audience, bid band and metric) and backtest.json."""
    with atomic_dir(out_dir) as tmp:
        write_csv(tmp / "backtest.csv", table)
        write_json(
            tmp / "backtest.json",
            summary | {"rows": table.replace({np.nan: None}).to_dict(orient="records")},
        )


def summary_lines(summary: dict, where: Path | None = None) -> list[str]:
    """What the backtest found, in plain words."""
    if not summary.get("outcomes"):
        return ["Backtest: no held-out audience the model knows; nothing to compare."]
    worst = summary["worst_error"] or {}
    lines = [
        f"Backtest: trained without the last {summary['holdout_days']} day(s) "
        f"(from {summary['holdout_from'][:10]}), then forecast them at the "
        + (
            "daily spend the report shows."
            if summary.get("input_kind") == "daily"
            else "bids the log used."
        ),
        f"  the P10-P90 band held {summary['coverage']:.0%} of "
        f"{summary['outcomes']} audience outcomes (it should hold about 80%)",
    ]
    if worst:
        lines.append(
            f"  typical forecast error {summary['median_abs_error']:.0%}; worst "
            f"{worst['error']:+.0%} ({worst['metric']} of '{worst['audience']}'), "
            f"among outcomes of at least {MIN_EVENTS} events"
        )
    wider = {m: f for m, f in summary["widening_by_metric"].items() if f > 1.0}
    if wider:
        parts = ", ".join(f"{m} {f:.2f}x" for m, f in wider.items())
        lines.append(
            f"  to hold 80% the band must be wider: {parts} (checked on the other "
            f"half of the audiences: {summary['coverage_widened_crossfit']:.0%} inside)"
        )
    guessed = summary.get("widening_unidentified_by_metric")
    if guessed:
        worst = max(guessed, key=guessed.get)
        lines.append(
            f"  a spend curve guessed from the other ad sets (as for an ad set whose "
            f"spend never varied) held {summary['coverage_unidentified_guess']:.0%}; "
            f"such ad sets' bands are widened up to {guessed[worst]:.2f}x ({worst})"
        )
    if where is not None:
        lines.append(f"Written to {where / 'backtest.csv'}")
    return lines


def run_backtest(
    events: Path,
    out_dir: Path,
    holdout_days: int | None,
    audiences: Path | None,
    epochs: int,
    seed: int,
    runs: int,
    *,
    quiet: bool,
) -> list[str]:
    """``adplan backtest``: the model in ``out_dir/model``, backtest.csv/.json."""
    table, summary = backtest(
        events,
        out_dir / "model",
        holdout_days=holdout_days,
        audiences=audiences,
        epochs=epochs,
        seed=seed,
        runs=runs,
        quiet=quiet,
    )
    write_backtest(out_dir, table, summary)
    return summary_lines(summary, out_dir)
