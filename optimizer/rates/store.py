"""The trained rate model (:class:`RateModel`) and its ``MODEL_DIR/rates/`` folder.

:meth:`RateModel.save` writes msgpack parameters, JSON metadata and SHA-256
checksums; :func:`load_rate_model` verifies all of them before use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx, serialization

from optimizer.errors import InputError
from optimizer.features import FeatureSpec, encode
from optimizer.io.files import atomic_dir, dumps_json
from optimizer.rates import calibration
from optimizer.rates.config import TrainConfig
from optimizer.rates.model import NetConfig, RateNet, head_log_odds, predict_logits

FORMAT_VERSION = 1
_FILES = ("params.msgpack", "features.json", "calibration.json", "metrics.json")


class RateModel:
    """A trained, calibrated rate network plus everything needed to use it.

    Attributes:
        spec: feature vocabularies and normalization.
        net: network shape.
        graphdef, state: the frozen network (``nnx.split``); pure use via
            :func:`optimizer.rates.model.rate_logits`.
        calibration: per-head Platt maps; the conversion head's is a
            :class:`~optimizer.rates.calibration.PostClickPrior` when the
            log had no conversions.
        metrics: JSON-ready validation metrics.
        train_config: hyperparameters used.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        net: NetConfig,
        graphdef: nnx.GraphDef,
        state: nnx.State,
        maps: Mapping[str, calibration.Platt | calibration.PostClickPrior],
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
        conversion = self.calibration["conversion"]
        if isinstance(conversion, calibration.PostClickPrior):
            p_conv = conversion.rate * p_click
        else:  # fitted apart from the click map; keep p(conversion) <= p(click)
            p_conv = np.minimum(conversion(z["conversion"]), p_click)
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
