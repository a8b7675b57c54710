"""The rate network fitted on a daily report's counts instead of per-impression labels.

A daily report has no impressions to label, only counts per (ad set, breakdown,
day). Summed per *cell* (ad set, breakdown levels, weekday), those counts are
sufficient for the network: the binomial log-likelihood of ``k`` clicks (or
conversions) out of ``n`` impressions is the per-impression log-loss of the
auction-log training summed over the cell. The network is the same
(:class:`optimizer.rates.model.RateNet`, the fields are the ad set, every
breakdown column and the weekday), with two differences:

* both heads are per impression: platform conversions include view-through ones,
  which can outnumber clicks, so head 1 is not chained to the click head;
* the fit is full batch to convergence under a Gaussian prior on every
  parameter around its initial value (no effects, the pooled rates): a MAP
  estimate in which rare ad sets and levels are pulled toward the others.

Uncertainty: the same fit on ``BOOTSTRAPS`` resamples of the report's days
(each day's rows weighted by a Poisson(1) draw), all replicates trained at once
(``vmap``); their spread is each cell's uncertainty, and includes the
day-to-day variation a binomial alone would miss. Cells are padded to a power of
two, so a report of another size seldom compiles the fit again.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import nnx

from optimizer.features import FeatureBatch
from optimizer.io.daily import WEEKDAYS, breakdown_labels, weekday_names
from optimizer.io.progress import progress_bar
from optimizer.rates.model import NetConfig, RateNet

BOOTSTRAPS = 32
_STEPS = 600
_CHUNK = 50  # steps per call between progress updates (divides _STEPS)
_LEARNING_RATE = 0.05
_TX = optax.adam(_LEARNING_RATE)
_PRIOR_SD = 1.0  # sd of the wide (first-order) terms' shift from the start, logit scale
_DEEP_PRIOR_SD = (
    0.05  # sd of the embeddings and the MLP: interactions need strong evidence
)
_NET = {"embed_dim": 4, "hidden": (16,)}
_MEASURES = ("impressions", "clicks", "conversions")


@dataclasses.dataclass(frozen=True)
class CountRates:
    """Click and conversion rate per impression of every cell of a daily report.

    Attributes:
        cells: one row per (audience, breakdown levels, weekday): those columns,
            ``impressions``, ``clicks``, ``conversions`` (observed, summed over the
            report's days) and the fitted ``p_click``, ``p_conversion`` with
            ``p_click_sd_log`` / ``p_conversion_sd_log`` (sd of the log rate
            across the bootstrap fits). Not yet calibrated per ad set.
        fields: the categorical fields, "audience" first and "weekday" last.
        effects: per field other than audience, one dict per level: ``level``,
            ``impressions``, ``click_factor``, ``conversion_factor`` (the level's
            rate over its ad sets' average rate) and ``click_sd_log``,
            ``conversion_sd_log`` (their sd across the bootstrap fits, log scale).
    """

    cells: pd.DataFrame
    fields: tuple[str, ...]
    effects: dict[str, list[dict]]


def fit_count_rates(
    rows: pd.DataFrame, breakdowns: list[str], seed: int = 0, show: bool = False
) -> CountRates:
    """Fit the network on a validated daily report's rows (``date``, ``audience``,
    ``breakdowns``, ``impressions``, ``clicks``, ``conversions``; several rows per
    cell are fine) and return every cell's rates with their uncertainty (``show``:
    a progress bar on a terminal)."""
    fields = ("audience", *breakdowns, "weekday")
    keyed = rows.assign(
        weekday=weekday_names(rows["date"]),
        **{b: breakdown_labels(rows[b]) for b in breakdowns},
    )
    grouped = keyed.groupby(list(fields), sort=True, observed=True)
    cells = grouped[list(_MEASURES)].sum().reset_index()
    codes, sizes = _codes(cells, fields)
    counts = _bootstrap_counts(keyed, grouped.ngroup().to_numpy(), len(cells), seed)
    totals = counts[0].sum(axis=0)
    n = max(totals[0], 1.0)
    base = tuple(_logit(min(max(k, 0.5), n - 0.5) / n) for k in totals[1:])
    cfg = NetConfig(sizes, 0, **_NET)
    graphdef, state = nnx.split(
        RateNet(cfg, base_logits=base, rngs=nnx.Rngs(params=seed))
    )
    size = 1 << max(int(len(cells) - 1).bit_length(), 4)
    pad = size - len(cells)
    padded_codes = np.pad(codes, ((0, pad), (0, 0)))
    padded_counts = np.pad(counts, ((0, 0), (0, pad), (0, 0)))
    log_rates = np.asarray(
        _fit_replicates(graphdef, state, padded_codes, padded_counts, show, len(cells))
    )[:, : len(cells)]
    point, spread = log_rates[0], log_rates[1:].std(axis=0)
    effects = {f: _level_effects(cells, f, log_rates) for f in fields[1:]}
    cells = cells.assign(
        p_click=np.exp(point[:, 0]),
        p_conversion=np.exp(point[:, 1]),
        p_click_sd_log=spread[:, 0],
        p_conversion_sd_log=spread[:, 1],
    )
    return CountRates(cells, fields, effects)


def _level_effects(cells: pd.DataFrame, field: str, log_rates: np.ndarray) -> list:
    """Each level's rate relative to the average rate of its impressions' ad sets,
    per head: replicate 0's ratio and the sd of the log ratio over the others
    (levels without impressions are left out)."""
    n = cells["impressions"].to_numpy(float)[None, :, None]
    rates = np.exp(log_rates)  # (R, C, 2)
    audience = pd.factorize(cells["audience"])[0]
    level, names = pd.factorize(cells[field].astype(str))
    per_audience = np.zeros((rates.shape[0], audience.max() + 1, 2))
    mass = np.bincount(audience, weights=n[0, :, 0])
    for r in range(rates.shape[0]):
        for h in range(2):
            per_audience[r, :, h] = np.bincount(audience, weights=(n * rates)[r, :, h])
    average = per_audience / np.maximum(mass, 1e-300)[None, :, None]
    expected = n * average[:, audience, :]  # each cell at its ad set's average rate
    out = []
    for j, name in enumerate(names):
        mine = level == j
        if not n[0, mine, 0].sum() > 0:  # no impressions: nothing to compare
            continue
        ratio = (n * rates)[:, mine].sum(axis=1) / np.maximum(
            expected[:, mine].sum(axis=1), 1e-300
        )  # (R, 2)
        log_ratio = np.log(np.maximum(ratio, 1e-300))
        out.append(
            {
                "level": str(name),
                "impressions": float(n[0, mine, 0].sum()),
                "click_factor": float(ratio[0, 0]),
                "conversion_factor": float(ratio[0, 1]),
                "click_sd_log": float(log_ratio[1:, 0].std()),
                "conversion_sd_log": float(log_ratio[1:, 1].std()),
            }
        )
    if field == "weekday":
        out.sort(key=lambda e: WEEKDAYS.index(e["level"]))
    return out


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def _codes(cells: pd.DataFrame, fields) -> tuple[np.ndarray, tuple[int, ...]]:
    """(C, F) rows of the shared embedding table (0 of each field is unused OOV)."""
    columns, sizes, offset = [], [], 0
    for field in fields:
        levels, inverse = np.unique(cells[field].astype(str), return_inverse=True)
        columns.append(inverse + 1 + offset)
        sizes.append(len(levels) + 1)
        offset += len(levels) + 1
    return np.stack(columns, axis=1).astype(np.int32), tuple(sizes)


def _bootstrap_counts(
    rows: pd.DataFrame, cell: np.ndarray, n_cells: int, seed: int
) -> np.ndarray:
    """(1 + BOOTSTRAPS, C, 3) impressions, clicks, conversions per cell (``cell``:
    each row's): the report as it is, then resampled by day (each day's rows
    weighted by a Poisson(1) draw)."""
    day = pd.factorize(rows["date"])[0]
    rng = np.random.default_rng([seed, 29])
    weights = np.vstack(
        [np.ones(day.max() + 1), rng.poisson(1.0, (BOOTSTRAPS, day.max() + 1))]
    )
    values = rows[list(_MEASURES)].to_numpy(float, copy=True)
    # at most one click and one conversion per impression ("all clicks", view-through)
    values[:, 1:] = np.minimum(values[:, 1:], values[:, :1])
    out = np.zeros((len(weights), n_cells, 3))
    for b, w in enumerate(weights):
        np.add.at(out[b], cell, values * w[day][:, None])
    return out


def _binomial_nll(log_p: jax.Array, k: jax.Array, n: jax.Array) -> jax.Array:
    """Minus the binomial log-likelihood of k successes of n at rate exp(log_p)."""
    log_q = jnp.log(-jnp.expm1(jnp.minimum(log_p, -1e-7)))
    return -(k * log_p + (n - k) * log_q)


def _prior_sd(path) -> float:
    """Prior sd of a parameter by its place in the network: the first-order terms
    (``wide`` per category, the heads' bias) loose, the rest tight."""
    names = jax.tree_util.keystr(path)
    first_order = "wide" in names or ("head" in names and "bias" in names)
    return _PRIOR_SD if first_order else _DEEP_PRIOR_SD


def _log_rates(graphdef, params, codes: jax.Array) -> jax.Array:
    """(C, 2) log click and log conversion rate per cell."""
    no_numeric = jnp.zeros((codes.shape[0], 0), jnp.float32)
    logits = nnx.merge(graphdef, params)(FeatureBatch(codes, no_numeric))
    return jax.nn.log_sigmoid(logits)


@functools.partial(jax.jit, static_argnums=0)
def _fit_chunk(graphdef, state, codes, counts, params, opt):
    """``_CHUNK`` Adam steps of every replicate's fit (``counts`` (R, C, 3);
    ``params``, ``opt``: the replicates' parameters and optimizer state, stacked;
    ``state``: the initial parameters the prior is centred on)."""

    def loss(params, replicate):
        n, k = replicate[:, 0], replicate[:, 1:]
        nll = _binomial_nll(_log_rates(graphdef, params, codes), k, n[:, None]).sum()
        shifts = jax.tree.map(jnp.subtract, params, state)
        prior = sum(
            jnp.sum(x**2) / _prior_sd(path) ** 2
            for path, x in jax.tree_util.tree_leaves_with_path(shifts)
        )
        return (nll + 0.5 * prior) / jnp.maximum(n.sum(), 1.0)

    def fit_one(replicate, params, opt):
        def step(carry, _):
            params, opt = carry
            grads = jax.grad(loss)(params, replicate)
            updates, opt = _TX.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), None

        return jax.lax.scan(step, (params, opt), None, _CHUNK)[0]

    return jax.vmap(fit_one)(counts.astype(jnp.float32), params, opt)


@functools.partial(jax.jit, static_argnums=0)
def _stacked_log_rates(graphdef, params, codes) -> jax.Array:
    """(R, C, 2) log rates per cell of every replicate's ``params``."""
    return jax.vmap(lambda p: _log_rates(graphdef, p, codes))(params)


def _fit_replicates(graphdef, state, codes, counts, show: bool, cells: int):
    """(R, C, 2) fitted log click and log conversion rate per cell, one fit per
    replicate of ``counts`` (R, C, 3), all from the same initial ``state``; a bar
    with ETA over the steps unless ``show`` is False (``cells``: how many of the
    C are real, for its label)."""
    codes, counts = jnp.asarray(codes), jnp.asarray(counts)
    n = counts.shape[0]
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), state)
    opt = jax.vmap(_TX.init)(params)
    with progress_bar(
        _STEPS, f"rate network ({cells:,} cells x {n} fits)", "step", show
    ) as bar:
        for _ in range(_STEPS // _CHUNK):
            params, opt = _fit_chunk(graphdef, state, codes, counts, params, opt)
            if not bar.disable:  # the bar follows the work done, not the queued
                jax.block_until_ready(params)
            bar.update(_CHUNK)
    return _stacked_log_rates(graphdef, params, codes)
