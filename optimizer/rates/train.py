"""Rate network training, evaluation, baselines and storage.

``fit_rate_model(events)`` trains the ESMM network of :mod:`optimizer.rates.model`
on the won auctions of a validated event log:

* time-based split: the last ``validation_days`` of the log are held out;
* AdamW with gradient clipping over shuffled minibatches, one jitted
  ``lax.scan`` per epoch; early stopping on the validation loss (the sum over
  heads of log-loss normalized by the base-rate entropy, so the rare conversion
  head weighs as much as the click head); the best epoch's parameters are kept;
* Platt calibration per head fitted on the validation split (metrics use
  out-of-fold calibrated predictions, so they are not measured on the fit data);
* two baselines fitted on the same split: per-audience average rate and a
  logistic regression on one-hot features.

The returned :class:`RateModel` predicts per-won-impression rates for any row and
saves itself to ``MODEL_DIR/rates/`` (msgpack parameters, JSON metadata, SHA-256
checksums); :func:`load_rate_model` verifies everything before use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import nnx, serialization

from optimizer import distributed
from optimizer.errors import InputError
from optimizer.features import FeatureBatch, FeatureSpec, encode
from optimizer.io.files import atomic_dir, dumps_json
from optimizer.log.chunks import WonChunks
from optimizer.rates import calibration, data_parallel
from optimizer.rates import rows as train_rows
from optimizer.rates.data_parallel import DataParallel
from optimizer.rates.model import NetConfig, RateNet, esmm_log_probs
from optimizer.rates.rows import labels_of

HEADS = calibration.HEADS
FORMAT_VERSION = 1
_FILES = ("params.msgpack", "features.json", "calibration.json", "metrics.json")
_PREDICT_CHUNK = 65_536
_ECE_BINS = 10


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters (stored in config.json).

    Attributes:
        epochs: maximum passes over the training rows.
        validation_days: trailing days of the log held out for validation.
        batch_size: rows per step; 0 picks ~1/64 of the training rows, as a power
            of two within [256, 8192].
        learning_rate: AdamW step size.
        weight_decay: AdamW decoupled weight decay.
        clip_norm: global gradient-norm clip.
        patience: epochs without improvement before stopping.
        min_improvement: smaller drops of the validation loss do not count.
        embed_dim: embedding dimension.
        hidden: shared MLP widths.
        min_count: category values rarer than this in training go to OOV.
    """

    epochs: int = 30
    validation_days: float = 2.0
    batch_size: int = 0
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    clip_norm: float = 1.0
    patience: int = 2
    min_improvement: float = 1e-4
    embed_dim: int = 8
    hidden: tuple[int, ...] = (64, 32)
    min_count: int = 5

    def __post_init__(self) -> None:
        """Reject settings that cannot train."""
        if self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}.")
        if not self.validation_days > 0:
            raise InputError(
                f"validation_days must be > 0, got {self.validation_days}."
            )
        if self.batch_size < 0 or self.patience < 1 or self.min_count < 1:
            raise InputError("batch_size must be >= 0, patience and min_count >= 1.")


# ---------------------------------------------------------------- data split


# ---------------------------------------------------------------- training


def esmm_nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """(n,) ESMM log-loss per row: click BCE + conversion-per-impression BCE.

    Args:
        logits: (n, 2) click and post-click logits.
        labels: (n, 2) click and conversion, 0/1.
    """
    log_click, log_conv = esmm_log_probs(logits)
    # log(1 - p_conv); the clamp keeps expm1 away from 0 where float32 gives -inf.
    log_no_conv = jnp.log(-jnp.expm1(jnp.minimum(log_conv, -1e-7)))
    click_nll = -(
        labels[:, 0] * log_click
        + (1 - labels[:, 0]) * jax.nn.log_sigmoid(-logits[:, 0])
    )
    conv_nll = -(labels[:, 1] * log_conv + (1 - labels[:, 1]) * log_no_conv)
    return click_nll + conv_nll


def _ema_decay(steps_per_epoch: int) -> float:
    """Per-step EMA decay averaging over about half an epoch (20 to 1000 steps)."""
    return 1.0 - 1.0 / float(np.clip(steps_per_epoch / 2, 20, 1000))


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


def _batch_size(cfg: TrainConfig, n_rows: int) -> int:
    """Rows per step: the configured size, or ~n/64 rounded to a power of two."""
    if cfg.batch_size:
        return min(cfg.batch_size, n_rows)
    size = 2 ** int(np.round(np.log2(max(n_rows / 64, 1))))
    return min(int(np.clip(size, 256, 8192)), n_rows)


