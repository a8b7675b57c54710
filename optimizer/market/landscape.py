"""Bid landscapes: the distribution of the highest competing bid, by censored MLE.

Per audience a, the log competing price of an impression with quality shift x
(its predicted log conversion rate minus the audience mean) is a mixture

    log P ~ sum_j pi_j N(mu_a + beta_a x + loc_j, sigma_j),   loc = (0, d_a), d_a > 0.

What a row reveals depends on the auction type:
- second price: a win reveals the price (the cost) exactly; a loss says P > bid;
- first price: a win says P < bid, a loss says P > bid (interval-censored).

All audiences are fitted jointly by penalized maximum likelihood (L-BFGS from
optax) with Gaussian priors centred on learned pooled means, so small audiences
borrow strength from the rest. The plain log-normal (pi_2 = 0) and the
two-component mixture are both fitted; the mixture is kept per audience only
where BIC prefers it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, logsumexp

from optimizer import devices
from optimizer.io.progress import progress_bar

# Prior scales of the partial pooling (log-price units): price levels differ a lot
# between audiences, spreads and quality slopes much less.
_PRIOR_SD = {
    "mu": 2.0,
    "log_sigma": 0.5,
    "beta": 0.5,
    "gap": 1.0,
    "log_sigma2": 0.7,
    "logit_pi2": 1.5,
}


@dataclasses.dataclass(frozen=True)
class LandscapeData:
    """Rows of the event log, as arrays (n rows, A audiences)."""

    audience: np.ndarray  # (n,) int32 audience index
    log_bid: np.ndarray  # (n,) float64 log of the bid
    log_cost: np.ndarray  # (n,) float64 log of the cost (won rows; 0 elsewhere)
    won: np.ndarray  # (n,) bool
    shift: np.ndarray  # (n,) float64 quality shift x
    n_audiences: int
    first_price: bool


def _unpack(theta: dict, mixture: jax.Array) -> dict:
    """Mixture parameters from the unconstrained ``theta``; where ``mixture`` is
    False the plain log-normal (second component of weight 0; its parameters
    unused, so their gradient is 0)."""
    sigma = jnp.exp(theta["log_sigma"])
    zeros, ones = jnp.zeros_like(sigma), jnp.ones_like(sigma)
    gap = jnp.where(mixture, jax.nn.softplus(theta["gap"]) + 0.05, zeros)
    sigma2 = jnp.where(mixture, jnp.exp(theta["log_sigma2"]), ones)
    pi2 = jnp.where(mixture, jax.nn.sigmoid(theta["logit_pi2"]), zeros)
    return {
        "mu": theta["mu"],
        "beta": theta["beta"],
        "loc": jnp.stack([zeros, gap], 1),
        "scale": jnp.stack([sigma, sigma2], 1),
        "weight": jnp.stack([1 - pi2, pi2], 1),
    }


def _row_loglik(p: dict, data: LandscapeData) -> jax.Array:
    """(n,) log-likelihood of each row under unpacked parameters ``p``."""
    a = data.audience
    centre = (p["mu"][a] + p["beta"][a] * data.shift)[:, None] + p["loc"][a]  # (n, 2)
    scale = p["scale"][a]
    log_w = jnp.log(jnp.maximum(p["weight"][a], 1e-300))
    z_bid = (data.log_bid[:, None] - centre) / scale
    lose = logsumexp(log_w + log_ndtr(-z_bid), axis=1)
    if data.first_price:
        win = logsumexp(log_w + log_ndtr(z_bid), axis=1)
    else:
        z_cost = (data.log_cost[:, None] - centre) / scale
        win = logsumexp(
            log_w - 0.5 * z_cost**2 - jnp.log(scale) - 0.5 * jnp.log(2 * jnp.pi), axis=1
        )
    return jnp.where(data.won, win, lose)


_MIXTURE_ONLY = ("gap", "log_sigma2", "logit_pi2")


def _penalty(theta: dict, hyper: dict, mixture: jax.Array) -> jax.Array:
    """The priors' negative log density; the second component's parameters only
    count (and move) in the mixture fit."""
    total = 0.0
    for name, value in theta.items():
        term = 0.5 * jnp.sum(((value - hyper[name]) / _PRIOR_SD[name]) ** 2)
        total = total + (
            jnp.where(mixture, term, 0.0) if name in _MIXTURE_ONLY else term
        )
    return total


def _init(data: LandscapeData) -> dict:
    """Starting parameters of either family (host arrays, (A,) each)."""
    anchor = np.where(data.won & ~data.first_price, data.log_cost, data.log_bid)
    counts = np.bincount(data.audience, minlength=data.n_audiences)
    sums = np.bincount(data.audience, weights=anchor, minlength=data.n_audiences)
    mu0 = np.where(counts > 0, sums / np.maximum(counts, 1), anchor.mean())
    a = data.n_audiences
    return {
        "mu": np.asarray(mu0, np.float64),
        "log_sigma": np.full(a, np.log(0.5)),
        "beta": np.zeros(a),
        "gap": np.full(a, 0.5),
        "log_sigma2": np.full(a, np.log(0.3)),
        "logit_pi2": np.full(a, -1.5),
    }


@devices.stage(("n_audiences", "first_price", "iterations", "tolerance"))
def _solve(
    rows: dict,
    weight: jax.Array,
    theta: dict,
    mixture: jax.Array,
    *,
    n_audiences: int,
    first_price: bool,
    iterations: int,
    tolerance: float,
) -> tuple[dict, jax.Array]:
    """L-BFGS to convergence, compiled once per (row bucket, auction type): both
    families run the same program.

    Args:
        rows: LandscapeData's (n,) arrays by field name.
        weight: (n,) 1 for a real row, 0 for padding (see :func:`_row_bucket`).
        theta: starting parameters, (A,) each; the priors centre on their means.
        mixture: () bool, the two-component fit (False: the plain log-normal,
            whose second-component parameters stay at their start).

    Returns:
        Unpacked params and the (A,) log-likelihood per audience.
    """
    data = LandscapeData(**rows, n_audiences=n_audiences, first_price=first_price)
    hyper = {k: jnp.mean(v) for k, v in theta.items()}
    n = jnp.sum(weight)

    def objective(variables: dict) -> jax.Array:
        p = _unpack(variables["theta"], mixture)
        return (
            -jnp.sum(weight * _row_loglik(p, data))
            + _penalty(variables["theta"], variables["hyper"], mixture)
        ) / n

    import optax  # here: commands that only plan never import it

    variables = {"theta": theta, "hyper": hyper}
    solver = optax.lbfgs()
    state = solver.init(variables)
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry: tuple) -> tuple:
        variables, state, i, previous, _ = carry
        value, grad = value_and_grad(variables, state=state)
        updates, state = solver.update(
            grad, state, variables, value=value, grad=grad, value_fn=objective
        )
        return optax.apply_updates(variables, updates), state, i + 1, value, previous

    def keep_going(carry: tuple) -> jax.Array:
        _, _, i, value, previous = carry
        return (i < iterations) & (jnp.abs(previous - value) > tolerance)

    carry = (variables, state, 0, jnp.inf, -jnp.inf)
    variables, *_ = jax.lax.while_loop(keep_going, step, carry)
    params = _unpack(variables["theta"], mixture)
    per_audience = jax.ops.segment_sum(
        weight * _row_loglik(params, data), data.audience, n_audiences
    )
    return params, per_audience


def _row_bucket(n: int) -> int:
    """Rows a fit of ``n`` rows is padded to: at least 1024, then four sizes per
    doubling (at most 25% padding).

    >>> _row_bucket(10), _row_bucket(3000), _row_bucket(4096), _row_bucket(4097)
    (1024, 3072, 4096, 5120)
    """
    if n <= 1024:
        return 1024
    step = 1 << (n.bit_length() - 3)
    return -(-n // step) * step


# Row sizes the fits of one block have used (None outside :func:`sharing_row_sizes`).
_SHARED_SIZES: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "landscape_row_sizes", default=None
)


@contextlib.contextmanager
def sharing_row_sizes():
    """Within the block, a fit pads its rows to a larger size an earlier fit of
    the block used, when that adds at most 50% rows, so it runs the program
    already compiled: ``adplan train``'s full fit and its band check's shorter
    log. Padding rows have weight 0, so the fit moves by rounding only."""
    token = _SHARED_SIZES.set([])
    try:
        yield
    finally:
        _SHARED_SIZES.reset(token)


def _padded_size(n: int) -> int:
    size = _row_bucket(n)
    shared = _SHARED_SIZES.get()
    if shared is not None:
        size = min((s for s in shared if size <= s <= 1.5 * n), default=size)
        shared.append(size)
    return size


def _fit(
    data: LandscapeData, mixture: bool, iterations: int, tolerance: float = 1e-9
) -> tuple[dict, np.ndarray]:
    """Penalized MLE; returns unpacked params and per-audience log-likelihood.

    Rows are padded (repeating the last, with weight 0) to a bucket size, so logs
    of similar length share one compiled fit (see also :func:`sharing_row_sizes`)."""
    n = len(data.audience)
    size = _padded_size(n)
    rows = {
        f.name: getattr(data, f.name)
        for f in dataclasses.fields(data)
        if f.name not in ("n_audiences", "first_price")
    }
    params, per_audience = _solve(
        devices.pad_leading(rows, size),
        (np.arange(size) < n).astype(np.float64),
        _init(data),
        np.bool_(mixture),
        n_audiences=data.n_audiences,
        first_price=data.first_price,
        iterations=iterations,
        tolerance=tolerance,
    )
    return jax.tree_util.tree_map(np.asarray, params), np.asarray(per_audience)


def subsample(
    data: LandscapeData, max_rows: int = 300_000, seed: int = 0
) -> LandscapeData:
    """At most ``max(3000, max_rows / A)`` rows per audience, drawn uniformly.

    Landscape fits need thousands of auctions per audience, not millions; capping
    keeps training time flat for big logs.
    """
    cap = max(3000, max_rows // max(data.n_audiences, 1))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.audience))
    rank = np.empty_like(order)
    ranked = order[np.argsort(data.audience[order], kind="stable")]
    starts = np.searchsorted(data.audience[ranked], np.arange(data.n_audiences))
    rank[ranked] = np.arange(len(ranked)) - np.repeat(
        starts, np.diff(np.append(starts, len(ranked)))
    )
    keep = np.sort(np.flatnonzero(rank < cap))
    return dataclasses.replace(
        data,
        audience=data.audience[keep],
        log_bid=data.log_bid[keep],
        log_cost=data.log_cost[keep],
        won=data.won[keep],
        shift=data.shift[keep],
    )


def fit_landscapes(
    data: LandscapeData, iterations: int = 200, progress: bool = False
) -> dict[str, np.ndarray]:
    """Fit log-normal and mixture landscapes; keep the mixture where BIC prefers it.

    ``data`` should already be capped with :func:`subsample` for big logs;
    ``progress`` shows a bar (one step per family) on a terminal.

    Returns:
        dict of per-audience arrays: mu (A,), beta (A,), loc/scale/weight (A, 2),
        family (A,) str in {"lognormal", "mixture"}, loglik (A,).
    """
    # Two coarse steps: draw each one (tqdm skips redraws within 0.1 s by default).
    with progress_bar(2, "bid landscapes", "fit", show=progress, mininterval=0) as bar:
        plain, ll_plain = _fit(data, False, iterations)
        bar.update(1)
        mixed, ll_mixed = _fit(data, True, iterations)
        bar.update(1)
    counts = np.bincount(data.audience, minlength=data.n_audiences)
    # Three extra parameters per audience: the mixture must earn 1.5 log(n) of likelihood.
    use_mix = 2 * (ll_mixed - ll_plain) > 3 * np.log(np.maximum(counts, 2))
    chosen = {
        k: np.where(
            use_mix.reshape((-1,) + (1,) * (plain[k].ndim - 1)), mixed[k], plain[k]
        )
        for k in plain
    }
    chosen["family"] = np.where(use_mix, "mixture", "lognormal")
    chosen["loglik"] = np.where(use_mix, ll_mixed, ll_plain)
    return chosen


def row_components(
    fit: dict[str, np.ndarray], data: LandscapeData
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's fitted log-price components: location, scale, share, each (n, 2)."""
    a = data.audience
    centre = (fit["mu"][a] + fit["beta"][a] * data.shift)[:, None] + fit["loc"][a]
    return tuple(
        np.asarray(part, np.float64)
        for part in (centre, fit["scale"][a], fit["weight"][a])
    )


