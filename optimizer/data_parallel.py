"""Data-parallel minibatch training over a device mesh (``jax.sharding`` + ``shard_map``).

The global minibatch of B rows is split over the D devices of a one-axis mesh
(axis ``"batch"``): each device computes the gradient of its rows' summed loss
divided by B, the gradients are summed over devices (``psum``), and every device
applies the same optimizer update to its replica of the parameters. One device
is the ordinary case of the same code.

Where a device's rows come from:

* **one data shard** (one process, the default): every device holds all training
  rows and each step's rows are one global permutation cut into D parts, so the
  minibatches are exactly those of single-device training with the same seed and
  batch size, and the result agrees with it up to float summation order;
* **one data shard per device** (several processes, each holding only the rows it
  read): device d draws its B/D rows from its own shard with its own permutation
  and the global batch is their union. A single process with the same number of
  devices and the same shard assignment reproduces a multi-process run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from optimizer import distributed
from optimizer.errors import InputError

AXIS = "batch"


def make_mesh() -> Mesh:
    """One-axis mesh over every device of the job (all processes)."""
    return Mesh(np.array(jax.devices()), (AXIS,))


def local_shards(mesh: Mesh) -> list[int]:
    """Mesh positions (= data shard indices) of this process's devices, in order."""
    me = jax.process_index()
    return [i for i, d in enumerate(mesh.devices.flat) if d.process_index == me]


def place(mesh: Mesh, local: np.ndarray, spec: P, global_shape: tuple) -> jax.Array:
    """A global array from this process's part (the whole array when replicated)."""
    sharding = NamedSharding(mesh, spec)
    if jax.process_count() == 1:
        return jax.device_put(local, sharding)
    return jax.make_array_from_process_local_data(sharding, local, global_shape)


