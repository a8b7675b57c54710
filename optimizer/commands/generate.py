"""``adplan generate``: write a synthetic market with known truth into a folder."""

from __future__ import annotations

from pathlib import Path

from optimizer.io.atomic import check_writable
from optimizer.io.files import atomic_dir, dumps_json, write_csv
from simulations.synthetic.generate import (
    audience_settings,
    generate_events,
    make_truth,
)


def write_synthetic_market(
    out_dir: Path,
    n_audiences: int,
    days: int,
    seed: int,
    auction_type: str,
    competition_slope: float,
    realism: str = "demo",
) -> list[str]:
    """Write events.csv, audiences.csv and truth.json into ``out_dir``; return summary lines."""
    check_writable(out_dir, folder=True)
    truth = make_truth(
        n_audiences, days, seed, auction_type, competition_slope, realism
    )
    events = generate_events(truth, seed)
    with atomic_dir(out_dir) as tmp:
        write_csv(tmp / "events.csv", events)
        write_csv(tmp / "audiences.csv", audience_settings(truth))
        (tmp / "truth.json").write_text(dumps_json(truth) + "\n", encoding="utf-8")
    kind = (
        "real-world shapes: price atoms, a price cap, a latent quality, drift"
        if realism == "real"
        else "demo market"
    )
    return [
        f"Synthetic market: {n_audiences} audiences, {days} days, {len(events):,} auctions ({auction_type}; {kind}).",
        f"  event log:          {out_dir / 'events.csv'}",
        f"  audience settings:  {out_dir / 'audiences.csv'}",
        f"  true market:        {out_dir / 'truth.json'}",
    ]
