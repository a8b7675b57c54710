"""Daily platform reports at the file ends: ``adplan train`` on one (detected or
``--input-kind daily``) and ``adplan generate --daily``.

The model folder of a daily report holds market.json, metrics.json and
model.json (``input_kind`` = "daily") and ``rates_by_cell.csv``, the rate
network's calibrated rates per ad set x breakdowns x weekday
(:mod:`optimizer.rates.counts`), which ``adplan predict`` scores a report's rows
with. Every command that plans from market.json works on it as on an
auction-log model.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from pathlib import Path

import click
import pandas as pd

from optimizer.commands.runtime import echo, enable_x64, friendly_errors

PRESET_NAMES = ("adplan", "dv360", "google_ads", "meta")  # optimizer.io.daily.PRESETS
INPUT_KINDS = ("auto", "auctions", "daily")
RATE_CELLS = "rates_by_cell.csv"  # a daily model's calibrated rates per cell


def daily_options(daily_job):
    """``--input-kind``, ``--preset``, ``--mapping`` for a command that reads
    ``--events``: a daily report goes to ``daily_job(kwargs, preset, mapping,
    quiet)`` (its lines echoed), an auction log to the command itself."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(ctx: click.Context, **kwargs):
            given = {k: kwargs.pop(k) for k in ("input_kind", "preset", "mapping")}
            kind = friendly_errors(detect_input_kind)(kwargs["events"], **given)
            if kind == "auctions":
                if given["preset"] or given["mapping"]:
                    raise click.UsageError(
                        "--preset and --mapping are for daily reports."
                    )
                return command(ctx, **kwargs)
            quiet = ctx.obj["quiet"]
            return _run_daily(
                ctx, daily_job, kwargs, given["preset"], given["mapping"], quiet
            )

        return _with_daily_options(wrapper)

    return decorate


def train_daily_job(kwargs: dict, preset, mapping, quiet: bool) -> list[str]:
    """``adplan train`` on a daily report (and its backtest unless --no-backtest)."""
    return train_daily(
        kwargs["events"],
        kwargs["model_dir"],
        preset,
        mapping,
        backtest=not kwargs["no_backtest"],
        seed=kwargs["seed"],
        quiet=quiet,
    )


def backtest_daily_job(kwargs: dict, preset, mapping, quiet: bool) -> list[str]:
    """``adplan backtest`` on a daily report: backtest.csv/.json in --out."""
    from optimizer.commands.backtest import summary_lines, write_backtest
    from optimizer.commands.backtest_daily import backtest_daily

    table, summary = backtest_daily(
        kwargs["events"],
        preset,
        mapping,
        holdout_days=kwargs["holdout_days"],
        audiences=kwargs["settings_file"],
        seed=kwargs["seed"],
        runs=kwargs["runs"],
        show=not quiet,
    )
    write_backtest(kwargs["out_dir"], table, summary)
    return summary_lines(summary, kwargs["out_dir"])


def predict_daily_job(kwargs: dict, preset, mapping, quiet: bool) -> list[str]:
    """``adplan predict`` on a daily report: its rows plus their cells' rates."""
    return predict_daily(
        kwargs["model_dir"], kwargs["events"], kwargs["out_file"], preset, mapping
    )


train_inputs = daily_options(train_daily_job)  # adplan train --events
backtest_inputs = daily_options(backtest_daily_job)  # adplan backtest --events
predict_inputs = daily_options(predict_daily_job)  # adplan predict --events