def to_local(tree):
    """Host copy (numpy) of a pytree of replicated global arrays."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data), tree)


def replicate(mesh: Mesh, tree):
    """Place a pytree of host arrays on every device of the mesh."""
    return jax.tree.map(
        lambda x: place(mesh, np.asarray(x), P(), np.shape(x)),
        tree,
    )


@dataclasses.dataclass(frozen=True)
class Rows:
    """Training rows held by this process.

    Attributes:
        arrays: per-row arrays with the row axis first, e.g. codes (n, F) int32,
            numeric (n, N) float32, labels (n, 2) float32.
        shard: (n,) int, index into :func:`local_shards` of the shard each row
            belongs to (all 0 with one data shard).
    """

    arrays: tuple[np.ndarray, ...]
    shard: np.ndarray


class DataParallel:
    """Places the rows on the mesh once and runs jitted, sharded epochs.

    Args:
        rows: this process's training rows.
        n_shards: 1 (every device sees all rows) or the number of mesh devices
            (each device its own rows); several processes need the latter.
        batch_size: global rows per step; rounded down to a multiple of the
            device count.
        mesh: from :func:`make_mesh`.
    """

    def __init__(self, rows: Rows, n_shards: int, batch_size: int, mesh: Mesh):
        devices = mesh.size
        if n_shards not in (1, devices):
            raise InputError(
                f"data shards must be 1 or the device count {devices}, got {n_shards}."
            )
        if n_shards == 1 and jax.process_count() > 1:
            raise InputError("several processes need one data shard per device.")
        self.mesh, self.n_shards = mesh, n_shards
        self.batch = max(batch_size // devices, 1) * devices
        self.local = local_shards(mesh)
        if n_shards == 1:
            n = len(rows.shard)
            self.sizes = [n]
            self.steps = n // self.batch
            self.data = tuple(place(mesh, a, P(), a.shape) for a in rows.arrays)
        else:
            per_device = self.batch // devices
            local_sizes = np.array(
                [np.sum(rows.shard == j) for j in range(len(self.local))], np.int64
            )
            sizes = np.concatenate(distributed.allgather_array(local_sizes))
            self.sizes = [int(s) for s in sizes]
            self.steps = int(sizes.min()) // per_device
            width = int(sizes.max())
            self.data = tuple(
                place(
                    mesh,
                    self._pad_shards(a, rows.shard, width),
                    P(AXIS),
                    (devices * width, *a.shape[1:]),
                )
                for a in rows.arrays
            )
        if self.steps < 1:
            raise InputError(
                f"too few training rows ({min(self.sizes)} in the smallest data shard) "
                f"for one minibatch of {self.batch}; use a longer log or fewer devices."
            )

    def _pad_shards(self, a: np.ndarray, shard: np.ndarray, width: int) -> np.ndarray:
        """(L * width, ...) this process's shards one after another, zero-padded."""
        out = np.zeros((len(self.local) * width, *a.shape[1:]), a.dtype)
        for j in range(len(self.local)):
            part = a[shard == j]
            out[j * width : j * width + len(part)] = part
        return out

    def permutation(self, key: jax.Array) -> jax.Array:
        """(steps, batch) int32 row indices for one epoch, sharded along the batch.

        With one shard: one global permutation (the single-device minibatches).
        Otherwise column block d holds indices into device d's own shard, from a
        permutation keyed by the shard index, so it does not depend on which
        process holds the shard.
        """
        if self.n_shards == 1:
            perm = jax.random.permutation(key, self.sizes[0])
            perm = np.asarray(perm[: self.steps * self.batch], np.int32)
            local = perm.reshape(self.steps, self.batch)
        else:
            per_device = self.batch // self.mesh.size
            local = np.concatenate(
                [
                    np.asarray(
                        jax.random.permutation(
                            jax.random.fold_in(key, s), self.sizes[s]
                        )[: self.steps * per_device],
                        np.int32,
                    ).reshape(self.steps, per_device)
                    for s in self.local
                ],
                axis=1,
            )
        return place(self.mesh, local, P(None, AXIS), (self.steps, self.batch))

    def epoch_fn(
        self,
        loss_sum: Callable[..., jax.Array],
        tx: optax.GradientTransformation,
    ) -> Callable:
        """Jitted epoch: ``(params, ema, opt_state, decay, perm) -> (params, ema,
        opt_state, mean loss)``, a ``lax.scan`` of optimizer steps.

        ``loss_sum(params, *row_arrays)`` is the summed loss of a minibatch; ``ema``
        is an exponential moving average of the parameters (per-step ``decay``).
        """
        batch = float(self.batch)
        data_spec = P() if self.n_shards == 1 else P(AXIS)

        def epoch(params, ema, opt_state, decay, perm, *data):
            def step(carry, rows):
                params, ema, opt_state = carry
                local = tuple(a[rows] for a in data)
                loss, grads = jax.value_and_grad(lambda p: loss_sum(p, *local) / batch)(
                    params
                )
                # ``params`` enter replicated, so under shard_map's varying-axes
                # tracking their gradient is already summed over devices; only
                # the loss needs the explicit sum.
                loss = jax.lax.psum(loss, AXIS)
                updates, opt_state = tx.update(grads, opt_state, params)
                params = optax.apply_updates(params, updates)
                ema = jax.tree.map(lambda e, p: e + (1 - decay) * (p - e), ema, params)
                return (params, ema, opt_state), loss

            (params, ema, opt_state), losses = jax.lax.scan(
                step, (params, ema, opt_state), perm
            )
            return params, ema, opt_state, jnp.mean(losses)

        sharded = jax.jit(
            jax.shard_map(
                epoch,
                mesh=self.mesh,
                in_specs=(P(), P(), P(), P(), P(None, AXIS))
                + (data_spec,) * len(self.data),
                out_specs=P(),
            )
        )
        return lambda params, ema, opt_state, decay, perm: sharded(
            params, ema, opt_state, decay, perm, *self.data
        )
