"""Report stage: matplotlib figures rendered offline to inline SVG strings.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot, no GUI
backend, no global state) and saved as SVG with live text
(``svg.fonttype='none'``), which keeps files small and lets matplotlib escape
user text. Each chart gets its own ``svg.hashsalt`` so the ids of several SVGs
in one page never collide and output is reproducible. Functions take plain
sequences already read from result files; they draw, never compute results.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Callable, Sequence

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from reports import text

CURRENT = "#9aa5b1"
PLAN = "#2563eb"
ACCENT = "#d97706"
TRUTH = "#059669"
MUTED = "#64748b"
SERIES = ("#2563eb", "#9aa5b1", "#d97706", "#7c3aed")

# Figures are drawn 12 in wide and scaled to the page (~1220 px), so 9 pt text
# shows at about 13 px; rows of per-audience charts get 0.2 in each.
WIDTH = 12.0
PANEL_COLUMNS = 4
ROW_INCHES = 0.2
STYLE = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#94a3b8",
    "axes.grid": True,
    "grid.color": "#e2e8f0",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.titlesize": 9,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "xtick.color": "#475569",
    "ytick.color": "#475569",
}
_PROLOGUE = re.compile(r"\A.*?(?=<svg)", re.DOTALL)
_NAMESPACES = re.compile(r' xmlns(:xlink)?="[^"]*"')
_GROUP_IDS = re.compile(r'<g id="[^"]*"')


def _styled(chart: Callable[..., str]) -> Callable[..., str]:
    """Run a chart function, from figure to SVG, under the report's rcParams."""

    @functools.wraps(chart)
    def wrapper(*args, **kwargs) -> str:
        with matplotlib.rc_context(STYLE):
            return chart(*args, **kwargs)

    return wrapper


def label(name: str) -> str:
    """User text safe for matplotlib: ``$`` would otherwise start mathtext.

    >>> label("$5 deals")
    '\\\\$5 deals'
    """
    return name.replace("$", r"\$")


def money(name: str, currency: str) -> str:
    """An axis label with its currency, safe for matplotlib.

    >>> money("Total budget", "EUR")
    'Total budget (EUR)'
    """
    return f"{name} ({label(currency)})"


