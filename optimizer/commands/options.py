"""Every ``adplan`` option, declared once as a click decorator.

An option used by several commands with different help text is a factory taking
that text; the command's help output is what the factory's arguments say.
Nothing here imports JAX, so ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

# The adplan group.

no_cache_option = click.option(
    "--no-cache",
    is_flag=True,
    help="Compile from scratch: do not read or write the compilation cache "
    "(~/.cache/adplan/jax, or ADPLAN_CACHE_DIR; ADPLAN_NO_CACHE=1 also turns it off).",
)

# Shared by several commands.

model_option = click.option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Model folder from adplan train.",
)

devices_option = click.option(
    "--devices",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Spread the work over this many GPUs (or devices) of this machine; the "
    "results are the same.",
)


def out_folder_option(help: str, dest: str = "out_dir"):
    """``--out``: a folder the command writes."""
    return click.option(
        "--out",
        dest,
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help=help,
    )


def out_file_option(help: str):
    """``--out``: one file the command writes."""
    return click.option(
        "--out",
        "out_file",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        help=help,
    )


def events_option(help: str, *, dir_okay: bool):
    """``--events``: the event log (a file, or with ``dir_okay`` also a folder)."""
    return click.option(
        "--events",
        type=click.Path(dir_okay=dir_okay, path_type=Path),
        required=True,
        help=help,
    )


def plan_option(help: str, *, required: bool = False):
    """``--plan``: a plan folder from adplan plan."""
    return click.option(
        "--plan",
        "plan_dir",
        type=click.Path(file_okay=False, path_type=Path),
        required=required,
        help=help,
    )


def seed_option(help: str):
    """``--seed``: the random seed, 0 by default."""
    return click.option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help=help,
    )


def budget_option(help: str):
    """``--budget``: a total budget over the horizon (currency)."""
    return click.option("--budget", type=click.FloatRange(0, min_open=True), help=help)


def horizon_option(help: str = "Horizon in days.", *, required: bool = False):
    """``--days``: the planning horizon in days."""
    return click.option(
        "--days",
        type=click.FloatRange(0, 366, min_open=True),
        required=required,
        help=help,
    )


def settings_option(help: str = "Audience settings CSV."):
    """``--audiences``: the audience settings CSV."""
    return click.option(
        "--audiences",
        "settings_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help=help,
    )


def scenario_option(help: str, *, multiple: bool = False):
    """``--scenario``: a scenario TOML (with ``multiple``, repeatable)."""
    return click.option(
        "--scenario",
        "scenario_files" if multiple else "scenario_file",
        type=click.Path(dir_okay=False, path_type=Path),
        multiple=multiple,
        help=help,
    )


def objective_option(help: str):
    """``--objective``: maximize conversions, conversion value or clicks."""
    return click.option(
        "--objective", type=click.Choice(["conversions", "value", "clicks"]), help=help
    )


def auction_type_option(help: str, *, detect: bool):
    """``--auction-type``: how the exchange charges (with ``detect``, also ``auto``)."""
    choices = ["second_price", "first_price"]
    return click.option(
        "--auction-type",
        type=click.Choice(["auto", *choices] if detect else choices),
        default="auto" if detect else "second_price",
        show_default=True,
        help=help,
    )


# adplan generate

audience_count_option = click.option(
    "--audiences",
    "n_audiences",
    type=click.IntRange(1, 5000),
    default=24,
    show_default=True,
    help="Number of audiences.",
)
log_days_option = click.option(
    "--days",
    type=click.IntRange(1, 365),
    default=14,
    show_default=True,
    help="Days of auctions in the log.",
)
competition_slope_option = click.option(
    "--competition-slope",
    type=click.FloatRange(0, 2),
    default=0.3,
    show_default=True,
    help="How much more better impressions cost (0 = no link).",
)

realism_option = click.option(
    "--realism",
    type=click.Choice(["demo", "real"]),
    default="demo",
    show_default=True,
    help="'real': prices like a real exchange's (a few floor and round prices hold"
    " much of the auctions, no price above a cap), a hidden impression quality that"
    " raises both clicks and prices, and volumes and prices that drift towards the"
    " planned days (--competition-slope is then not used).",
)

# adplan train

epochs_option = click.option(
    "--epochs",
    type=click.IntRange(1, 1000),
    default=30,
    show_default=True,
    help="Most passes over the data (training stops earlier when validation stops improving).",
)
validation_days_option = click.option(
    "--validation-days",
    type=click.FloatRange(0, 365, min_open=True),
    default=2.0,
    show_default=True,
    help="Last days of the log held out to check and calibrate the model.",
)
chunk_rows_option = click.option(
    "--chunk-rows",
    type=click.IntRange(1000),
    default=1_000_000,
    show_default=True,
    help="Rows read at a time: memory stays bounded however long the log is.",
)
shard_data_option = click.option(
    "--shard-data",
    is_flag=True,
    help="Give each device its own chunks of the log instead of a copy of all rows "
    "(less memory per device; always on with several processes).",
)
coordinator_option = click.option(
    "--coordinator",
    metavar="HOST:PORT",
    help="Several machines: address of process 0 (env ADPLAN_COORDINATOR).",
)
num_processes_option = click.option(
    "--num-processes",
    type=click.IntRange(1),
    help="Several machines: how many processes train together (env ADPLAN_NUM_PROCESSES).",
)
process_id_option = click.option(
    "--process-id",
    type=click.IntRange(0),
    help="Several machines: this process's number, 0 to N-1; 0 writes the model (env ADPLAN_PROCESS_ID).",
)

# adplan plan

target_conversions_option = click.option(
    "--target-conversions",
    type=click.FloatRange(0, min_open=True),
    help="Find the smallest budget reaching this many conversions (or this much value).",
)
max_cpa_option = click.option(
    "--max-cpa",
    type=click.FloatRange(0, min_open=True),
    help="Spend less if needed to keep cost per conversion at most this.",
)
min_roas_option = click.option(
    "--min-roas",
    type=click.FloatRange(0, min_open=True),
    help="Spend less if needed to keep value / spend at least this.",
)
max_bid_option = click.option(
    "--max-bid",
    type=click.FloatRange(0, min_open=True),
    help="Highest bid per impression anywhere (currency).",
)
spend_all_option = click.option(
    "--spend-all",
    is_flag=True,
    default=None,
    help="Require the plan to spend the whole budget.",
)

# adplan simulate

runs_option = click.option(
    "--runs",
    type=click.IntRange(1, 100_000),
    default=200,
    show_default=True,
    help="Monte-Carlo replications.",
)
pacing_option = click.option(
    "--pacing",
    type=click.Choice(["stop", "even"]),
    default="stop",
    show_default=True,
    help="stop: buy until the budget is spent; even: spread spend over the horizon.",
)
truth_option = click.option(
    "--truth",
    "truth_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="truth.json of a synthetic market: also replay the plan on the true market.",
)
rate_uncertainty_option = click.option(
    "--rate-uncertainty/--no-rate-uncertainty",
    default=True,
    show_default=True,
    help="Also draw each audience's conversion rate from its uncertainty (wider, more honest bands).",
)

# adplan report

report_currency_option = click.option(
    "--currency",
    default=None,
    help='Money unit shown on every figure, e.g. EUR; default the plan\'s currency, else "currency units".',
)

simulation_option = click.option(
    "--simulation",
    "simulation_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder from adplan simulate.",
)
whatif_option = click.option(
    "--whatif",
    "whatif_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder from adplan whatif.",
)
frontier_option = click.option(
    "--frontier",
    "frontier_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder from adplan frontier.",
)

# adplan whatif

budget_scale_option = click.option(
    "--budget-scale",
    type=click.FloatRange(0, min_open=True),
    help="One-off: multiply the budget, e.g. 1.2.",
)
price_shift_option = click.option(
    "--price-shift",
    type=click.FloatRange(-0.95, 10, min_open=True),
    help="One-off: relative change of market prices, e.g. 0.15.",
)
rate_shift_option = click.option(
    "--rate-shift",
    multiple=True,
    help="One-off: AUDIENCE=-0.1 changes that audience's conversion rate; repeatable.",
)

# adplan frontier

budgets_option = click.option(
    "--budgets", required=True, help="FROM:TO:STEPS, e.g. 1000:20000:50."
)

# adplan plan: money units, smallest useful budgets, bids per 1,000 impressions

max_bid_cpm_option = click.option(
    "--max-bid-cpm",
    type=click.FloatRange(0, min_open=True),
    help="Highest bid anywhere as a CPM (currency per 1,000 impressions); "
    "--max-bid-cpm 20 is --max-bid 0.02.",
)
min_budget_option = click.option(
    "--min-budget",
    type=click.FloatRange(0),
    help="Smallest useful budget per audience over the horizon (currency): an "
    "audience the plan would give less is paused and the plan re-optimized. "
    "Default: 1% of the budget (1% of the daily budget each day); 0 never pauses. "
    "A 'min_budget' column in the audience settings overrides it per audience.",
)
currency_option = click.option(
    "--currency",
    help="Name of the money unit shown with every amount, e.g. EUR (default: the "
    "audience settings' 'currency' column, else 'currency units').",
)

# Reading CSVs (#18) and bad rows of the event log (#20).


def _set_csv(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    from optimizer.io.csv_format import use_csv_format

    use_csv_format(**{param.name: value})


def csv_format_options(command):
    """``--csv-sep`` and ``--decimal``: how the command's CSV inputs are written."""
    command = click.option(
        "--decimal",
        type=click.Choice([".", ","]),
        expose_value=False,
        is_eager=True,
        callback=_set_csv,
        help="Decimal mark of numbers in the CSV inputs (default: detected; "
        "Excel in many locales writes 0,35).",
    )(command)
    return click.option(
        "--csv-sep",
        "sep",
        type=click.Choice([",", ";", "tab", "pipe"]),
        expose_value=False,
        is_eager=True,
        callback=_set_csv,
        help="Column separator of the CSV inputs (default: detected from the header).",
    )(command)


bad_rows_option = click.option(
    "--bad-rows",
    type=click.Choice(["drop", "report", "fail"]),
    default="drop",
    show_default=True,
    help="Rows of the log that break a rule (e.g. a won auction with cost 0): "
    "drop: leave them out when they are at most 0.1% of the log, listed in the "
    "model folder's bad_rows.csv, and refuse the log above that; report: list "
    "every problem and stop without training; fail: stop at the first one.",
)

# adplan backtest / adplan train --no-backtest
holdout_days_option = click.option(
    "--holdout-days",
    type=click.IntRange(1, 365),
    default=None,
    help="Last days of the log to forecast without having seen them"
    " [default: the last quarter of the log's days, at least 1].",
)
no_backtest_option = click.option(
    "--no-backtest",
    is_flag=True,
    envvar="ADPLAN_NO_BACKTEST",
    help="Skip the backtest (train without the last quarter of the log's days,"
    " forecast them) that calibrates the P10-P90 band; the band is then"
    " the model's own, unchecked (also ADPLAN_NO_BACKTEST=1).",
)
backtest_dir_option = click.option(
    "--backtest",
    "backtest_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder written by 'adplan backtest': adds how accurate the forecasts were.",
)