def row_win_probability(
    fit: dict[str, np.ndarray], data: LandscapeData, log_bid: np.ndarray | None = None
) -> np.ndarray:
    """(n,) fitted P(price < bid) for each row (at its own bid unless ``log_bid`` given)."""
    log_bid = data.log_bid if log_bid is None else log_bid
    from scipy.special import ndtr  # here: plans never import scipy

    centre, scale, weight = row_components(fit, data)
    return np.sum(weight * ndtr((log_bid[:, None] - centre) / scale), axis=1)


def naive_fit(data: LandscapeData) -> dict[str, np.ndarray]:
    """Log-normal fitted to won costs only, ignoring lost auctions (the biased baseline)."""
    won = data.won
    counts = np.bincount(data.audience[won], minlength=data.n_audiences)
    sums = np.bincount(
        data.audience[won], weights=data.log_cost[won], minlength=data.n_audiences
    )
    mean = sums / np.maximum(counts, 1)
    sq = np.bincount(
        data.audience[won], weights=data.log_cost[won] ** 2, minlength=data.n_audiences
    )
    sd = np.sqrt(np.maximum(sq / np.maximum(counts, 1) - mean**2, 1e-4))
    a = data.n_audiences
    return {
        "mu": mean,
        "beta": np.zeros(a),
        "loc": np.zeros((a, 2)),
        "scale": np.stack([sd, np.ones(a)], 1),
        "weight": np.stack([np.ones(a), np.zeros(a)], 1),
    }
