"""The ``adplan`` command line: generate, train, predict, plan, simulate, whatif,
frontier, report, backtest. Heavy libraries are imported inside commands so ``--help`` is fast;
every contract error becomes one clear message and exit code 1, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from optimizer import __version__
from optimizer.commands import daily
from optimizer.commands import options as opt
from optimizer.commands.backtest_cli import backtest_command
from optimizer.commands.bid import bid_command, bid_rule_options, rule_flags
from optimizer.commands.runtime import (
    device_mesh,
    echo,
    enable_x64,
    example,
    friendly_errors,
    unwind_on_sigterm,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adplan")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors.")
@opt.no_cache_option
@click.pass_context
def main(ctx: click.Context, quiet: bool, no_cache: bool) -> None:
    """adplan: how much to spend and what to bid per audience, and why."""
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
    ctx.obj["no_cache"] = no_cache
    unwind_on_sigterm()


@main.command(
    epilog=example("adplan generate --out out/market --audiences 24 --days 14 --seed 0")
)
@opt.out_folder_option("Folder for events.csv (daily.csv), audiences.csv, truth.json.")
@opt.audience_count_option
@opt.log_days_option
@opt.seed_option("Random seed (same seed, same market).")
@opt.auction_type_option("How the synthetic exchange charges.", detect=False)
@opt.competition_slope_option
@opt.realism_option
@click.pass_context
@daily.daily_generate_option
@friendly_errors
def generate(
    ctx: click.Context,
    out_dir: Path,
    n_audiences: int,
    days: int,
    seed: int,
    auction_type: str,
    competition_slope: float,
    realism: str,
) -> None:
    """Write a synthetic market with known truth (events, audience settings, truth)."""
    from optimizer.commands.generate import write_synthetic_market

    for line in write_synthetic_market(
        out_dir, n_audiences, days, seed, auction_type, competition_slope, realism
    ):
        echo(ctx, line)


@main.command(
    epilog=example("adplan train --events out/market/events.csv --out out/model")
)
@opt.events_option(
    "Event log (CSV or Parquet), one row per auction; or a folder of such files.",
    dir_okay=True,
)
@opt.out_folder_option("Model folder to write.", dest="model_dir")
@opt.epochs_option
@opt.seed_option("Random seed (same seed and data, same model).")
@opt.validation_days_option
@opt.auction_type_option(
    "How the log's exchange charged (auto: detect from costs).", detect=True
)
@opt.chunk_rows_option
@opt.shard_data_option
@opt.coordinator_option
@opt.num_processes_option
@opt.process_id_option
@opt.bad_rows_option
@opt.csv_format_options
@opt.no_backtest_option
@click.pass_context
@daily.train_inputs
@friendly_errors
def train(
    ctx: click.Context,
    events: Path,
    model_dir: Path,
    epochs: int,
    seed: int,
    validation_days: float,
    auction_type: str,
    chunk_rows: int,
    shard_data: bool,
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    bad_rows: str,
    no_backtest: bool,
) -> None:
    """Learn conversion rates and the market from an auction log or a daily report.

    Uses every GPU of the machine; --coordinator, --num-processes and --process-id
    let several machines train one model from an auction log's chunks."""
    enable_x64()
    from optimizer import distributed

    # Before anything touches a device (importing the training code does).
    distributed.initialize(coordinator, num_processes, process_id)
    from optimizer.commands.train import train_command

    summary = train_command(
        events,
        model_dir,
        epochs=epochs,
        seed=seed,
        validation_days=validation_days,
        auction_type=None if auction_type == "auto" else auction_type,
        quiet=ctx.obj["quiet"],
        chunk_rows=chunk_rows,
        shard_data=shard_data,
        bad_rows=bad_rows,
        backtest=not no_backtest,
    )
    for line in summary:
        echo(ctx, line)


