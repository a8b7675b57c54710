"""``adplan backtest``'s command line: an auction log or a daily report checked
(:mod:`optimizer.commands.backtest`, :mod:`optimizer.commands.backtest_daily`)."""

from __future__ import annotations

from pathlib import Path

import click

from optimizer.commands import daily
from optimizer.commands import options as opt
from optimizer.commands.runtime import echo, enable_x64, friendly_errors


@click.command(name="backtest")
@opt.events_option(
    "Event log or daily report (CSV or Parquet), or a folder of log files.",
    dir_okay=True,
)
@opt.holdout_days_option
@opt.settings_option("Audience settings CSV (value_per_conversion is used).")
@opt.epochs_option
@opt.seed_option("Random seed (same seed and data, same backtest).")
@opt.runs_option
@opt.out_folder_option("Folder for backtest.csv, backtest.json and the model trained.")
@click.pass_context
@daily.backtest_inputs
@friendly_errors
def backtest_command(
    ctx: click.Context,
    events: Path,
    holdout_days: int | None,
    settings_file: Path | None,
    epochs: int,
    seed: int,
    runs: int,
    out_dir: Path,
) -> None:
    """Check the forecast on your log or daily report: fit it without its last
    days, forecast them, compare."""
    enable_x64()
    from optimizer.commands.backtest import run_backtest

    args = (events, out_dir, holdout_days, settings_file, epochs, seed, runs)
    for line in run_backtest(*args, quiet=ctx.obj["quiet"]):
        echo(ctx, line)
