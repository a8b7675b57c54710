"""The ``adplan`` command line: generate, train, predict, plan, simulate, whatif,
frontier, report. Heavy libraries are imported inside commands so ``--help`` is fast;
every contract error becomes one clear message and exit code 1, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from optimizer import __version__
from optimizer.errors import InfeasibleError, InputError


def _enable_x64() -> None:
    """Money is summed in float64: switch JAX to 64-bit before any array exists."""
    import jax

    jax.config.update("jax_enable_x64", True)


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn contract errors into ClickException (exit 1, message, no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InfeasibleError as exc:
            raise click.ClickException(f"infeasible: {exc}") from None
        except InputError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


model_option = click.option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Model folder from adplan train.",
)
settings_option = click.option(
    "--audiences",
    "settings_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Audience settings CSV.",
)


devices_option = click.option(
    "--devices",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Spread the work over this many GPUs (or devices) of this machine; the "
    "results are the same.",
)


def device_mesh(count: int, axis: str):
    """None for one device, else a mesh over the first ``count`` devices."""
    if count == 1:
        return None
    import jax

    from optimizer import devices

    available = jax.devices()
    if count > len(available):
        raise InputError(
            f"--devices {count}: this machine has {len(available)} device(s) "
            f"({available[0].platform}). Pass --devices {len(available)} or fewer."
        )
    return devices.mesh(axis, available[:count])


def echo(ctx: click.Context, message: str) -> None:
    """Print unless --quiet was given."""
    if not ctx.obj.get("quiet"):
        click.echo(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adplan")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors.")
@click.pass_context
def main(ctx: click.Context, quiet: bool) -> None:
    """adplan: how much to spend and what to bid per audience, and why."""
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for events.csv, audiences.csv and truth.json.",
)
@click.option(
    "--audiences",
    "n_audiences",
    type=click.IntRange(1, 5000),
    default=24,
    show_default=True,
    help="Number of audiences.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 365),
    default=14,
    show_default=True,
    help="Days of auctions in the log.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed (same seed, same market).",
)
@click.option(
    "--auction-type",
    type=click.Choice(["second_price", "first_price"]),
    default="second_price",
    show_default=True,
    help="How the synthetic exchange charges.",
)
@click.option(
    "--competition-slope",
    type=click.FloatRange(0, 2),
    default=0.3,
    show_default=True,
    help="How much more better impressions cost (0 = no link).",
)
@click.pass_context
@friendly_errors
def generate(
    ctx: click.Context,
    out_dir: Path,
    n_audiences: int,
    days: int,
    seed: int,
    auction_type: str,
    competition_slope: float,
) -> None:
    """Write a synthetic market with known truth (events, audience settings, truth)."""
    from optimizer.io.files import atomic_dir, dumps_json
    from simulations.synthetic.generate import (
        audience_settings,
        generate_events,
        make_truth,
    )

    truth = make_truth(n_audiences, days, seed, auction_type, competition_slope)
    events = generate_events(truth, seed)
    with atomic_dir(out_dir) as tmp:
        events.to_csv(tmp / "events.csv", index=False)
        audience_settings(truth).to_csv(tmp / "audiences.csv", index=False)
        (tmp / "truth.json").write_text(dumps_json(truth) + "\n", encoding="utf-8")
    echo(
        ctx,
        f"Synthetic market: {n_audiences} audiences, {days} days, {len(events):,} auctions ({auction_type}).",
    )
    echo(ctx, f"  event log:          {out_dir / 'events.csv'}")
    echo(ctx, f"  audience settings:  {out_dir / 'audiences.csv'}")
    echo(ctx, f"  true market:        {out_dir / 'truth.json'}")


@main.command()
@click.option(
    "--events",
    type=click.Path(path_type=Path),
    required=True,
    help="Event log (CSV or Parquet), one row per auction; or a folder of such files.",
)
@click.option(
    "--out",
    "model_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Model folder to write.",
)
@click.option(
    "--epochs",
    type=click.IntRange(1, 1000),
    default=30,
    show_default=True,
    help="Most passes over the data (training stops earlier when validation stops improving).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed (same seed and data, same model).",
)
@click.option(
    "--validation-days",
    type=click.FloatRange(0, 365, min_open=True),
    default=2.0,
    show_default=True,
    help="Last days of the log held out to check and calibrate the model.",
)
@click.option(
    "--auction-type",
    type=click.Choice(["auto", "second_price", "first_price"]),
    default="auto",
    show_default=True,
    help="How the log's exchange charged (auto: detect from costs).",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(1000),
    default=1_000_000,
    show_default=True,
    help="Rows read at a time: memory stays bounded however long the log is.",
)
@click.option(
    "--shard-data",
    is_flag=True,
    help="Give each device its own chunks of the log instead of a copy of all rows "
    "(less memory per device; always on with several processes).",
)
@click.option(
    "--coordinator",
    metavar="HOST:PORT",
    help="Several machines: address of process 0 (env ADPLAN_COORDINATOR).",
)
@click.option(
    "--num-processes",
    type=click.IntRange(1),
    help="Several machines: how many processes train together (env ADPLAN_NUM_PROCESSES).",
)
@click.option(
    "--process-id",
    type=click.IntRange(0),
    help="Several machines: this process's number, 0 to N-1; 0 writes the model (env ADPLAN_PROCESS_ID).",
)
@click.pass_context
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
) -> None:
    """Learn conversion rates and the market (volumes, bid landscapes) from a log.

    Training uses every GPU (or device) of the machine; with --coordinator,
    --num-processes and --process-id, several machines train one model together,
    each reading its share of the log's chunks.
    """
    _enable_x64()
    from optimizer import distributed

    # Before anything touches a device (importing the training code does).
    distributed.initialize(coordinator, num_processes, process_id)
    from optimizer.commands.train import train_model

    summary = train_model(
        events,
        model_dir,
        epochs=epochs,
        seed=seed,
        validation_days=validation_days,
        auction_type=None if auction_type == "auto" else auction_type,
        quiet=ctx.obj["quiet"],
        chunk_rows=chunk_rows,
        shard_data=shard_data,
    )
    for line in summary:
        echo(ctx, line)


@main.command()
@model_option
@click.option(
    "--events",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Event log to score (CSV or Parquet).",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="CSV to write: the input rows plus p_click, p_conversion, p_conversion_given_click.",
)
@click.pass_context
@friendly_errors
def predict(ctx: click.Context, model_dir: Path, events: Path, out_file: Path) -> None:
    """Score auctions: click and conversion probability per won impression."""
    _enable_x64()
    from optimizer.io.files import write_csv
    from optimizer.io.schema import read_event_log, read_table
    from optimizer.rates.store import load_rate_model

    model = load_rate_model(model_dir)
    frame = read_event_log(events)
    preds = model.predict(frame)
    out = read_table(events, "event log")
    for name in ("p_click", "p_conversion", "p_conversion_given_click"):
        out[name] = preds[name]
    write_csv(out_file, out)
    echo(ctx, f"Scored {len(out):,} rows -> {out_file}")


@main.command()
@model_option
@click.option(
    "--budget",
    type=click.FloatRange(0, min_open=True),
    help="Total budget over the horizon (currency).",
)
@click.option(
    "--days", type=click.FloatRange(0, 366, min_open=True), help="Horizon in days."
)
@click.option(
    "--audiences",
    "settings_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Audience settings CSV (min/max spend, values, volumes, max bids, groups).",
)
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Scenario TOML (targets, bounds, what-ifs).",
)
@click.option(
    "--objective",
    type=click.Choice(["conversions", "value"]),
    help="Maximize conversions or conversion value.",
)
@click.option(
    "--target-conversions",
    type=click.FloatRange(0, min_open=True),
    help="Find the smallest budget reaching this many conversions (or this much value).",
)
@click.option(
    "--max-cpa",
    type=click.FloatRange(0, min_open=True),
    help="Spend less if needed to keep cost per conversion at most this.",
)
@click.option(
    "--min-roas",
    type=click.FloatRange(0, min_open=True),
    help="Spend less if needed to keep value / spend at least this.",
)
@click.option(
    "--max-bid",
    type=click.FloatRange(0, min_open=True),
    help="Highest bid per impression anywhere (currency).",
)
@click.option(
    "--spend-all",
    is_flag=True,
    default=None,
    help="Require the plan to spend the whole budget.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for plan.csv and plan.json.",
)
@devices_option
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
    _enable_x64()
    from optimizer.commands.plan import write_plan
    from optimizer.plan.scenario import load_scenario

    scenario = load_scenario(scenario_file, flags)
    for line in write_plan(
        model_dir,
        scenario,
        settings_file,
        scenario_file,
        out_dir,
        target_conversions,
        mesh=device_mesh(devices, "audiences"),
    ):
        echo(ctx, line)


@main.command()
@model_option
@click.option(
    "--plan",
    "plan_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Plan folder from adplan plan.",
)
@click.option(
    "--runs",
    type=click.IntRange(1, 100_000),
    default=200,
    show_default=True,
    help="Monte-Carlo replications.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed (same seed, same simulation).",
)
@click.option(
    "--pacing",
    type=click.Choice(["stop", "even"]),
    default="stop",
    show_default=True,
    help="stop: buy until the budget is spent; even: spread spend over the horizon.",
)
@click.option(
    "--truth",
    "truth_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="truth.json of a synthetic market: also replay the plan on the true market.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for summary.csv, summary.json and paths.csv.",
)
@click.option(
    "--rate-uncertainty/--no-rate-uncertainty",
    default=True,
    show_default=True,
    help="Also draw each audience's conversion rate from its uncertainty (wider, more honest bands).",
)
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
    _enable_x64()
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


@main.command()
@model_option
@click.option(
    "--plan",
    "plan_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Plan folder from adplan plan.",
)
@click.option(
    "--simulation",
    "simulation_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder from adplan simulate.",
)
@click.option(
    "--whatif",
    "whatif_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder from adplan whatif.",
)
@click.option(
    "--frontier",
    "frontier_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder from adplan frontier.",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="HTML file to write.",
)
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
) -> None:
    """Write one self-contained HTML report (opens offline, safe to mail)."""
    from reports import write_report

    path = write_report(
        model_dir,
        plan_dir,
        out_file,
        simulation_dir=simulation_dir,
        whatif_dir=whatif_dir,
        frontier_dir=frontier_dir,
    )
    echo(ctx, f"Report written to {path}")


@main.command()
@model_option
@click.option(
    "--plan",
    "plan_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Base plan folder (or give --budget and --days).",
)
@click.option(
    "--budget",
    type=click.FloatRange(0, min_open=True),
    help="Base budget when no --plan is given.",
)
@click.option(
    "--days",
    type=click.FloatRange(0, 366, min_open=True),
    help="Horizon when no --plan is given.",
)
@settings_option
@click.option(
    "--scenario",
    "scenario_files",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    help="Scenario TOML; repeat for several.",
)
@click.option(
    "--budget-scale",
    type=click.FloatRange(0, min_open=True),
    help="One-off: multiply the budget, e.g. 1.2.",
)
@click.option(
    "--price-shift",
    type=click.FloatRange(-0.95, 10, min_open=True),
    help="One-off: relative change of market prices, e.g. 0.15.",
)
@click.option(
    "--rate-shift",
    multiple=True,
    help="One-off: AUDIENCE=-0.1 changes that audience's conversion rate; repeatable.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for comparison.csv and plans/.",
)
@devices_option
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
    _enable_x64()
    from optimizer.commands.whatif import write_whatif

    inline = {
        "budget_scale": budget_scale,
        "price_shift": price_shift,
        "rate_shift": rate_shift,
    }
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


@main.command()
@model_option
@click.option("--budgets", required=True, help="FROM:TO:STEPS, e.g. 1000:20000:50.")
@click.option(
    "--days",
    type=click.FloatRange(0, 366, min_open=True),
    required=True,
    help="Horizon in days.",
)
@settings_option
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Scenario TOML (bounds, what-ifs).",
)
@click.option(
    "--objective",
    type=click.Choice(["conversions", "value"]),
    help="Maximize conversions or value.",
)
@click.option(
    "--plan",
    "plan_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Mark this plan's budget on the frontier.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for frontier.csv.",
)
@devices_option
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
    _enable_x64()
    from optimizer.commands.whatif import write_frontier

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