def predict_daily(
    model_dir: Path,
    path: Path,
    out_file: Path,
    preset: str | None,
    mapping: Path | None,
) -> list[str]:
    """Write a daily report's rows plus ``p_click``, ``p_conversion`` (per
    impression, from the model's calibrated cells: ad set x breakdowns x weekday)
    and ``expected_clicks``, ``expected_conversions`` at the row's impressions. A
    row whose cell the model never saw gets its ad set's average rate (or the
    report's, for an ad set it never saw), and the count is said."""
    from optimizer.errors import InputError
    from optimizer.io.atomic import check_writable
    from optimizer.io.daily import breakdown_labels, read_daily_report, weekday_names
    from optimizer.io.files import check_model_folder, write_csv
    from optimizer.io.schema import read_table

    check_writable(out_file, folder=False)
    info = check_model_folder(model_dir)
    if info.get("input_kind") != "daily":
        raise InputError(
            f"model {model_dir}: it was trained on an auction log, and {path} is a "
            "daily report. Score it with a model trained on a daily report "
            f"(adplan train --events {path} --out MODEL)."
        )
    cells = pd.read_csv(Path(model_dir) / RATE_CELLS, dtype=str, keep_default_na=False)
    fields = [c for c in cells.columns if c not in _CELL_MEASURES]
    cells[list(_CELL_MEASURES)] = cells[list(_CELL_MEASURES)].astype(float)
    trained = [f for f in fields if f not in ("audience", "weekday")]
    frame, _ = read_daily_report(path, preset, mapping, trained)
    keys = frame.assign(
        weekday=weekday_names(frame["date"]),
        **{f: breakdown_labels(frame[f]) for f in trained},
    )[fields]
    joined = keys.merge(cells, on=fields, how="left")
    n = cells["impressions"].astype(float)
    unseen = joined["p_click"].isna().to_numpy()
    new_sets = (~keys["audience"].isin(cells["audience"])).to_numpy()
    for rate in ("p_click", "p_conversion"):
        mass = (n * cells[rate]).groupby(cells["audience"]).sum() / n.groupby(
            cells["audience"]
        ).sum().clip(lower=1e-300)
        pooled = float((n * cells[rate]).sum() / max(n.sum(), 1e-300))
        fill = keys["audience"].map(mass).fillna(pooled)
        joined[rate] = joined[rate].fillna(fill)
    out = read_table(path, "daily report")
    out["p_click"] = joined["p_click"].to_numpy()
    out["p_conversion"] = joined["p_conversion"].to_numpy()
    out["expected_clicks"] = frame["impressions"].to_numpy() * out["p_click"]
    out["expected_conversions"] = frame["impressions"].to_numpy() * out["p_conversion"]
    write_csv(out_file, out)
    known = int((unseen & ~new_sets).sum())
    note = "".join(
        [
            f"; {known:,} row(s) in a cell the model never saw got their ad set's "
            "average rate"
            if known
            else "",
            f"; {int(new_sets.sum()):,} row(s) of ad sets the model never saw got the "
            "trained report's average rate"
            if new_sets.any()
            else "",
        ]
    )
    return [
        f"Scored {len(out):,} rows of a daily report -> {out_file} (rates per "
        f"impression by {', '.join(fields)}{note})."
    ]


_CELL_MEASURES = (
    "impressions",
    "clicks",
    "conversions",
    "p_click",
    "p_click_sd_log",
    "p_conversion",
    "p_conversion_sd_log",
)


