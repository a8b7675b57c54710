"""Scenario files (TOML): budget, horizon, objective, auction type, targets, what-ifs.

Precedence is defaults < file < command-line flags; a what-if file is laid over
its base scenario. Unknown keys are errors that
name the key, so a typo never silently changes a plan.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optimizer.errors import InputError

OBJECTIVES = ("conversions", "value", "clicks")
AUCTION_TYPES = ("second_price", "first_price")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A planning question. Money is in the event log's currency."""

    # Short label shown in reports and comparisons.
    name: str = "base"
    # Total budget over the horizon (currency); None means "give it on the command line".
    budget: float | None = None
    # Horizon of the plan in days; None means "give it on the command line".
    days: float | None = None
    # What to maximize: expected conversions, conversion value, or clicks (a proxy
    # when conversions are too few to trust).
    objective: str = "conversions"
    # How the exchange charges a won impression; None = as detected from the log.
    auction_type: str | None = None
    # Require the plan to spend the whole budget (otherwise it may spend less).
    spend_all: bool = False
    # Highest bid per impression allowed anywhere (currency); None = no limit.
    max_bid: float | None = None
    # Smallest useful budget per audience over the horizon (currency): below it an
    # audience is paused. None = 1% of the budget (1% of the daily budget a day).
    min_budget: float | None = None
    # Name of the money unit shown next to every amount (e.g. "EUR"); None = from
    # the audience settings' 'currency' column, else "currency units".
    currency: str | None = None
    # Aggregate targets: the plan may spend less than the budget to meet them.
    max_cpa: float | None = None
    min_roas: float | None = None
    # What-if modifiers.
    budget_scale: float = 1.0
    price_shift: float = 0.0
    rate_shift: Mapping[str, float] = dataclasses.field(default_factory=dict)
    remove_audiences: tuple[str, ...] = ()
    # Per-audience spend bounds over the horizon: {audience: {"min_spend": x, "max_spend": y}}.
    bounds: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    # Spend caps per audience group (the 'group' column of the audience settings).
    group_caps: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("objective", self.objective, OBJECTIVES)
        if self.auction_type is not None:
            _check_choice("auction_type", self.auction_type, AUCTION_TYPES)
        _check_positive("budget_scale", self.budget_scale)
        for key in ("budget", "days", "max_bid", "max_cpa", "min_roas"):
            value = getattr(self, key)
            if value is not None:
                _check_positive(key, value)
        if self.min_budget is not None and (
            not _is_number(self.min_budget) or self.min_budget < 0
        ):
            raise InputError(
                f"scenario key 'min_budget' = {self.min_budget!r} must be a number >= 0 (0 = never pause)."
            )
        if not (-0.95 < self.price_shift < 10):
            raise InputError(
                f"scenario key 'price_shift' = {self.price_shift} is out of range: it is a "
                "relative change of market prices, e.g. 0.15 for +15% (must be above -0.95)."
            )
        for audience, shift in self.rate_shift.items():
            if not (-1.0 < float(shift) < 10):
                raise InputError(
                    f"scenario [rate_shift] '{audience}' = {shift} is out of range: use a "
                    "relative change such as -0.1 for -10% (must be above -1)."
                )
        for audience, bound in self.bounds.items():
            unknown = set(bound) - {"min_spend", "max_spend"}
            if unknown:
                raise InputError(
                    f"scenario [bounds.{audience}] has unknown key(s) {sorted(unknown)}; "
                    "use min_spend and/or max_spend."
                )
            for key, value in bound.items():
                if not _is_number(value) or value < 0:
                    raise InputError(
                        f"scenario [bounds.{audience}] {key} = {value!r} must be a number >= 0."
                    )
            if bound.get("min_spend", 0) > bound.get("max_spend", math.inf):
                raise InputError(
                    f"scenario [bounds.{audience}]: min_spend is above max_spend."
                )
        for group, cap in self.group_caps.items():
            if not _is_number(cap) or cap < 0:
                raise InputError(
                    f"scenario [group_caps] '{group}' = {cap!r} must be a number >= 0."
                )

    @property
    def effective_budget(self) -> float | None:
        """Budget after ``budget_scale`` (currency over the horizon)."""
        return None if self.budget is None else self.budget * self.budget_scale

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for plan.json and reports."""
        data = dataclasses.asdict(self)
        data["rate_shift"] = dict(self.rate_shift)
        data["remove_audiences"] = list(self.remove_audiences)
        data["bounds"] = {k: dict(v) for k, v in self.bounds.items()}
        data["group_caps"] = dict(self.group_caps)
        return data


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(
            f"scenario key '{key}' = {value!r} is not one of {', '.join(choices)}."
        )


def _check_positive(key: str, value: Any) -> None:
    if not _is_number(value) or value <= 0:
        raise InputError(f"scenario key '{key}' = {value!r} must be a number > 0.")


_FIELDS = {f.name: f for f in dataclasses.fields(Scenario)}
_TABLE_ALIASES = {"targets": ("max_cpa", "min_roas")}


def _coerce(key: str, value: Any) -> Any:
    """Convert TOML values to the field's type, or raise a clear error."""
    if key in ("rate_shift", "bounds", "group_caps"):
        if not isinstance(value, dict):
            raise InputError(f"scenario key '{key}' must be a table, e.g. [{key}].")
        return {
            str(k): (dict(v) if isinstance(v, dict) else v) for k, v in value.items()
        }
    if key == "remove_audiences":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError(
                "scenario key 'remove_audiences' must be a list of audience names."
            )
        return tuple(value)
    if key in ("name", "objective", "auction_type", "currency"):
        if not isinstance(value, str):
            raise InputError(f"scenario key '{key}' must be text, got {value!r}.")
        return value
    if key == "spend_all":
        if not isinstance(value, bool):
            raise InputError("scenario key 'spend_all' must be true or false.")
        return value
    if value is None:
        return None
    if not _is_number(value):
        raise InputError(f"scenario key '{key}' = {value!r} must be a number.")
    return float(value)


