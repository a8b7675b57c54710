"""``adplan bid``: the bid a plan gives each auction of a file (base x rule factor);
and the bid-rule options of ``adplan plan``.

The auctions file has the event log's columns minus the outcomes (at least
``audience``, the rule's feature columns and ``timestamp`` when the rule uses
the hour). It is read and written in chunks, so its size does not bound memory;
the output is the input with ``bid_factor``, ``bid`` (currency per impression)
and ``bid_cpm`` appended, written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from optimizer.commands import options as opt
from optimizer.commands.runtime import echo, enable_x64, example, friendly_errors

CHUNK_ROWS = 200_000
RULE_FLAGS = ("bid_rules", "factor_range", "max_levels")


def bid_rule_options(command):
    """``--bid-rules/--flat-bids``, ``--factor-range`` and ``--max-levels``."""
    command = click.option(
        "--max-levels",
        type=click.IntRange(1, 100),
        default=8,
        show_default=True,
        help="Most levels per feature with their own bid multiplier (rarer ones "
        "share 'other').",
    )(command)
    command = click.option(
        "--factor-range",
        default="0.1:10",
        show_default=True,
        metavar="LOW:HIGH",
        help="Smallest and largest bid multiplier a rule may use.",
    )(command)
    return click.option(
        "--bid-rules/--flat-bids",
        "bid_rules",
        default=True,
        show_default=True,
        help="Bid per impression by a rule (base bid x one multiplier per feature "
        "level, fitted to the conversion network) or one flat bid per audience.",
    )(command)


def rule_flags(flags: dict) -> tuple:
    """(bid by a rule, --factor-range, --max-levels) taken out of ``flags``."""
    return tuple(flags.pop(k) for k in RULE_FLAGS)


def score_auctions(
    model_dir: Path,
    plan_dir: Path,
    events: Path,
    out_file: Path,
    chunk_rows: int = CHUNK_ROWS,
) -> list[str]:
    """Write ``out_file``: every auction of ``events`` with its bid; summary lines."""
    import numpy as np
    import pandas as pd

    from optimizer.errors import InputError
    from optimizer.io.atomic import atomic_path, check_writable
    from optimizer.io.files import check_model_folder, safe_for_spreadsheets
    from optimizer.io.plan_dir import read_plan
    from optimizer.market.rules import HOUR, Rule, rule_columns
    from optimizer.market.store import load_market

    check_writable(out_file, folder=False)
    info = check_model_folder(model_dir)
    market = load_market(model_dir)
    doc, base, budget = read_plan(plan_dir, market.names, info.get("model_id"))
    section = doc.get("bid_rules") or {}
    rule = Rule.from_json(section["rule"]) if section.get("used") else None
    cap = np.asarray(section.get("max_bid") or np.full(len(base), np.inf))
    features = rule.features if rule is not None else []
    need = ["audience"] + [("timestamp" if f == HOUR else f) for f in features]
    names = pd.Index(market.names)
    rows = unseen = unknown = paused = 0
    try:
        reader = pd.read_csv(
            events, chunksize=chunk_rows, dtype=str, keep_default_na=False
        )
        with reader, atomic_path(out_file) as tmp:
            for i, chunk in enumerate(reader):
                missing = [c for c in need if c not in chunk.columns]
                if missing:
                    raise InputError(
                        f"auctions file {events}: missing column(s) {', '.join(missing)} "
                        f"({len(chunk):,}+ rows). The plan's bids read {', '.join(need)}; "
                        "give the event log's columns (outcomes may be left out)."
                    )
                log_f, new = np.zeros(len(chunk)), 0
                if rule is not None:
                    cols = _columns(chunk, features, rule_columns, events, rows)
                    log_f, new = rule.row_log_factor(cols)
                a = names.get_indexer(chunk["audience"].astype(str))
                known = a >= 0
                live = known & (budget[np.maximum(a, 0)] > 0)
                bid = np.where(
                    live,
                    np.minimum(
                        base[np.maximum(a, 0)] * np.exp(log_f), cap[np.maximum(a, 0)]
                    ),
                    0.0,
                )
                chunk["bid_factor"] = np.exp(log_f)
                chunk["bid"] = bid
                chunk["bid_cpm"] = 1000.0 * bid
                safe_for_spreadsheets(chunk).to_csv(
                    tmp, mode="a", header=i == 0, index=False
                )
                rows += len(chunk)
                unseen += new
                unknown += int((~known).sum())
                paused += int((known & ~live).sum())
    except FileNotFoundError as exc:
        raise InputError(f"auctions file {events}: not found. Check the path.") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(
            f"auctions file {events}: not a readable CSV ({exc}). Save it as CSV."
        ) from exc
    how = "base bid x rule factor" if rule is not None else "the flat bid per audience"
    lines = [f"Scored {rows:,} auctions with {how}; written to {out_file}"]
    if unseen:
        lines.append(
            f"  note: {unseen:,} auctions have a feature level the rule never saw; "
            "they get factor 1 for it."
        )
    if unknown:
        lines.append(
            f"  note: {unknown:,} auctions are in audiences the model does not know; "
            "their bid is 0 (not bought)."
        )
    if paused:
        lines.append(
            f"  note: {paused:,} auctions are in audiences the plan does not buy "
            "(budget 0); their bid is 0."
        )
    return lines


def _columns(chunk, features, rule_columns, events, offset):
    """The rule's columns of one chunk; a bad timestamp is a clear error."""
    from optimizer.errors import InputError

    try:
        return rule_columns(chunk, features)
    except (ValueError, TypeError) as exc:
        import pandas as pd

        ts = pd.to_datetime(chunk["timestamp"], utc=True, errors="coerce")
        bad = ts.isna().to_numpy().nonzero()[0]
        first = offset + (int(bad[0]) if len(bad) else 0) + 2
        raise InputError(
            f"auctions file {events}: column timestamp has {len(bad):,} unreadable "
            f"value(s), first on line {first}; write timestamps as ISO 8601, e.g. "
            "2024-05-01T13:00:00Z."
        ) from exc


@click.command(
    "bid",
    epilog=example(
        "adplan bid --model out/model --plan out/plan --events auctions.csv --out bids.csv"
    ),
)
@opt.model_option
@opt.plan_option("Plan folder from adplan plan.", required=True)
@opt.events_option(
    "Auctions to price: the event log's columns, outcomes may be left out.",
    dir_okay=False,
)
@opt.out_file_option("CSV to write: the auctions with bid_factor, bid and bid_cpm.")
@click.pass_context
@friendly_errors
def bid_command(ctx: click.Context, **kwargs: Any) -> None:
    """Give every auction in a file the bid the plan would place (base x rule)."""
    enable_x64()
    for line in score_auctions(
        kwargs["model_dir"], kwargs["plan_dir"], kwargs["events"], kwargs["out_file"]
    ):
        echo(ctx, line)
