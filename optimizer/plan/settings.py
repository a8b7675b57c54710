"""Audience settings and scenario modifiers as per-audience arrays, and the checks a
planner can act on before anything is solved (unknown audiences, group caps without
groups, bids given as CPM, minimum spends the budget or the market cannot carry).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd

from optimizer import devices
from optimizer.allocate.config import SolveConfig
from optimizer.allocate.problem import Problem, capacity
from optimizer.errors import InfeasibleError, InputError
from optimizer.market.params import MarketParams, shift_market
from optimizer.plan.scenario import Scenario


def index_of(names: list[str], audiences, where: str) -> np.ndarray:
    lookup = {n: i for i, n in enumerate(names)}
    unknown = [a for a in audiences if a not in lookup]
    if unknown:
        raise InputError(
            f"{where}: unknown audience(s) {', '.join(repr(u) for u in unknown[:5])}. Use names exactly as in the event log: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}."
        )
    return np.array([lookup[a] for a in audiences], dtype=int)


def setting(
    settings: pd.DataFrame | None, names: list[str], column: str, default: float
) -> np.ndarray:
    values = np.full(len(names), default, dtype=float)
    if settings is not None and column in settings.columns:
        idx = index_of(names, settings["audience"], "audience settings")
        given = settings[column].to_numpy(dtype=float)
        values[idx] = np.where(np.isnan(given), default, given)
    return values


def apply_market_settings(
    params: MarketParams,
    settings: pd.DataFrame | None,
    names: list[str],
    scenario: Scenario,
) -> MarketParams:
    volume = setting(settings, names, "volume_per_day", np.nan)
    value = setting(settings, names, "value_per_conversion", np.nan)
    params = dataclasses.replace(
        params,
        volume_per_day=jax.device_put(
            np.where(np.isnan(volume), np.asarray(params.volume_per_day), volume)
        ),
        value=jax.device_put(
            np.where(np.isnan(value)[:, None], np.asarray(params.value), value[:, None])
        ),
    )
    rate = np.zeros(len(names))
    if scenario.rate_shift:
        rate[index_of(names, list(scenario.rate_shift), "scenario [rate_shift]")] = (
            list(scenario.rate_shift.values())
        )
    return shift_market(params, scenario.price_shift, rate)


def groups_of(
    settings: pd.DataFrame | None, names: list[str], scenario: Scenario
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if not scenario.group_caps:
        return np.zeros(len(names), int), np.zeros(0), []
    if settings is None or "group" not in settings.columns:
        raise InputError(
            "scenario [group_caps] needs a 'group' column in the audience settings (--audiences FILE) saying which audiences belong to each group."
        )
    labels = np.array([""] * len(names), dtype=object)
    labels[index_of(names, settings["audience"], "audience settings")] = settings[
        "group"
    ].to_numpy()
    unknown = [g for g in scenario.group_caps if g not in set(labels)]
    if unknown:
        raise InputError(
            f"scenario [group_caps]: no audience is in group(s) {unknown}; groups in the settings: {sorted(set(labels) - {''})}."
        )
    groups = list(scenario.group_caps)
    lookup = {g: i for i, g in enumerate(groups)}
    index = np.array([lookup.get(lbl, len(groups)) for lbl in labels])
    caps = np.array([*scenario.group_caps.values(), np.inf])
    return index, caps, [*groups, "(no cap)"]


def currency_of(settings: pd.DataFrame | None, scenario: Scenario) -> str:
    """The money unit: the scenario's, else the settings' 'currency' column."""
    if scenario.currency:
        return scenario.currency
    if settings is not None and "currency" in settings.columns:
        given = sorted({str(c).strip() for c in settings["currency"].dropna()} - {""})
        if len(given) > 1:
            raise InputError(
                f"audience settings: column 'currency' names {len(given)} currencies ({', '.join(given)}); one plan uses one currency."
            )
        if given:
            return given[0]
    return "currency units"


def check_bid_unit(
    settings_bid: np.ndarray, scenario_bid: float | None, ceiling: np.ndarray
) -> None:
    """Refuse max bids 100x or more above the log's bids: a CPM taken per impression."""
    highest = float(np.max(ceiling)) / 3.0  # the ceiling is 3x the logged bids
    for where, bid in (
        ("max_bid (--max-bid or scenario)", scenario_bid),
        ("audience settings column 'max_bid'", np.nanmax(settings_bid, initial=0.0)),
    ):
        if bid is not None and bid >= 100 * highest:
            raise InputError(
                f"{where} = {bid:g} is a bid per impression, {bid / highest:,.0f}x the highest bids in the log (about {highest:.4g} per impression, CPM {1000 * highest:.4g}). If you meant CPM {bid:g}, use --max-bid-cpm {bid:g} (= --max-bid {bid / 1000:g}) or max_bid {bid / 1000:g}."
            )


# (A,) most each audience can spend over the horizon: one compiled program per
# audience count (not op by op, as an eager call would), its trace kept on disk.
capacity_of = devices.Stage(capacity, ("config",))


def check_feasible(
    problem: Problem, names: list[str], config: SolveConfig, groups: list[str]
) -> None:
    lower = np.asarray(problem.lower)
    budget = float(problem.budget)
    if lower.sum() > budget + 1e-9:
        raise InfeasibleError(
            f"the minimum spends add up to {lower.sum():,.2f} but the budget is {budget:,.2f}. Raise the budget to at least {lower.sum():,.2f} or lower some min_spend values."
        )
    cap = np.asarray(capacity_of(problem, config))
    short = np.flatnonzero(lower > cap * (1 + 1e-9))
    if short.size:
        i = short[0]
        raise InfeasibleError(
            f"audience '{names[i]}' has min_spend {lower[i]:,.2f}, but at its highest allowed bid it can only spend about {cap[i]:,.2f} in {float(problem.days):g} days. Lower its min_spend, raise its max_bid or plan a longer horizon."
        )
    if groups:
        caps = np.asarray(problem.group_cap)
        floors = np.bincount(
            np.asarray(problem.group), weights=lower, minlength=len(caps)
        )
        over = np.flatnonzero(floors > caps + 1e-9)
        if over.size:
            g = over[0]
            raise InfeasibleError(
                f"group '{groups[g]}' has a cap of {caps[g]:,.2f} but its audiences' minimum spends add up to {floors[g]:,.2f}."
            )
