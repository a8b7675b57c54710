"""market.json: write and read a :class:`~optimizer.market.fit.FittedMarket`.

Format ``adplan-market/1``: the audience list, auction type, current bids and
spend, bid ceilings, the market parameters as plain lists, and the fit's
metrics, which also hold the :class:`~optimizer.market.fit.RateEvidence`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from optimizer.errors import InputError
from optimizer.io.files import check_model_folder
from optimizer.market.fit import FittedMarket, RateEvidence
from optimizer.market.params import MONEY, MarketParams
from optimizer.market.spread import Spread


def params_to_json(params: MarketParams) -> dict[str, list]:
    """Plain lists for market.json."""
    return {
        f.name: jnp.asarray(getattr(params, f.name)).tolist()
        for f in dataclasses.fields(params)
        if getattr(params, f.name) is not None
    }


def params_from_json(data: dict[str, list]) -> MarketParams:
    """Inverse of :func:`params_to_json` (float64 arrays)."""
    return MarketParams(
        **{
            f.name: jax.device_put(np.asarray(data[f.name], MONEY))
            for f in dataclasses.fields(MarketParams)
            if f.name in data or f.default is dataclasses.MISSING
        }
    )


def _evidence(metrics: dict, names: list[str]) -> RateEvidence:
    """The rate evidence kept in market.json's metrics; what an older file lacks
    is zero (conversions seen) or None (expected conversions, spread fit)."""
    anchoring = metrics.get("rate_anchoring", {})
    entries = [anchoring.get(name, {}) for name in names]
    expected = None
    if all("conversions_expected" in e for e in entries):
        expected = np.array([e["conversions_expected"] for e in entries], float)
    spread = metrics.get("rate_spread", {}).get("conversion")
    return RateEvidence(
        conversions_observed=np.array(
            [e.get("conversions_observed", 0) for e in entries], float
        ),
        conversions_expected=expected,
        spread=Spread(**spread) if spread else None,
    )


def save_market(model_dir: Path, market: FittedMarket) -> None:
    """Write market.json into ``model_dir`` (caller handles atomicity)."""
    data = {
        "format": "adplan-market/1",
        "audiences": market.names,
        "auction_type": market.auction_type,
        "has_value": market.has_value,
        "current_bid": market.current_bid.tolist(),
        "current_daily_spend": market.current_daily_spend.tolist(),
        "bid_ceiling": market.bid_ceiling.tolist(),
        "params": params_to_json(market.params),
        "metrics": market.metrics,
    }
    (Path(model_dir) / "market.json").write_text(json.dumps(data), encoding="utf-8")


def load_market(model_dir: str | Path) -> FittedMarket:
    """Read market.json from a model folder written by ``adplan train``; its
    SHA-256 must match the one model.json records (as the rate-model files must)."""
    path = Path(model_dir) / "market.json"
    if not path.is_file():
        raise InputError(
            f"model {model_dir}: no market.json. Train a model first: adplan train --events FILE --out {model_dir}"
        )
    if (Path(model_dir) / "model.json").is_file():
        check_model_folder(model_dir, only=("market.json",))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != "adplan-market/1":
            raise ValueError("unknown format")
        params = params_from_json(data["params"])
        a = len(data["audiences"])
        if (
            params.volume_per_day.shape != (a,)
            or params.weight.ndim != 2
            or params.weight.shape[0] != a
            or any(
                getattr(params, name) is not None
                and getattr(params, name).shape != (a,)
                for name in ("rate_slope", "rate_ref")
            )
            or (params.rate_slope is None) != (params.rate_ref is None)
        ):
            raise ValueError("array shapes do not match the audience list")
        if not all(
            bool(np.all(np.isfinite(np.asarray(getattr(params, f.name)))))
            for f in dataclasses.fields(params)
            if getattr(params, f.name) is not None
        ):
            raise ValueError("non-finite parameters")
        return FittedMarket(
            names=list(data["audiences"]),
            auction_type=data["auction_type"],
            params=params,
            current_bid=np.asarray(data["current_bid"], float),
            current_daily_spend=np.asarray(data["current_daily_spend"], float),
            bid_ceiling=np.asarray(data["bid_ceiling"], float),
            has_value=bool(data["has_value"]),
            metrics=data["metrics"],
            evidence=_evidence(data["metrics"], list(data["audiences"])),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"model {model_dir}: market.json is damaged or from another tool ({exc}). Retrain with adplan train."
        ) from exc


RULE_ROWS = "rule_rows.parquet"


def save_rule_rows(model_dir: Path, market: FittedMarket) -> None:
    """Write rule_rows.parquet (what bid rules are fitted from), when the fit kept it."""
    if market.rule_rows is not None:
        market.rule_rows.to_parquet(Path(model_dir) / RULE_ROWS, index=False)


def load_rule_rows(model_dir: str | Path):
    """rule_rows.parquet of a model folder as a DataFrame, or None for a model
    trained before bid rules (checked against model.json's SHA-256 when recorded)."""
    import pandas as pd

    path = Path(model_dir) / RULE_ROWS
    if not path.is_file():
        return None
    if (Path(model_dir) / "model.json").is_file():
        check_model_folder(model_dir, only=(RULE_ROWS,))
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"model {model_dir}: {RULE_ROWS} is damaged ({exc}). Retrain with adplan train."
        ) from exc