def scenario_from_mapping(
    data: Mapping[str, Any], source: str = "scenario"
) -> Scenario:
    """Build a Scenario from a parsed TOML mapping; unknown keys are errors."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in _TABLE_ALIASES and isinstance(value, dict):
            for sub, subval in value.items():
                if sub not in _TABLE_ALIASES[key]:
                    raise InputError(
                        f"{source}: unknown key '{key}.{sub}'. Allowed: {', '.join(_TABLE_ALIASES[key])}."
                    )
                flat[sub] = subval
            continue
        if key not in _FIELDS:
            raise InputError(
                f"{source}: unknown key '{key}'. Allowed keys: {', '.join(sorted(_FIELDS))}."
            )
        flat[key] = value
    try:
        return Scenario(**{k: _coerce(k, v) for k, v in flat.items()})
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


def load_scenario(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Scenario:
    """Read a scenario TOML (optional) and apply command-line overrides on top.

    Args:
        path: TOML file, or None for defaults only.
        overrides: values from flags; None values are ignored (flag not given).
    """
    data: dict[str, Any] = {}
    source = "scenario"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise InputError(f"scenario {path}: file not found.")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"scenario {path}: not valid TOML ({exc}).") from exc
    scenario = scenario_from_mapping(data, source)
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    if changes:
        current = {k: v for k, v in scenario.to_dict().items() if v is not None}
        merged = {**current, **changes}
        scenario = scenario_from_mapping(merged, source)
    return scenario


def read_scenario_file(path: Path, base: Scenario) -> Scenario:
    """A what-if file laid over the base scenario (its keys win)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"scenario {path}: cannot be read as TOML ({exc}).") from exc
    merged = {k: v for k, v in base.to_dict().items() if v not in (None, {}, [])}
    merged.pop("name", None)
    merged.update(data)
    merged.setdefault("name", Path(path).stem)
    return scenario_from_mapping(merged, str(path))
