"""Rate network training: ``fit_rate_model(events)`` on a validated event log.

Trains the ESMM network of :mod:`optimizer.rates.model` on the won auctions:

* time-based split: the last ``validation_days`` of the log are held out;
* AdamW with gradient clipping over shuffled minibatches, one jitted
  ``lax.scan`` per epoch; early stopping on the validation loss (the sum over
  heads of log-loss normalized by the base-rate entropy, so the rare conversion
  head weighs as much as the click head); the best epoch's parameters are kept;
* Platt calibration per head fitted on the validation split, then the metrics
  and baselines of :mod:`optimizer.rates.evaluate`.

Returns a :class:`~optimizer.rates.store.RateModel`.
"""

from __future__ import annotations

import dataclasses
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
from flax import nnx

from optimizer import distributed
from optimizer.features import FeatureBatch, encode
from optimizer.io.progress import progress_bar
from optimizer.log.chunks import WonChunks
from optimizer.rates import calibration, data_parallel
from optimizer.rates import rows as train_rows
from optimizer.rates.calibration import HEADS
from optimizer.rates.config import TrainConfig
from optimizer.rates.data_parallel import DataParallel
from optimizer.rates.evaluate import (
    auc,
    calibrate_and_measure,
    log_loss,
    prior_head_metrics,
)
from optimizer.rates.model import (
    NetConfig,
    RateNet,
    esmm_log_probs,
    head_log_odds,
    predict_logits,
)
from optimizer.rates.rows import labels_of
from optimizer.rates.store import RateModel


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


@jax.jit
def _seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(initialization key, training key) of a run's seed, as one program."""
    key_init, key_train = jax.random.split(jax.random.key(seed))
    return key_init, key_train


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
    bar: bool = False,
) -> tuple[nnx.State, dict[str, Any]]:
    """Epochs of AdamW with early stopping; returns the best state and a history.

    ``bar``: show a progress bar with ETA (epoch lines go to its postfix instead).

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
    ema = params
    opt_state = data_parallel.replicate(train.mesh, jax.jit(tx.init)(state))
    decay = data_parallel.replicate(train.mesh, np.float32(_ema_decay(train.steps)))
    vbatch, vlabels = valid[0], np.concatenate(distributed.allgather_array(valid[1]))
    best = (np.inf, 0, state)
    history = []
    epochs = progress_bar(cfg.epochs, "training", "epoch", show=bar)
    for epoch in range(1, cfg.epochs + 1):
        tick = time.perf_counter()
        params, ema, opt_state, train_loss = epoch_fn(
            params, ema, opt_state, decay, jax.random.fold_in(key, epoch)
        )
        seconds = time.perf_counter() - tick
        host_ema = jax.device_put(data_parallel.to_local(ema))
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
        line = _epoch_line(epoch, train_loss, vlogits, vlabels)
        epochs.update(1)
        if bar:
            epochs.set_postfix_str(line, refresh=True)
        else:
            report(line)
        if vloss < best[0] - cfg.min_improvement:
            best = (vloss, epoch, host_ema)
        elif epoch - best[1] >= cfg.patience:
            break
    epochs.close()
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
        labels_all = totals[1:] + distributed.combine(vlabels.sum(axis=0), sum)
        # No conversions to learn from: the conversion head is a post-click prior.
        prior = (
            calibration.post_click_prior(int(labels_all[1]), int(labels_all[0]))
            if totals[2] == 0
            else None
        )
        base_logits = (
            float(calibration.log_odds(totals[1] / totals[0])),
            float(
                calibration.log_odds(
                    totals[2] / totals[1] if prior is None else prior.rate
                )
            ),
        )
        key_init, key_train = _seed_keys(seed)
        graphdef, state = _build_net(net, key_init, base_logits)
        train = DataParallel(
            data.rows,
            n_shards,
            _batch_size(cfg, int(totals[0])),
            data_parallel.make_mesh(),
        )
        state, history = _train(
            graphdef,
            state,
            train,
            (vbatch, vlabels),
            cfg,
            key_train,
            report,
            # A bar only on a terminal: logs (CI, files) keep one line per epoch.
            bar=progress and distributed.process_index() == 0 and sys.stderr.isatty(),
        )
    z = head_log_odds(
        np.concatenate(
            distributed.allgather_array(predict_logits(graphdef, state, vbatch))
        )
    )
    all_vlabels = np.concatenate(distributed.allgather_array(vlabels))
    maps, heads = calibrate_and_measure(
        z,
        all_vlabels,
        (data.baseline_train, data.valid) if distributed.process_count() == 1 else None,
        spec,
    )
    if prior is not None:
        maps["conversion"] = prior
        heads["conversion"] = prior_head_metrics(
            prior, maps["click"](z["click"]), all_vlabels[:, 1], heads["conversion"]
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
