"""Rate network stage: encoded impressions -> click and post-click conversion logits.

Architecture (a small DLRM/FM hybrid, computed in float32):

* every categorical field is a row of one shared embedding table (dimension d);
  every numeric field j is a learned vector ``v_j`` scaled by its value, so both
  kinds take part in the interactions;
* the factorization-machine interaction is the vector of pairwise dot products
  ``<e_i, e_j>`` between field embeddings;
* an MLP over [embeddings, interactions, numeric values] feeds two heads, each
  plus a first-order (wide) term: a scalar per category and per numeric field.

The heads follow ESMM: ``p_click = sigmoid(l_click)`` and
``p_conversion = sigmoid(l_click) * sigmoid(l_cvr)``, both trained over all won
impressions, so the post-click rate never sees the click-only selection bias.

:func:`predict_logits` runs a frozen network over encoded rows on the host, in
fixed-size chunks; :func:`head_log_odds` turns its logits into the uncalibrated
log-odds of each head.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optimizer.features import FeatureBatch

N_HEADS = 2  # 0: click per impression, 1: conversion per click (post-click)
_PREDICT_CHUNK = 65_536


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """Shape of the rate network (stored in config.json).

    Attributes:
        field_sizes: embedding rows per categorical field (vocabulary + OOV).
        n_numeric: number of numeric fields.
        embed_dim: embedding dimension d.
        hidden: widths of the shared MLP layers.
    """

    field_sizes: tuple[int, ...]
    n_numeric: int
    embed_dim: int = 8
    hidden: tuple[int, ...] = (64, 32)

    @property
    def n_fields(self) -> int:
        """Fields that take part in the interaction (categorical + numeric)."""
        return len(self.field_sizes) + self.n_numeric


class RateNet(nnx.Module):
    """ESMM click / post-click network; ``__call__`` returns (n, 2) float32 logits."""

    def __init__(
        self, cfg: NetConfig, *, base_logits: tuple[float, float], rngs: nnx.Rngs
    ) -> None:
        """Build the layers.

        Args:
            cfg: network shape.
            base_logits: initial (click, post-click) logits, the training base
                rates, so training starts calibrated even for very rare events.
            rngs: parameter initialization keys.
        """
        d, rows = cfg.embed_dim, int(sum(cfg.field_sizes))
        init = nnx.initializers.normal(0.01)
        self.embed = nnx.Embed(rows, d, embedding_init=init, rngs=rngs)
        self.wide = nnx.Embed(
            rows, N_HEADS, embedding_init=nnx.initializers.zeros, rngs=rngs
        )
        self.numeric_vectors = nnx.Param(
            init(rngs.params(), (cfg.n_numeric, d), jnp.float32)
        )
        self.numeric_wide = nnx.Param(jnp.zeros((cfg.n_numeric, N_HEADS), jnp.float32))
        n_pairs = cfg.n_fields * (cfg.n_fields - 1) // 2
        width = cfg.n_fields * d + n_pairs + cfg.n_numeric
        layers = []
        for out in cfg.hidden:
            layers.append(nnx.Linear(width, out, rngs=rngs))
            width = out
        self.layers = nnx.List(layers)
        self.head = nnx.Linear(
            width,
            N_HEADS,
            kernel_init=nnx.initializers.zeros,
            bias_init=lambda *_: jnp.asarray(base_logits, jnp.float32),
            rngs=rngs,
        )

    def __call__(self, batch: FeatureBatch) -> jax.Array:
        """(n, 2) float32 logits: column 0 click, column 1 conversion given click."""
        x = batch.numeric.astype(jnp.float32)  # the network computes in float32
        fields = jnp.concatenate(
            [self.embed(batch.codes), x[:, :, None] * self.numeric_vectors[...][None]],
            axis=1,
        )
        gram = jnp.einsum("nfd,ngd->nfg", fields, fields)
        left, right = np.triu_indices(fields.shape[1], k=1)
        hidden = jnp.concatenate(
            [fields.reshape(fields.shape[0], -1), gram[:, left, right], x], axis=1
        )
        for layer in self.layers:
            hidden = jax.nn.relu(layer(hidden))
        wide = self.wide(batch.codes).sum(axis=1) + x @ self.numeric_wide[...]
        return self.head(hidden) + wide


def rate_logits(
    graphdef: nnx.GraphDef, state: nnx.State, batch: FeatureBatch
) -> jax.Array:
    """Pure form of ``RateNet.__call__`` over a frozen ``(graphdef, state)``."""
    return nnx.merge(graphdef, state)(batch)


def esmm_log_probs(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Log p(click) and log p(conversion) per impression, each (n,) float32.

    ``log p(conversion) = log sigmoid(l_click) + log sigmoid(l_cvr)``, kept in log
    space because conversion rates can be ~1e-4.
    """
    log_sig = jax.nn.log_sigmoid(logits)
    return log_sig[:, 0], log_sig[:, 0] + log_sig[:, 1]


@jax.jit
def _logits_chunk(graphdef, state, codes, numeric):
    return nnx.merge(graphdef, state)(FeatureBatch(codes, numeric))


def predict_logits(
    graphdef: nnx.GraphDef, state: nnx.State, batch: FeatureBatch
) -> np.ndarray:
    """(n, 2) float32 logits, computed in fixed-size chunks (one compilation)."""
    n = len(batch)
    size = min(_PREDICT_CHUNK, max(n, 1))
    out = np.empty((n, 2), np.float32)
    for start in range(0, n, size):
        codes = batch.codes[start : start + size]
        numeric = batch.numeric[start : start + size]
        k = len(codes)
        if k < size:  # pad with OOV rows so the chunk shape (and the jit) is reused
            codes = np.pad(codes, ((0, size - k), (0, 0)))
            numeric = np.pad(numeric, ((0, size - k), (0, 0)))
        out[start : start + k] = np.asarray(
            _logits_chunk(graphdef, state, codes, numeric)
        )[:k]
    return out


def head_log_odds(logits: np.ndarray) -> dict[str, np.ndarray]:
    """Uncalibrated log-odds per head, (n,) float64: click and conversion per impression."""
    logits = np.asarray(logits, np.float64)
    log_click = -np.logaddexp(0.0, -logits[:, 0])
    log_conv = log_click - np.logaddexp(0.0, -logits[:, 1])
    return {
        "click": logits[:, 0],
        "conversion": log_conv - np.log(-np.expm1(np.minimum(log_conv, -1e-15))),
    }