def to_svg(fig: Figure, name: str) -> str:
    """Inline SVG markup for ``fig``: no XML prologue, namespaces or group ids.

    Namespace URIs are dropped because HTML5 parsers add them to inline SVG; the
    ids of groups are dropped because they repeat across figures on one page.
    """
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": name}):
        fig.savefig(
            buffer,
            format="svg",
            bbox_inches="tight",
            pad_inches=0.05,
            metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
        )
    svg = _PROLOGUE.sub("", buffer.getvalue(), count=1)
    svg = _NAMESPACES.sub("", svg)
    svg = _GROUP_IDS.sub("<g", svg)
    return svg.replace("<svg ", f'<svg role="img" class="chart chart-{name}" ', 1)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _top_legend(fig: Figure, ax: Axes) -> None:
    """The legend of ``ax`` above the plot, where it never hides data."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncols=len(labels))


def _money_axis(axis) -> None:
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def _grid(count: int, width: float, panel_height: float) -> tuple[Figure, list[Axes]]:
    """A figure of small multiples, PANEL_COLUMNS wide; unused panels hidden."""
    rows = max(1, math.ceil(count / PANEL_COLUMNS))
    fig = _figure(width, panel_height * rows)
    axes = list(fig.subplots(rows, PANEL_COLUMNS, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def _bar_rows(names: Sequence[str]) -> tuple[Figure, Axes, np.ndarray]:
    """A horizontal chart with one row per name, first name on top."""
    fig = _figure(WIDTH, 1.1 + ROW_INCHES * len(names))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.set_yticks(y, [label(n) for n in names])
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.grid(axis="y", visible=False)
    return fig, ax, y


@_styled
def spend_vs_current(
    names: Sequence[str],
    current: Sequence[float],
    recommended: Sequence[float],
    currency: str = text.DEFAULT_CURRENCY,
) -> str:
    """Paired bars per audience: current spend and recommended budget (currency)."""
    fig, ax, y = _bar_rows(names)
    ax.barh(y - 0.2, current, height=0.38, color=CURRENT, label=text.LEGEND_CURRENT)
    ax.barh(
        y + 0.2, recommended, height=0.38, color=PLAN, label=text.LEGEND_RECOMMENDED
    )
    ax.set_xlabel(money(text.SPEND_XLABEL, currency))
    _money_axis(ax.xaxis)
    _top_legend(fig, ax)
    return to_svg(fig, "spend")


@_styled
def response_curves(
    panels: Sequence[dict], currency: str = text.DEFAULT_CURRENCY
) -> str:
    """Small multiples of spend -> conversions with current and planned points.

    Each panel dict holds ``name``, ``spend`` and ``conversions`` (curve lists),
    ``current`` and ``planned`` ((spend, conversions) pairs).
    """
    fig, axes = _grid(len(panels), WIDTH, 2.1)
    for ax, panel in zip(axes, panels, strict=True):
        ax.plot(panel["spend"], panel["conversions"], color=PLAN, lw=1.4)
        ax.plot(*panel["current"], "o", mfc="white", mec=MUTED, mew=1.4, ms=6)
        ax.plot(*panel["planned"], "o", color=ACCENT, ms=6)
        ax.set_title(label(panel["name"]), loc="left")
        _money_axis(ax.xaxis)
    for ax in axes[-PANEL_COLUMNS:]:
        ax.set_xlabel(money(text.CURVES_XLABEL, currency))
    for ax in axes[::PANEL_COLUMNS]:
        ax.set_ylabel(text.CURVES_YLABEL)
    handles = [
        axes[0].lines[1],
        axes[0].lines[2],
    ]
    fig.legend(
        handles,
        [text.LEGEND_CURRENT, text.LEGEND_RECOMMENDED],
        loc="outside upper right",
        ncols=2,
    )
    return to_svg(fig, "curves")


@_styled
def marginal_cpa(
    names: Sequence[str],
    average: Sequence[float],
    marginal: Sequence[float],
    optimum: float | None,
    currency: str = text.DEFAULT_CURRENCY,
) -> str:
    """Dots per audience: average and marginal CPA, with the optimum's line.

    NaN values (audiences without spend) are left out of the chart.
    """
    fig, ax, y = _bar_rows(names)
    ax.plot(average, y, "o", color=CURRENT, ms=6, label=text.LEGEND_AVERAGE_CPA)
    ax.plot(marginal, y, "D", color=PLAN, ms=5, label=text.LEGEND_MARGINAL_CPA)
    if optimum is not None:
        ax.axvline(optimum, color=ACCENT, lw=1.2, ls="--", label=text.LEGEND_OPTIMUM)
    values = np.asarray([*average, *marginal], float)
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size and finite.max() / finite.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(money(text.MARGINAL_XLABEL, currency))
    _top_legend(fig, ax)
    return to_svg(fig, "marginal")


@_styled
def frontier(
    budget: Sequence[float],
    conversions: Sequence[float],
    marginal: Sequence[float],
    chosen: tuple[float, float],
    current_spend: float | None,
    currency: str = text.DEFAULT_CURRENCY,
) -> str:
    """Conversions and marginal CPA against total budget, this plan marked.

    Args:
        budget, conversions, marginal: frontier rows, budget ascending.
        chosen: (budget, expected conversions) of this plan.
        current_spend: today's spend over the horizon, or None.
    """
    fig = _figure(WIDTH, 3.2)
    left, right = fig.subplots(1, 2)
    left.plot(budget, conversions, color=PLAN, lw=1.6)
    left.plot(*chosen, "o", color=ACCENT, ms=8, label=text.LEGEND_CHOSEN)
    left.set_ylabel(text.FRONTIER_YLABEL)
    right.plot(budget, marginal, color=PLAN, lw=1.6)
    right.set_ylabel(money(text.FRONTIER_MARGINAL_YLABEL, currency))
    for ax in (left, right):
        ax.axvline(chosen[0], color=ACCENT, lw=1, ls="--")
        if current_spend is not None:
            ax.axvline(
                current_spend,
                color=MUTED,
                lw=1,
                ls=":",
                label=text.LEGEND_CURRENT_SPEND,
            )
        ax.set_xlabel(money(text.FRONTIER_XLABEL, currency))
        _money_axis(ax.xaxis)
    _top_legend(fig, left)
    return to_svg(fig, "frontier")


@_styled
def simulation_fan(hours: Sequence[float], bands: Sequence[dict]) -> str:
    """Hourly cumulative shares (pacing): P10-P90 band, median, plan line.

    Each band dict holds ``p10``, ``p50``, ``p90`` (fractions, one per hour),
    ``planned`` (the plan's expected share, or None) and ``ylabel``.
    """
    fig = _figure(WIDTH, 3.0)
    axes = fig.subplots(1, len(bands), squeeze=False)[0]
    for ax, band in zip(axes, bands, strict=True):
        ax.fill_between(
            hours,
            band["p10"],
            band["p90"],
            color=PLAN,
            alpha=0.2,
            lw=0,
            label=text.LEGEND_BAND,
        )
        ax.plot(hours, band["p50"], color=PLAN, lw=1.4, label=text.LEGEND_MEDIAN)
        if band["planned"] is not None:
            ax.axhline(
                band["planned"],
                color=ACCENT,
                lw=1,
                ls="--",
                label=text.LEGEND_PLANNED_SPEND,
            )
        ax.set_xlabel(text.SIM_HOUR_XLABEL)
        ax.set_ylabel(band["ylabel"])
        ax.set_xlim(0, max(hours))
        ax.set_ylim(0, 1.05)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    _top_legend(fig, axes[0])
    return to_svg(fig, "fan")


@_styled
def simulation_intervals(
    names: Sequence[str],
    forecast: dict[str, Sequence[float]],
    truth: dict[str, Sequence[float]] | None,
    planned: Sequence[float],
) -> str:
    """P10-P90 conversions per audience (forecast, and truth when given).

    ``forecast`` and ``truth`` map ``p10``, ``p50``, ``p90`` to one value per
    name; ``planned`` is the plan's expected conversions per name.
    """
    fig, ax, y = _bar_rows(names)
    shift = 0.18 if truth is not None else 0.0
    _interval(ax, y - shift, forecast, PLAN, text.LEGEND_FORECAST)
    if truth is not None:
        _interval(ax, y + shift, truth, TRUTH, text.LEGEND_TRUTH)
    ax.plot(planned, y, "|", color=ACCENT, ms=12, mew=2, label=text.LEGEND_PLANNED)
    ax.set_xlabel(text.SIM_AUDIENCE_XLABEL)
    _top_legend(fig, ax)
    return to_svg(fig, "intervals")


def _interval(ax: Axes, y: np.ndarray, stats: dict, color: str, name: str) -> None:
    """One horizontal P10-P90 segment per row with a dot at P50."""
    ax.hlines(y, stats["p10"], stats["p90"], color=color, lw=3, alpha=0.55, label=name)
    ax.plot(stats["p50"], y, "o", color=color, ms=4)


@_styled
def whatif(
    scenarios: Sequence[str], variants: dict[str, Sequence[float]], baseline: float
) -> str:
    """Grouped bars of expected conversions per scenario and variant.

    Args:
        scenarios: scenario names, one row each.
        variants: display name -> conversions per scenario (NaN when missing).
        baseline: this plan's expected conversions (vertical reference line).
    """
    fig, ax, y = _bar_rows(scenarios)
    height = 0.8 / max(len(variants), 1)
    colors = (CURRENT, PLAN, ACCENT, TRUTH)
    for i, ((name, values), color) in enumerate(
        zip(variants.items(), colors, strict=False)
    ):
        offset = (i - (len(variants) - 1) / 2) * height
        ax.barh(y + offset, values, height=height * 0.95, color=color, label=name)
    ax.axvline(baseline, color=ACCENT, lw=1, ls="--", label=text.LEGEND_PLANNED)
    ax.set_xlabel(text.WHATIF_XLABEL)
    _top_legend(fig, ax)
    return to_svg(fig, "whatif")


@_styled
def calibration(heads: Sequence[dict]) -> str:
    """Observed against predicted rate per bin, one panel per head.

    Each head dict holds ``title`` and ``series``: display name ->
    (predicted rates, observed rates), both fractions.
    """
    fig = _figure(WIDTH, 3.4)
    axes = fig.subplots(1, len(heads), squeeze=False)[0]
    for ax, head in zip(axes, heads, strict=True):
        top = 0.0
        for (name, (pred, obs)), color in zip(
            head["series"].items(), SERIES, strict=False
        ):
            ax.plot(pred, obs, "o-", color=color, ms=3.5, lw=1.2, label=name)
            top = max(top, *pred, *obs)
        ax.plot(
            [0, top],
            [0, top],
            color="#cbd5e1",
            lw=1,
            ls="--",
            label=text.LEGEND_DIAGONAL,
        )
        ax.set_title(head["title"], loc="left")
        ax.set_xlabel(text.CALIBRATION_XLABEL)
        ax.set_ylabel(text.CALIBRATION_YLABEL)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(PercentFormatter(1.0, decimals=2))
    axes[0].legend(loc="upper left")
    return to_svg(fig, "calibration")


@_styled
def landscapes(panels: Sequence[dict], currency: str = text.DEFAULT_CURRENCY) -> str:
    """Small multiples of win rate against bid: observed, fitted and naive.

    Each panel dict holds ``name``, ``bid`` (CPM), ``empirical`` and ``fitted``
    win rates, and ``naive`` (win rates, or None).
    """
    fig, axes = _grid(len(panels), WIDTH, 2.0)
    for ax, panel in zip(axes, panels, strict=True):
        ax.plot(panel["bid"], panel["empirical"], "o", color=MUTED, ms=3.5)
        ax.plot(panel["bid"], panel["fitted"], color=PLAN, lw=1.4)
        if panel["naive"] is not None:
            ax.plot(panel["bid"], panel["naive"], color=ACCENT, lw=1, ls="--")
        ax.set_title(label(panel["name"]), loc="left")
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    for ax in axes[-PANEL_COLUMNS:]:
        ax.set_xlabel(money(text.LANDSCAPE_XLABEL, currency))
    for ax in axes[::PANEL_COLUMNS]:
        ax.set_ylabel(text.LANDSCAPE_YLABEL)
    names = [text.LEGEND_EMPIRICAL, text.LEGEND_FITTED, text.LEGEND_NAIVE]
    lines = axes[0].lines
    fig.legend(lines, names[: len(lines)], loc="outside upper right", ncols=3)
    return to_svg(fig, "landscapes")