@main.command(
    epilog=example(
        "adplan predict --model out/model --events out/market/events.csv --out scored.csv"
    )
)
@opt.model_option
@opt.events_option("Event log to score (CSV or Parquet).", dir_okay=False)
@opt.out_file_option(
    "CSV to write: the input rows plus p_click, p_conversion, p_conversion_given_click "
    "(a daily report: p_click, p_conversion per impression and expected_clicks, "
    "expected_conversions)."
)
@opt.csv_format_options
@click.pass_context
@daily.predict_inputs
@friendly_errors
def predict(ctx: click.Context, model_dir: Path, events: Path, out_file: Path) -> None:
    """Score auctions (click and conversion probability per won impression), or a
    daily report's rows (their rates per impression and expected counts)."""
    enable_x64()
    from optimizer.commands.predict import write_predictions

    for line in write_predictions(model_dir, events, out_file):
        echo(ctx, line)


@main.command(
    epilog=example(
        "adplan plan --model out/model --budget 4000 --days 14 --audiences out/market/audiences.csv --currency EUR --out out/plan"
    )
)
@opt.model_option
@opt.budget_option("Total budget over the horizon (currency).")
@opt.horizon_option()
@opt.settings_option(
    "Audience settings CSV (min/max spend, values, volumes, max bids, groups)."
)
@opt.scenario_option("Scenario TOML (targets, bounds, what-ifs).")
@opt.objective_option(
    "Maximize conversions, conversion value, or clicks (a proxy for a new campaign "
    "with few conversions)."
)
@opt.target_conversions_option
@opt.max_cpa_option
@opt.min_roas_option
@opt.max_bid_option
@opt.max_bid_cpm_option
@opt.min_budget_option
@opt.currency_option
@opt.spend_all_option
@bid_rule_options
@opt.out_folder_option("Folder for plan.csv and plan.json.")
@opt.csv_format_options
@opt.devices_option
@click.pass_context
@friendly_errors
def plan(
    ctx: click.Context,
    model_dir: Path,
    settings_file: Path | None,
    scenario_file: Path | None,
    out_dir: Path,
    target_conversions: float | None,
    devices: int,
    **flags: Any,
) -> None:
    """Recommend a budget and a bid per audience for the best expected outcome."""
    enable_x64()
    from optimizer.commands.plan import scenario_from_flags, write_plan

    scenario = scenario_from_flags(scenario_file, flags)
    echo(
        ctx, "Planning: solving budgets and bids, then pricing each binding constraint"
    )
    for line in write_plan(
        model_dir,
        scenario,
        settings_file,
        scenario_file,
        out_dir,
        target_conversions,
        mesh=device_mesh(devices, "audiences"),
        rules=rule_flags(flags),
    ):
        echo(ctx, line)


@main.command(
    epilog=example(
        "adplan simulate --model out/model --plan out/plan --runs 200 --out out/simulation"
    )
)
@opt.model_option
@opt.plan_option("Plan folder from adplan plan.", required=True)
@opt.runs_option
@opt.seed_option("Random seed (same seed, same simulation).")
@opt.pacing_option
@opt.truth_option
@opt.out_folder_option("Folder for summary.csv, summary.json and paths.csv.")
@opt.rate_uncertainty_option
@click.pass_context
@friendly_errors
def simulate(
    ctx: click.Context,
    model_dir: Path,
    plan_dir: Path,
    runs: int,
    seed: int,
    pacing: str,
    truth_file: Path | None,
    out_dir: Path,
    rate_uncertainty: bool,
) -> None:
    """Replay the plan auction by auction: spread of spend and conversions."""
    enable_x64()
    from optimizer.commands.simulate import write_simulation

    for line in write_simulation(
        model_dir,
        plan_dir,
        out_dir,
        runs=runs,
        seed=seed,
        pacing=pacing,
        truth_file=truth_file,
        quiet=ctx.obj["quiet"],
        rate_uncertainty=rate_uncertainty,
    ):
        echo(ctx, line)