def _validation_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Sum over heads of normalized entropy (log-loss / base-rate entropy)."""
    z = head_log_odds(logits)
    total = 0.0
    for j, head in enumerate(HEADS):
        y = labels[:, j]
        if 0 < y.sum() < len(y):  # a head with one outcome has no entropy to scale by
            p = calibration.sigmoid(z[head])
            total += log_loss(p, y) / log_loss(np.full(len(y), y.mean()), y)
    return total


# ---------------------------------------------------------------- metrics


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean binary log-loss (nats) of probabilities ``p`` (n,) for 0/1 labels ``y``."""
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def calibration_table(
    p: np.ndarray, y: np.ndarray, bins: int = _ECE_BINS
) -> list[dict]:
    """Equal-count bins of the predictions: mean predicted, observed rate, count.

    Equal-count (not equal-width) bins, because rates of ~1e-3 would put almost
    every row in the first equal-width bin.
    """
    order = np.argsort(p, kind="stable")
    rows = []
    for part in np.array_split(order, min(bins, len(p))):
        rows.append(
            {
                "mean_predicted": float(p[part].mean()),
                "observed_rate": float(y[part].mean()),
                "count": len(part),
            }
        )
    return rows


def expected_calibration_error(table: list[dict]) -> float:
    """Count-weighted mean |mean predicted - observed rate| over the bins."""
    counts = np.array([r["count"] for r in table], np.float64)
    gaps = np.array([abs(r["mean_predicted"] - r["observed_rate"]) for r in table])
    return float(np.sum(counts * gaps) / counts.sum())


def auc(p: np.ndarray, y: np.ndarray) -> float | None:
    """ROC AUC, or None when ``y`` has a single class."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def head_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """AUC, log-loss, ECE, calibration table and rates for one head.

    Args:
        p: (n,) predicted probabilities.
        y: (n,) 0/1 outcomes.
    """
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    table = calibration_table(p, y)
    return {
        "auc": auc(p, y),
        "log_loss": log_loss(p, y),
        "ece": expected_calibration_error(table),
        "mean_predicted": float(p.mean()),
        "observed_rate": float(y.mean()),
        "positives": int(y.sum()),
        "rows": len(y),
        "calibration": table,
    }


# ---------------------------------------------------------------- baselines


def _audience_average(train: pd.DataFrame, valid: pd.DataFrame, **_: Any) -> dict:
    """Per-audience rate in training, shrunk by one pseudo-positive at the global rate."""
    out = {}
    for head, col in zip(HEADS, ("click", "conversion"), strict=True):
        glob = max(float(train[col].mean()), 1e-12)
        grouped = train.groupby("audience", observed=True)[col].agg(["sum", "count"])
        rate = (grouped["sum"] + 1.0) / (grouped["count"] + 1.0 / glob)
        rate.index = rate.index.astype(str)
        out[head] = (
            valid["audience"].astype(str).map(rate).fillna(glob).to_numpy(np.float64)
        )
    return out


def _one_hot(spec: FeatureSpec, batch: FeatureBatch):
    """Sparse (n, vocabulary rows + numeric) design matrix of one-hot codes."""
    from scipy import sparse

    n, fields = batch.codes.shape
    width = int(sum(spec.field_sizes))
    onehot = sparse.csr_matrix(
        (
            np.ones(n * fields),
            batch.codes.ravel(),
            np.arange(0, n * fields + 1, fields),
        ),
        shape=(n, width),
    )
    return sparse.hstack([onehot, sparse.csr_matrix(batch.numeric)], format="csr")


def _logistic_regression(
    train: pd.DataFrame, valid: pd.DataFrame, *, spec: FeatureSpec, **_: Any
) -> dict:
    """sklearn LogisticRegression per head on one-hot categorical + scaled numeric."""
    from sklearn.linear_model import LogisticRegression

    x_train = _one_hot(spec, encode(spec, train))
    x_valid = _one_hot(spec, encode(spec, valid))
    out = {}
    for head, col in zip(HEADS, ("click", "conversion"), strict=True):
        clf = LogisticRegression(max_iter=500, tol=1e-6)
        clf.fit(x_train, train[col].to_numpy())
        out[head] = clf.predict_proba(x_valid)[:, 1]
    return out


BASELINES: dict[str, Callable[..., dict]] = {
    "audience_average": _audience_average,
    "logistic_regression": _logistic_regression,
}


# ---------------------------------------------------------------- the model


class RateModel:
    """A trained, calibrated rate network plus everything needed to use it.

    Attributes:
        spec: feature vocabularies and normalization.
        net: network shape.
        graphdef, state: the frozen network (``nnx.split``); pure use via
            :func:`optimizer.rates.model.rate_logits`.
        calibration: per-head Platt maps.
        metrics: JSON-ready validation metrics.
        train_config: hyperparameters used.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        net: NetConfig,
        graphdef: nnx.GraphDef,
        state: nnx.State,
        maps: Mapping[str, calibration.Platt],
        metrics: dict[str, Any],
        train_config: TrainConfig,
    ) -> None:
        """Bundle the parts; see the class attributes."""
        self.spec, self.net = spec, net
        self.graphdef, self.state = graphdef, state
        self.calibration = dict(maps)
        self.metrics = metrics
        self.train_config = train_config

    def predict(self, events: pd.DataFrame) -> dict[str, np.ndarray]:
        """Calibrated rates per won impression for every row of ``events``.

        Returns:
            ``p_click``, ``p_conversion`` (click x post-click) and
            ``p_conversion_given_click``: (len(events),) float64 probabilities.
        """
        z = head_log_odds(
            predict_logits(self.graphdef, self.state, encode(self.spec, events))
        )
        p_click = self.calibration["click"](z["click"])
        # The two maps are fitted separately; keep p(conversion) <= p(click).
        p_conv = np.minimum(self.calibration["conversion"](z["conversion"]), p_click)
        return {
            "p_click": p_click,
            "p_conversion": p_conv,
            "p_conversion_given_click": p_conv / p_click,
        }

    def save(self, model_dir: str | Path) -> Path:
        """Write ``model_dir/rates/`` atomically; returns that folder."""
        target = Path(model_dir) / "rates"
        blobs = {
            "params.msgpack": serialization.to_bytes(nnx.to_pure_dict(self.state)),
            "features.json": dumps_json(self.spec.to_dict()).encode(),
            "calibration.json": dumps_json(
                calibration.to_dict(self.calibration)
            ).encode(),
            "metrics.json": dumps_json(self.metrics).encode(),
        }
        config = {
            "format_version": FORMAT_VERSION,
            "net": dataclasses.asdict(self.net),
            "train": dataclasses.asdict(self.train_config),
            "param_shapes": _param_shapes(nnx.to_pure_dict(self.state)),
            "sha256": {
                name: hashlib.sha256(b).hexdigest() for name, b in blobs.items()
            },
        }
        with atomic_dir(target) as tmp:
            for name, blob in blobs.items():
                (tmp / name).write_bytes(blob)
            (tmp / "config.json").write_text(
                dumps_json(config) + "\n", encoding="utf-8"
            )
        return target


