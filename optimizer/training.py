"""``adplan train``: fit the rate network and the market model into one model folder."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from optimizer.fileio import atomic_dir, file_sha256, write_json
from optimizer.market_fit import fit_market, save_market
from optimizer.plan_output import library_versions
from optimizer.rates import fit_rate_model
from optimizer.schema import read_event_log


def train_model(
    events_path: Path,
    model_dir: Path,
    *,
    epochs: int,
    seed: int,
    validation_days: float,
    auction_type: str | None,
    quiet: bool,
) -> list[str]:
    """Train both models on ``events_path`` and write ``model_dir``; return summary lines."""
    events = read_event_log(events_path)
    rates = fit_rate_model(
        events,
        seed=seed,
        epochs=epochs,
        validation_days=validation_days,
        progress=not quiet,
    )
    preds = rates.predict(events)
    if not quiet:
        print("Fitting bid landscapes and volumes ...", flush=True)
    market = fit_market(events, preds["p_click"], preds["p_conversion"], auction_type)
    with atomic_dir(model_dir) as tmp:
        rates.save(tmp)
        save_market(tmp, market)
        model_id = hashlib.sha256((tmp / "market.json").read_bytes()).hexdigest()[:12]
        write_json(
            tmp / "metrics.json", {"rates": rates.metrics, "market": market.metrics}
        )
        write_json(
            tmp / "model.json",
            {
                "format": "adplan-model/1",
                "model_id": model_id,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "events_file": str(events_path),
                "events_sha256": file_sha256(events_path),
                "rows": len(events),
                "audiences": market.names,
                "auction_type": market.auction_type,
                "seed": seed,
                "epochs": epochs,
                "validation_days": validation_days,
                "versions": library_versions(),
            },
        )
    fits = market.metrics["landscapes"]
    worst = max(fits, key=lambda f: f["max_abs_win_rate_error"])
    conv = rates.metrics.get(
        "conversion", rates.metrics.get("heads", {}).get("conversion", {})
    )
    lines = [
        f"Trained on {len(events):,} auctions, {len(market.names)} audiences ({market.auction_type}).",
        f"  model folder: {model_dir} (model id {model_id})",
        f"  bid landscapes: {sum(f['family'] == 'mixture' for f in fits)} two-mode, worst win-rate fit off by {worst['max_abs_win_rate_error']:.1%} ('{worst['audience']}')",
    ]
    if isinstance(conv, dict) and conv.get("auc") is not None:
        lines.append(
            f"  conversion model: validation AUC {conv['auc']:.3f}, log-loss {conv['log_loss']:.4f}"
        )
    return lines