@main.command(
    epilog=example(
        "adplan report --model out/model --plan out/plan --simulation out/simulation --out report.html"
    )
)
@opt.model_option
@opt.plan_option("Plan folder from adplan plan.", required=True)
@opt.simulation_option
@opt.whatif_option
@opt.frontier_option
@opt.out_file_option("HTML file to write.")
@opt.report_currency_option
@opt.backtest_dir_option
@click.pass_context
@friendly_errors
def report(
    ctx: click.Context,
    model_dir: Path,
    plan_dir: Path,
    simulation_dir: Path | None,
    whatif_dir: Path | None,
    frontier_dir: Path | None,
    out_file: Path,
    currency: str | None,
    backtest_dir: Path | None,
) -> None:
    """Write one self-contained HTML report (opens offline, safe to mail)."""
    from optimizer.io.atomic import check_writable
    from reports import write_report

    check_writable(out_file, folder=False)
    path = write_report(
        model_dir,
        plan_dir,
        out_file,
        simulation_dir=simulation_dir,
        whatif_dir=whatif_dir,
        frontier_dir=frontier_dir,
        currency=currency,
        backtest_dir=backtest_dir,
    )
    echo(ctx, f"Report written to {path}")


@main.command(
    epilog=example(
        "adplan whatif --model out/model --plan out/plan --scenario simulations/scenarios/prices_plus_15.toml --out out/whatif"
    )
)
@opt.model_option
@opt.plan_option("Base plan folder (or give --budget and --days).")
@opt.budget_option("Base budget when no --plan is given.")
@opt.horizon_option("Horizon when no --plan is given.")
@opt.settings_option()
@opt.scenario_option("Scenario TOML; repeat for several.", multiple=True)
@opt.budget_scale_option
@opt.price_shift_option
@opt.rate_shift_option
@opt.out_folder_option("Folder for comparison.csv and plans/.")
@opt.csv_format_options
@opt.devices_option
@click.pass_context
@friendly_errors
def whatif(
    ctx: click.Context,
    model_dir: Path,
    plan_dir: Path | None,
    budget: float | None,
    days: float | None,
    settings_file: Path | None,
    scenario_files: tuple[Path, ...],
    budget_scale: float | None,
    price_shift: float | None,
    rate_shift: tuple[str, ...],
    out_dir: Path,
    devices: int,
) -> None:
    """Compare scenarios: keep the plan in a changed world, or re-optimize."""
    enable_x64()
    from optimizer.commands.whatif import write_whatif

    inline = dict(
        budget_scale=budget_scale, price_shift=price_shift, rate_shift=rate_shift
    )
    echo(ctx, "What-if: solving every scenario in one batch ...")
    for line in write_whatif(
        model_dir,
        plan_dir,
        budget,
        days,
        settings_file,
        scenario_files,
        inline,
        out_dir,
        mesh=device_mesh(devices, "scenarios"),
    ):
        echo(ctx, line)


@main.command(
    epilog=example(
        "adplan frontier --model out/model --budgets 1000:20000:50 --days 14 --out out/frontier"
    )
)
@opt.model_option
@opt.budgets_option
@opt.horizon_option(required=True)
@opt.settings_option()
@opt.scenario_option("Scenario TOML (bounds, what-ifs).")
@opt.objective_option("Maximize conversions, value or clicks.")
@opt.plan_option("Mark this plan's budget on the frontier.")
@opt.out_folder_option("Folder for frontier.csv.")
@opt.csv_format_options
@opt.devices_option
@click.pass_context
@friendly_errors
def frontier(
    ctx: click.Context,
    model_dir: Path,
    budgets: str,
    days: float,
    settings_file: Path | None,
    scenario_file: Path | None,
    objective: str | None,
    plan_dir: Path | None,
    out_dir: Path,
    devices: int,
) -> None:
    """Best expected outcome at each budget: where more money stops paying."""
    enable_x64()
    from optimizer.commands.whatif import write_frontier

    echo(ctx, "Frontier: solving the best plan at each budget ...")
    for line in write_frontier(
        model_dir,
        budgets,
        days,
        settings_file,
        scenario_file,
        objective,
        plan_dir,
        out_dir,
        mesh=device_mesh(devices, "audiences"),
    ):
        echo(ctx, line)


main.add_command(bid_command)  # adplan bid: score auctions with the plan's bids
main.add_command(backtest_command)  # adplan backtest: the forecast checked on the log

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
