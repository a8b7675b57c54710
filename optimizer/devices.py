"""Devices: the compilation cache, a 1-D mesh over JAX's devices and pytrees sharded
along their leading axis.

Every ``adplan`` command that runs JAX keeps its compiled XLA programs in a
per-user folder (:func:`compilation_cache_folder`), so a second run of the same
command loads them from disk instead of compiling again.

Shared by every stage that scales out (the allocator's audiences, what-if
scenarios, data-parallel training). Only ``jax.sharding`` is used: a
:class:`~jax.sharding.Mesh` over the *global* devices (``jax.devices()``, so the
same code runs in one process or under ``jax.distributed``), arrays placed with a
:class:`~jax.sharding.NamedSharding`, and jitted functions left to GSPMD, which
turns sums, minima and maxima over a sharded axis into cross-device reductions.

A leading axis of length n is padded to a multiple of the device count D by
repeating its last entry; the caller makes the padding inert (or drops it) and
trims results back to n.

>>> pad_to(10, 4)
12
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec


def compilation_cache_folder(
    disabled: bool = False, environ: Mapping[str, str] = os.environ
) -> Path | None:
    """Where compiled programs are kept; None when caching is off.

    Off with ``disabled`` (``adplan --no-cache``) or ``ADPLAN_NO_CACHE=1``;
    else ``ADPLAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/adplan/jax``, else
    ``~/.cache/adplan/jax``.
    """
    if disabled or environ.get("ADPLAN_NO_CACHE", "") not in ("", "0"):
        return None
    if environ.get("ADPLAN_CACHE_DIR"):
        return Path(environ["ADPLAN_CACHE_DIR"]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "adplan" / "jax"


def use_compilation_cache(folder: Path | None) -> None:
    """Keep every compiled program in ``folder`` (None: compile in memory only).

    Call before the first jitted computation. Small and fast-compiling programs
    are kept too (JAX's defaults skip those under 1 s of compile time, which are
    most of adplan's). Entries are keyed by program, JAX version and device, so
    a stale entry is never used; the folder can be deleted at any time. Runs may
    share the folder: an entry another run is still writing fails to read and is
    compiled again (JAX's warning about it is silenced; the result is the same).
    """
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()  # JAX opens its cache folder once per process
    if folder is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    warnings.filterwarnings(
        "ignore", message="Error reading persistent compilation cache entry"
    )


def mesh(axis_name: str, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``axis_name`` over ``devices`` (default: all global devices).

    The axis is ``AxisType.Auto``: jitted code sees ordinary arrays and the
    compiler (GSPMD) propagates the sharding and inserts the collectives.

    Args:
        axis_name: name of the mesh axis, e.g. ``"audiences"`` or ``"batch"``.
        devices: devices in mesh order; every process must pass the same list.
    """
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh(
        (len(devices),), (axis_name,), (AxisType.Auto,), devices=devices
    )


def pad_to(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``n``.

    >>> pad_to(8, 4), pad_to(0, 3)
    (8, 0)
    """
    return -(-n // multiple) * multiple


def leading(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the mesh's (first) axis, other axes replicated."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def pad_leading(tree, length: int):
    """Every leaf's leading axis extended to ``length`` by repeating its last entry.

    Leaves become numpy arrays on the host; all must share the leading axis n
    (1 <= n <= length).
    """

    def pad(x):
        x = np.asarray(x)
        return np.concatenate([x, np.repeat(x[-1:], length - x.shape[0], axis=0)])

    return jax.tree_util.tree_map(pad, tree)


def put(tree, sharding: NamedSharding):
    """Every leaf placed with ``sharding`` as one global array.

    Each process provides the shards of its own devices from its copy of the
    full (host) value, so every process must call this with the same values.
    """

    def place(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree_util.tree_map(place, tree)


def shard_leading(tree, mesh: Mesh):
    """Leaves padded (see :func:`pad_leading`) to a multiple of the mesh size and
    split along their leading axis over the mesh.

    Returns:
        The placed pytree; its leading axis is ``pad_to(n, mesh.size)``.
    """
    n = jax.tree_util.tree_leaves(tree)[0].shape[0]
    return put(pad_leading(tree, pad_to(n, mesh.size)), leading(mesh))


def to_host(tree):
    """Every leaf as a numpy array holding its full global value.

    Replicated arrays are read from a local copy. Sharded arrays that span
    devices of other processes (under ``jax.distributed``) are gathered from all
    processes first; every process must then call this together.
    """
    from jax.experimental import multihost_utils

    def fetch(x):
        if (
            isinstance(x, jax.Array)
            and not x.is_fully_addressable
            and not x.is_fully_replicated
        ):
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree_util.tree_map(fetch, tree)


def gather(tree, mesh: Mesh, trim: Callable | None = None):
    """Sharded results back as ordinary arrays on the default device.

    Args:
        tree: a pytree of arrays placed on ``mesh``.
        mesh: the mesh they live on.
        trim: optional function of the pytree applied on the devices first,
            e.g. dropping padding (``lambda t: tree_map(lambda x: x[:n], t)``).

    Returns:
        The (trimmed) pytree, each leaf its full value in an unsharded array,
        as a computation on one device would have returned it.
    """
    whole = jax.jit(trim or (lambda t: t), out_shardings=replicated(mesh))(tree)
    return jax.tree_util.tree_map(jnp.asarray, to_host(whole))