def _param_shapes(params: Mapping[str, Any]) -> dict[str, list[int]]:
    """Flat ``{"path/to/param": shape}`` of a nested dict of arrays."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): list(np.shape(leaf))
        for path, leaf in flat
    }


def _build_net(net: NetConfig, key: jax.Array, base_logits: tuple[float, float]):
    """Fresh network, initialized from ``key``, split into (graphdef, state)."""
    return nnx.split(RateNet(net, base_logits=base_logits, rngs=nnx.Rngs(params=key)))


def _train(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    train: DataParallel,
    valid: tuple[FeatureBatch, np.ndarray],
    cfg: TrainConfig,
    key: jax.Array,
    report: Callable[[str], None],
) -> tuple[nnx.State, dict[str, Any]]:
    """Epochs of AdamW with early stopping; returns the best state and a history.

    ``valid`` holds this process's validation rows; every process scores the
    union of them, so all take the same early-stopping decisions.
    """
    tx = optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay),
    )

    def loss_sum(params, codes, numeric, labels):
        logits = nnx.merge(graphdef, params)(FeatureBatch(codes, numeric))
        return jnp.sum(esmm_nll(logits, labels))

    epoch_fn = train.epoch_fn(loss_sum, tx)
    params = data_parallel.replicate(train.mesh, state)
    ema, opt_state = params, data_parallel.replicate(train.mesh, tx.init(state))
    decay = data_parallel.replicate(train.mesh, np.float32(_ema_decay(train.steps)))
    vbatch, vlabels = valid[0], np.concatenate(distributed.allgather_array(valid[1]))
    best = (np.inf, 0, state)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        tick = time.perf_counter()
        params, ema, opt_state, train_loss = epoch_fn(
            params, ema, opt_state, decay, jax.random.fold_in(key, epoch)
        )
        seconds = time.perf_counter() - tick
        host_ema = jax.tree.map(jnp.asarray, data_parallel.to_local(ema))
        vlogits = np.concatenate(
            distributed.allgather_array(predict_logits(graphdef, host_ema, vbatch))
        )
        vloss = _validation_loss(vlogits, vlabels)
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "valid_loss": vloss,
                "seconds": seconds,
            }
        )
        report(_epoch_line(epoch, train_loss, vlogits, vlabels))
        if vloss < best[0] - cfg.min_improvement:
            best = (vloss, epoch, host_ema)
        elif epoch - best[1] >= cfg.patience:
            break
    return best[2], {
        "epochs_run": len(history),
        "best_epoch": best[1],
        "batch_size": train.batch,
        "steps_per_epoch": train.steps,
        "devices": train.mesh.size,
        "data_shards": train.n_shards,
        "processes": distributed.process_count(),
        "history": history,
    }


def _epoch_line(
    epoch: int, train_loss: float, vlogits: np.ndarray, vlabels: np.ndarray
) -> str:
    """One progress line: epoch, training loss, validation log-loss and AUC per head."""
    z = head_log_odds(vlogits)
    parts = [f"epoch {epoch:3d}  train loss {train_loss:.5f}"]
    for j, head in enumerate(HEADS):
        p = calibration.sigmoid(z[head])
        score = auc(p, vlabels[:, j])
        parts.append(
            f"{head}: val log-loss {log_loss(p, vlabels[:, j]):.5f} "
            f"AUC {'n/a' if score is None else f'{score:.4f}'}"
        )
    return "  ".join(parts)


def _evaluate(
    z: dict[str, np.ndarray],
    vlabels: np.ndarray,
    frames: tuple[pd.DataFrame, pd.DataFrame] | None,
    spec: FeatureSpec,
) -> tuple[dict[str, calibration.Platt], dict[str, Any]]:
    """Fit the calibration maps and measure the network and the baselines.

    ``frames`` are the (training, validation) won auctions the baselines are
    fitted and scored on; None skips them (several processes each hold only part
    of the rows).
    """
    maps, heads = {}, {}
    baseline_preds = (
        {}
        if frames is None
        else {name: fit(*frames, spec=spec) for name, fit in BASELINES.items()}
    )
    for j, head in enumerate(HEADS):
        y = vlabels[:, j]
        maps[head] = calibration.fit_platt(z[head], y)
        # ECE and log-loss use out-of-fold calibration; AUC uses the final map,
        # which is increasing, so it equals the AUC of the shipped predictions.
        model = head_metrics(calibration.cross_fitted(z[head], y), y)
        model["auc"] = auc(maps[head](z[head]), y)
        heads[head] = {
            "model": model,
            "model_uncalibrated": head_metrics(calibration.sigmoid(z[head]), y),
            "baselines": {
                name: head_metrics(preds[head], y)
                for name, preds in baseline_preds.items()
            },
        }
    return maps, heads


def fit_rate_model(
    events: pd.DataFrame,
    *,
    seed: int = 0,
    epochs: int = 30,
    validation_days: float = 2,
    progress: bool = True,
    config: TrainConfig | None = None,
) -> RateModel:
    """Train, calibrate and evaluate the rate network on a validated event log.

    Args:
        events: log validated by :func:`optimizer.io.schema.validate_event_log`;
            only won auctions (``won == 1``) are used.
        seed: PRNG seed; the same seed and data give the same model.
        epochs: maximum epochs (early stopping usually ends sooner).
        validation_days: trailing days held out for early stopping, calibration
            and metrics.
        progress: print one line per epoch to stderr.
        config: further hyperparameters; ``epochs`` and ``validation_days``
            arguments override its fields.

    Raises:
        InputError: too few won auctions, clicks or conversions to train.
    """
    won = events.loc[events["won"].to_numpy() == 1]
    return fit_rate_model_chunks(
        WonChunks([won], [0]),
        seed=seed,
        epochs=epochs,
        validation_days=validation_days,
        progress=progress,
        config=config,
        n_events=len(events),
    )


def fit_rate_model_chunks(
    chunks: WonChunks,
    *,
    seed: int = 0,
    epochs: int = 30,
    validation_days: float = 2,
    progress: bool = True,
    config: TrainConfig | None = None,
    n_shards: int = 1,
    n_events: int = 0,
) -> RateModel:
    """:func:`fit_rate_model` on won auctions in chunks (in memory or on disk).

    Training is data-parallel over every device of the job (see
    :mod:`optimizer.rates.data_parallel`); with several processes, each passes the
    chunks it read and all of them return the same model. Big encoded rows are
    memory-mapped from a scratch folder under $TMPDIR, removed afterwards.

    Args:
        chunks: this process's won auctions and their data shards.
        n_shards: 1, or one data shard per device (required with several
            processes).
        n_events: auctions this process read (won or not), for the metrics.
        seed, epochs, validation_days, progress, config: as in fit_rate_model.
    """
    start = time.perf_counter()
    cfg = dataclasses.replace(
        config or TrainConfig(), epochs=epochs, validation_days=float(validation_days)
    )
    report = (
        (lambda line: print(line, file=sys.stderr, flush=True))
        if progress and distributed.process_index() == 0
        else (lambda _: None)
    )
    with train_rows.workdir() as work:
        data = train_rows.prepare(
            chunks,
            validation_days=cfg.validation_days,
            min_count=cfg.min_count,
            seed=seed,
            workdir=Path(work),
        )
        spec, totals = data.spec, data.totals
        vbatch, vlabels = encode(spec, data.valid), labels_of(data.valid)
        net = NetConfig(
            tuple(spec.field_sizes), len(spec.numeric), cfg.embed_dim, cfg.hidden
        )
        base_logits = (
            float(calibration.log_odds(totals[1] / totals[0])),
            float(calibration.log_odds(totals[2] / totals[1])),
        )
        key_init, key_train = jax.random.split(jax.random.key(seed))
        graphdef, state = _build_net(net, key_init, base_logits)
        train = DataParallel(
            data.rows,
            n_shards,
            _batch_size(cfg, int(totals[0])),
            data_parallel.make_mesh(),
        )
        state, history = _train(
            graphdef, state, train, (vbatch, vlabels), cfg, key_train, report
        )
    z = head_log_odds(
        np.concatenate(
            distributed.allgather_array(predict_logits(graphdef, state, vbatch))
        )
    )
    maps, heads = _evaluate(
        z,
        np.concatenate(distributed.allgather_array(vlabels)),
        (data.baseline_train, data.valid) if distributed.process_count() == 1 else None,
        spec,
    )
    metrics = {
        "heads": heads,
        "rows": {
            "events": int(distributed.combine(np.array(n_events), sum)),
            "won": data.won,
            "train": int(totals[0]),
            "validation": len(z["click"]),
        },
        **history,
        "seconds": time.perf_counter() - start,
        "seed": seed,
        "calibration": calibration.to_dict(maps),
    }
    report(_summary(metrics))
    return RateModel(spec, net, graphdef, state, maps, metrics, cfg)


def _summary(metrics: Mapping[str, Any]) -> str:
    """Short end-of-training summary: epochs, time, AUC/ECE vs the LR baseline."""
    lines = [
        f"trained on {metrics['rows']['train']:,} won auctions in "
        f"{metrics['seconds']:.1f}s, best epoch {metrics['best_epoch']} of {metrics['epochs_run']}"
    ]
    for head, m in metrics["heads"].items():
        lr = m["baselines"].get("logistic_regression")
        versus = f" (logistic regression {lr['auc']})" if lr else ""
        lines.append(
            f"  {head}: AUC {m['model']['auc']}{versus}, "
            f"ECE {m['model']['ece']:.2e} (mean rate {m['model']['observed_rate']:.2e})"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- loading


def _read_json(folder: Path, name: str) -> Any:
    try:
        return json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder / name}: unreadable or not JSON ({exc}).") from exc


def _verify_checksums(folder: Path, recorded: Mapping[str, str]) -> dict[str, bytes]:
    """Read every file listed in config.json and check its SHA-256."""
    blobs = {}
    for name in _FILES:
        path = folder / name
        if not path.is_file():
            raise InputError(f"{path}: missing. Retrain with 'adplan train'.")
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != recorded.get(name):
            raise InputError(
                f"{path}: checksum does not match config.json; the model folder was "
                "modified or corrupted. Retrain with 'adplan train'."
            )
        blobs[name] = blob
    return blobs


def _restore_state(
    blob: bytes, net: NetConfig, folder: Path
) -> tuple[nnx.GraphDef, nnx.State]:
    """Parameters from msgpack into a network of shape ``net``, shapes checked."""
    graphdef, state = nnx.split(
        nnx.eval_shape(lambda: RateNet(net, base_logits=(0.0, 0.0), rngs=nnx.Rngs(0)))
    )
    target = nnx.to_pure_dict(state)
    try:
        loaded = serialization.from_state_dict(
            target, serialization.msgpack_restore(blob)
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{folder / 'params.msgpack'}: does not match the network ({exc})."
        ) from exc
    bad = [
        path
        for path, want in _param_shapes(target).items()
        if _param_shapes(loaded).get(path) != want
    ]
    if bad:
        raise InputError(
            f"{folder / 'params.msgpack'}: parameter shapes differ from config.json at {bad}."
        )
    loaded = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), loaded)
    nnx.replace_by_pure_dict(state, loaded)
    return graphdef, state


def load_rate_model(model_dir: str | Path) -> RateModel:
    """Load ``model_dir/rates/`` written by :meth:`RateModel.save`.

    Raises:
        InputError: the folder is missing, malformed, or does not match its
            recorded checksums and parameter shapes.
    """
    folder = Path(model_dir) / "rates"
    if not (folder / "config.json").is_file():
        raise InputError(
            f"{folder}: no rate model here (config.json missing). Run 'adplan train' first."
        )
    config = _read_json(folder, "config.json")
    try:
        if config["format_version"] != FORMAT_VERSION:
            raise ValueError(f"format_version {config['format_version']}")
        net_raw = dict(config["net"])
        net = NetConfig(
            tuple(int(s) for s in net_raw["field_sizes"]),
            int(net_raw["n_numeric"]),
            int(net_raw["embed_dim"]),
            tuple(int(h) for h in net_raw["hidden"]),
        )
        train_raw = dict(config["train"])
        train_cfg = TrainConfig(**{**train_raw, "hidden": tuple(train_raw["hidden"])})
        recorded = dict(config["sha256"])
        shapes = dict(config["param_shapes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"{folder / 'config.json'}: malformed ({exc!r}). Retrain with 'adplan train'."
        ) from exc
    blobs = _verify_checksums(folder, recorded)
    spec = FeatureSpec.from_dict(json.loads(blobs["features.json"]))
    if spec.field_sizes != list(net.field_sizes) or len(spec.numeric) != net.n_numeric:
        raise InputError(
            f"{folder}: features.json does not match the network in config.json."
        )
    graphdef, state = _restore_state(blobs["params.msgpack"], net, folder)
    if _param_shapes(nnx.to_pure_dict(state)) != shapes:
        raise InputError(
            f"{folder / 'config.json'}: recorded parameter shapes do not match the network."
        )
    maps = calibration.from_dict(json.loads(blobs["calibration.json"]))
    return RateModel(
        spec, net, graphdef, state, maps, json.loads(blobs["metrics.json"]), train_cfg
    )


# ---------------------------------------------------------------- truth


def compare_to_truth(
    model: RateModel,
    events: pd.DataFrame,
    true_click: np.ndarray,
    true_conversion: np.ndarray,
) -> dict[str, Any]:
    """How close the predictions are to known true rates (synthetic markets).

    Args:
        events: rows to score (typically the won auctions).
        true_click, true_conversion: (n,) true p(click) and p(conversion) per
            won impression for those rows.

    Returns:
        Per head: log-odds correlation and ECE against the true rates (bins of
        predictions; observed = mean true rate), and per audience: conversions,
        predicted and true mean conversion rate and their relative error.
    """
    preds = model.predict(events)
    out: dict[str, Any] = {}
    for head, key, truth in (
        ("click", "p_click", true_click),
        ("conversion", "p_conversion", true_conversion),
    ):
        p = preds[key]
        table = calibration_table(p, np.asarray(truth, np.float64))
        out[head] = {
            "log_odds_correlation": float(
                np.corrcoef(calibration.log_odds(p), calibration.log_odds(truth))[0, 1]
            ),
            "ece_vs_truth": expected_calibration_error(table),
            "mean_true_rate": float(np.mean(truth)),
        }
    frame = pd.DataFrame(
        {
            "audience": events["audience"].to_numpy(),
            "pred": preds["p_conversion"],
            "true": true_conversion,
            "conversions": events["conversion"].to_numpy(),
        }
    )
    per = frame.groupby("audience").agg(
        conversions=("conversions", "sum"),
        predicted=("pred", "mean"),
        true=("true", "mean"),
    )
    per["relative_error"] = per["predicted"] / per["true"] - 1
    out["audiences"] = per.reset_index().to_dict(orient="records")
    return out
