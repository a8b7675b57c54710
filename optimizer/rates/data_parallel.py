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
import mmap
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from optimizer import devices, distributed
from optimizer.errors import InputError

AXIS = "batch"


def make_mesh() -> Mesh:
    """One-axis mesh over every device of the job (all processes)."""
    return devices.mesh(AXIS)


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
    return devices.to_host(tree)


def replicate(mesh: Mesh, tree):
    """Place a pytree of host arrays on every device of the mesh."""
    return devices.put(tree, devices.replicated(mesh))


@dataclasses.dataclass(frozen=True)
class Rows:
    """Training rows held by this process, in host memory or memory-mapped files.

    Attributes:
        arrays: per-row arrays with the row axis first, e.g. codes (n, F) int32,
            numeric (n, N) float32, labels (n, 2) float32 (``np.memmap`` works).
        shard: (n,) int, index into :func:`local_shards` of the shard each row
            belongs to (all 0 with one data shard).
    """

    arrays: tuple[np.ndarray, ...]
    shard: np.ndarray


def release(array: np.ndarray) -> None:
    """Let the OS drop a memory-mapped array's pages from this process's memory."""
    mapping = getattr(array, "_mmap", None)
    if mapping is not None:
        mapping.madvise(mmap.MADV_DONTNEED)


class DataParallel:
    """Feeds minibatches to the devices and runs jitted, sharded training steps.

    The rows stay on the host (or on disk, memory-mapped); each group of
    ``group_steps`` minibatches is gathered on the host, placed on the devices
    with its batch axis sharded, and trained by one jitted ``lax.scan``, so
    device memory holds one group and host memory is bounded for mapped rows.

    Args:
        rows: this process's training rows.
        n_shards: 1 (the devices share one permutation of all rows) or the number
            of mesh devices (each device its own rows); several processes need
            the latter.
        batch_size: global rows per step; rounded down to a multiple of the
            device count.
        mesh: from :func:`make_mesh`.
        group_rows: about this many rows are gathered per group of steps.
    """

    def __init__(
        self,
        rows: Rows,
        n_shards: int,
        batch_size: int,
        mesh: Mesh,
        group_rows: int = 1 << 20,
    ):
        devices = mesh.size
        if n_shards not in (1, devices):
            raise InputError(
                f"data shards must be 1 or the device count {devices}, got {n_shards}."
            )
        if n_shards == 1 and jax.process_count() > 1:
            raise InputError("several processes need one data shard per device.")
        self.mesh, self.n_shards, self.arrays = mesh, n_shards, rows.arrays
        self.batch = max(batch_size // devices, 1) * devices
        self.local = local_shards(mesh)
        if n_shards == 1:
            self.members = [None]  # every row, in order
            self.sizes = [len(rows.shard)]
            self.steps = self.sizes[0] // self.batch
        else:
            self.members = [
                np.flatnonzero(rows.shard == j).astype(np.int64)
                for j in range(len(self.local))
            ]
            local_sizes = np.array([len(m) for m in self.members], np.int64)
            self.sizes = [
                int(s) for s in np.concatenate(distributed.allgather_array(local_sizes))
            ]
            self.steps = min(self.sizes) // (self.batch // devices)
        if self.steps < 1:
            raise InputError(
                f"too few training rows ({min(self.sizes)} in the smallest data shard) "
                f"for one minibatch of {self.batch}; use a longer log or fewer devices."
            )
        self.group = int(np.clip(group_rows // self.batch, 1, self.steps))

    def _permutation(self, key: jax.Array) -> np.ndarray:
        """(steps, local batch) int64 indices into this process's rows.

        With one shard: one global permutation (the single-device minibatches).
        Otherwise column block j holds rows of local shard j, from a permutation
        keyed by the shard's mesh position, so it does not depend on which
        process holds the shard.
        """
        if self.n_shards == 1:
            perm = jax.random.permutation(key, self.sizes[0])
            return np.asarray(perm[: self.steps * self.batch], np.int64).reshape(
                self.steps, self.batch
            )
        per_device = self.batch // self.mesh.size
        blocks = []
        for j, s in enumerate(self.local):
            perm = jax.random.permutation(jax.random.fold_in(key, s), self.sizes[s])
            perm = np.asarray(perm[: self.steps * per_device], np.int64)
            blocks.append(self.members[j][perm].reshape(self.steps, per_device))
        return np.concatenate(blocks, axis=1)

    def epoch_fn(
        self,
        loss_sum: Callable[..., jax.Array],
        tx: optax.GradientTransformation,
    ) -> Callable:
        """Epoch runner: ``(params, ema, opt_state, decay, key) -> (params, ema,
        opt_state, mean loss)``.

        ``loss_sum(params, *row_arrays)`` is the summed loss of a minibatch; ``ema``
        is an exponential moving average of the parameters (per-step ``decay``);
        ``key`` draws the epoch's permutation.
        """
        batch = float(self.batch)

        def steps(params, ema, opt_state, decay, *data):
            def step(carry, minibatch):
                params, ema, opt_state = carry
                loss, grads = jax.value_and_grad(
                    lambda p: loss_sum(p, *minibatch) / batch
                )(params)
                # ``params`` enter replicated, so under shard_map's varying-axes
                # tracking their gradient is already summed over devices; only
                # the loss needs the explicit sum.
                loss = jax.lax.psum(loss, AXIS)
                updates, opt_state = tx.update(grads, opt_state, params)
                params = optax.apply_updates(params, updates)
                ema = jax.tree.map(lambda e, p: e + (1 - decay) * (p - e), ema, params)
                return (params, ema, opt_state), loss

            (params, ema, opt_state), losses = jax.lax.scan(
                step, (params, ema, opt_state), data
            )
            return params, ema, opt_state, jnp.sum(losses)

        sharded = jax.jit(
            jax.shard_map(
                steps,
                mesh=self.mesh,
                in_specs=(P(), P(), P(), P()) + (P(None, AXIS),) * len(self.arrays),
                out_specs=P(),
            )
        )

        def run(params, ema, opt_state, decay, key):
            perm, total = self._permutation(key), 0.0
            for start in range(0, self.steps, self.group):
                rows = perm[start : start + self.group]
                data = []
                for a in self.arrays:
                    part = a[rows.ravel()].reshape(*rows.shape, *a.shape[1:])
                    global_shape = (rows.shape[0], self.batch, *a.shape[1:])
                    data.append(place(self.mesh, part, P(None, AXIS), global_shape))
                    release(a)
                params, ema, opt_state, loss = sharded(
                    params, ema, opt_state, decay, *data
                )
                total += float(to_local(loss))
            return params, ema, opt_state, total / self.steps

        return run