def _with_daily_options(wrapper):
    """``wrapper`` with the three daily-report options."""
    options = [
        click.option(
            "--input-kind",
            type=click.Choice(INPUT_KINDS),
            default="auto",
            show_default=True,
            help="What --events is: an auction log, a daily platform report "
            "(one row per ad set and day), or auto (by its columns).",
        ),
        click.option(
            "--preset",
            type=click.Choice(PRESET_NAMES),
            default=None,
            help="Daily report header preset (default: recognized from the header).",
        ),
        click.option(
            "--mapping",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help='TOML file mapping another export\'s headers ([columns] spend = "Cost").',
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _run_daily(ctx: click.Context, job, *args) -> None:
    """``job(*args)`` in float64, its lines echoed; errors as one clear message."""
    enable_x64()
    for line in friendly_errors(job)(*args):
        echo(ctx, line)


def daily_generate_option(command):
    """``--daily`` for ``adplan generate``: write the daily report a platform
    would show for the synthetic market instead of its auction log."""

    @functools.wraps(command)
    def wrapper(ctx: click.Context, **kwargs):
        if not kwargs.pop("daily"):
            return command(ctx, **kwargs)
        return _run_daily(
            ctx,
            write_daily_market,
            kwargs["out_dir"],
            kwargs["n_audiences"],
            kwargs["days"],
            kwargs["seed"],
        )

    return click.option(
        "--daily",
        is_flag=True,
        help="Write daily.csv (one row per ad set and day, first price) instead of events.csv.",
    )(wrapper)


def detect_input_kind(
    path: Path, input_kind: str, preset: str | None, mapping: Path | None
) -> str:
    """'auctions' or 'daily': as given, else by the file's columns."""
    if input_kind != "auto":
        return input_kind
    if preset is not None or mapping is not None:
        return "daily"
    path = Path(path)
    if not path.is_file():  # a folder of auction-log chunks, or the log's own message
        return "auctions"
    from optimizer.io.daily import looks_daily

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            columns = pq.read_schema(path).names
        else:
            import pandas as pd

            from optimizer.io.csv_format import read_csv_kwargs

            columns = pd.read_csv(path, nrows=0, **read_csv_kwargs(path)).columns
    except (OSError, ValueError):
        return "auctions"  # the auction-log reader words the error
    headers = [str(c).strip() for c in columns]
    return "daily" if looks_daily(headers) and "bid" not in headers else "auctions"


def train_daily(
    path: Path,
    model_dir: Path,
    preset: str | None,
    mapping: Path | None,
    *,
    backtest: bool = True,
    seed: int = 0,
    quiet: bool = True,
) -> list[str]:
    """Fit a daily report's market into ``model_dir``; return summary lines.

    Unless ``backtest`` is False, the forecast is first checked on the report's
    last quarter of days (:func:`backtest_daily`) and the band's calibration
    stored beside the model (band.json), as for an auction log."""
    from optimizer.io.atomic import check_writable
    from optimizer.io.daily import daily_totals, fail_if_empty, read_daily_report
    from optimizer.io.files import (
        atomic_dir,
        file_sha256,
        folder_checksums,
        library_versions,
        write_csv,
        write_json,
    )
    from optimizer.market.store import save_market

    check_writable(model_dir, folder=True)
    frame, info = read_daily_report(path, preset, mapping)
    fail_if_empty(daily_totals(frame), Path(path))
    market = fit_report(frame, info["breakdowns"], info["notes"], seed, not quiet)
    metrics = {"rates": {"heads": {}}, "market": market.metrics}
    band, band_lines = _band(frame, info, path, seed, quiet) if backtest else ({}, [])
    cells = pd.DataFrame(market.metrics.pop("rate_cells"))
    with atomic_dir(model_dir) as tmp:
        write_csv(tmp / RATE_CELLS, cells)
        save_market(tmp, market)
        if band:
            write_json(tmp / "band.json", band)
        model_id = hashlib.sha256((tmp / "market.json").read_bytes()).hexdigest()[:12]
        write_json(tmp / "metrics.json", metrics)
        write_json(
            tmp / "model.json",
            {
                "format": "adplan-model/1",
                "input_kind": "daily",
                "model_id": model_id,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "events_file": str(path),
                "events_sha256": file_sha256(path),
                "rows": len(frame),
                "audiences": market.names,
                "auction_type": market.auction_type,
                "preset": info["preset"],
                "currency": info["currency"],
                "breakdowns": info["breakdowns"],
                "versions": library_versions(),
                "sha256": folder_checksums(tmp),
            },
        )
    fits = market.metrics["landscapes"]
    known = sum(f["identified"] for f in fits)
    currency = f", currency {info['currency']}" if info["currency"] else ""
    return [
        f"Daily report: {len(frame):,} rows, {frame['date'].nunique()} days, "
        f"{len(market.names)} ad sets (preset {info['preset']}{currency}).",
        f"  model folder: {model_dir} (model id {model_id}; bids are set by the "
        "platform: the plan is a budget per ad set)",
        f"  spend curves: {known} of {len(fits)} learned from day-to-day spend variation",
        *(f"  note: {n}" for n in market.metrics["daily_notes"]),
        *band_lines,
    ]


def fit_report(
    rows, breakdowns: list[str], notes: list[str], seed: int = 0, show: bool = False
):
    """The daily market of a validated report's rows: the rate network on its
    counts (per ad set, breakdown and weekday), then the spend curves (``show``:
    the network's progress bar)."""
    from optimizer.io.daily import daily_totals
    from optimizer.market.daily import fit_daily_market
    from optimizer.rates.counts import fit_count_rates

    rates = fit_count_rates(rows, breakdowns, seed, show)
    return fit_daily_market(daily_totals(rows), notes, count_rates=rates)


def _band(rows, info: dict, path: Path, seed: int, quiet: bool) -> tuple[dict, list]:
    """The daily backtest's summary (band.json) and its lines, from the report's
    rows already read; ({}, a note) where it is too short to hold days out."""
    from optimizer.commands.backtest import summary_lines
    from optimizer.commands.backtest_daily import backtest_days
    from optimizer.errors import InputError

    if not quiet:
        print("Checking the forecast on the report's last days ...", flush=True)
    try:
        _, summary = backtest_days(rows, info, path, None, None, seed, 60, not quiet)
    except InputError as exc:
        return {}, [f"  band not checked (backtest skipped): {exc}"]
    return summary, summary_lines(summary)


def write_daily_market(out_dir: Path, n: int, days: int, seed: int) -> list[str]:
    """``adplan generate --daily``: daily.csv, audiences.csv and truth.json."""
    from optimizer.io.atomic import check_writable
    from optimizer.io.files import atomic_dir, dumps_json, write_csv
    from simulations.synthetic.daily import synthetic_report
    from simulations.synthetic.generate import audience_settings

    check_writable(out_dir, folder=True)
    truth, report, effects = synthetic_report(n, days, seed)
    data = truth.data
    data["daily"] = effects.to_json()
    with atomic_dir(out_dir) as tmp:
        write_csv(tmp / "daily.csv", report)
        write_csv(tmp / "audiences.csv", audience_settings(data))
        (tmp / "truth.json").write_text(dumps_json(data) + "\n", encoding="utf-8")
    return [
        f"Synthetic daily report: {n} ad sets, {days} days, split by device (first "
        "price; the platform bids to spend each day's budget; volume and conversion "
        "rates vary by day of the week).",
        f"  daily report:       {out_dir / 'daily.csv'}",
        f"  true market:        {out_dir / 'truth.json'}",
    ]
