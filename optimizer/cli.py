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
    from optimizer.fileio import atomic_dir, dumps_json
    from simulations.synthetic import audience_settings, generate_events, make_truth

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
