"""Devices: the compilation cache, a 1-D mesh over JAX's devices and pytrees sharded
along their leading axis.

Every ``adplan`` command that runs JAX keeps its compiled XLA programs in a
per-user folder (:func:`compilation_cache_folder`), so a second run of the same
command loads them from disk instead of compiling again. The solves a command runs
at top level are :class:`Stage` s: their traced programs are kept there too, so a
warm command skips tracing as well (see :class:`Stage`).

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

import functools
import hashlib
import inspect
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
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
    use_traced_folder(folder)
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


def stack(trees: list):
    """The pytrees ``trees`` (same structure) stacked leaf by leaf on a new leading
    axis, as host numpy arrays: no compiled program per leaf shape, as
    ``jnp.stack`` outside a jit would need."""
    return jax.tree_util.tree_map(
        lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees
    )


def host_slice(tree, index):
    """``tree[index]`` leaf by leaf, sliced on the host and put back as arrays:
    no compiled program per leaf shape, as slicing outside a jit would need."""
    return jax.tree_util.tree_map(lambda x: jax.device_put(np.asarray(x)[index]), tree)


def pad_leading(tree, length: int, axis: int = 0):
    """Every leaf's leading axis (or ``axis``) extended to ``length`` by repeating
    its last entry.

    Leaves become numpy arrays on the host; all must share that axis's length n
    (1 <= n <= length).
    """

    def pad(x):
        x = np.asarray(x)
        return np.take(x, np.minimum(np.arange(length), x.shape[axis] - 1), axis=axis)

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
    return jax.device_put(to_host(whole))


# Traced programs on disk (Stage).

_ROOT = Path(__file__).resolve().parent
_traced_folder: list[Path | None] = [None]


def use_traced_folder(folder: Path | None) -> None:
    """Keep traced programs in ``folder`` (None: trace every time)."""
    _traced_folder[0] = folder


def exportable(cls: type) -> type:
    """Class decorator: a pytree dataclass (no static fields) may appear in the
    inputs and outputs of a :class:`Stage` kept on disk."""
    jax.export.register_pytree_node_serialization(
        cls,
        serialized_name=f"adplan.{cls.__module__}.{cls.__qualname__}",
        serialize_auxdata=lambda aux: b"",
        deserialize_auxdata=lambda data: (),
    )
    return cls


@functools.cache
def _code_digest() -> str:
    """Digest of adplan's source, JAX's version, the backend and float64 mode."""
    mode = f"{jax.__version__} {jax.default_backend()} {jax.config.jax_enable_x64}"
    h = hashlib.sha256(mode.encode())
    for path in sorted(_ROOT.rglob("*.py")):
        h.update(path.relative_to(_ROOT).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class Stage:
    """``jax.jit(fn, static_argnames=...)`` whose traced program is kept on disk.

    The compilation cache saves XLA's compile step, but every new process still
    traces each jitted function to a program and lowers it (seconds for the
    allocator) just to find the cached entry. A Stage keeps
    the traced program itself (``jax.export``'s serialized StableHLO, no pickle) in
    ``traced/`` next to the compiled ones, keyed by the function, its static
    arguments, the shapes and dtypes of its inputs, the JAX version and a digest of
    adplan's own source, so an entry from other code is never used. A later process
    loads it and calls it; the compilation cache then supplies the compiled code.

    Calls inside another traced function (under ``jit`` or ``vmap``), with the cache
    off, or with inputs that cannot be exported fall back to the plain ``jax.jit``.
    """

    def __init__(self, fn: Callable, static_argnames: tuple[str, ...] = ()):
        self._fn = fn
        self._jit = jax.jit(fn, static_argnames=static_argnames)
        self._signature = inspect.signature(fn)
        self._static = static_argnames
        self._name = f"{fn.__module__}.{fn.__qualname__}"
        self._loaded: dict[str, Callable] = {}
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        folder = _traced_folder[0]
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        if folder is None or any(map(_traced_or_sharded, leaves)):
            return self._jit(*args, **kwargs)
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        static = {k: v for k, v in bound.arguments.items() if k in self._static}
        names = [k for k in bound.arguments if k not in self._static]
        dynamic = jax.tree_util.tree_map(
            _as_array, tuple(bound.arguments[k] for k in names)
        )
        key = self._key(static, dynamic)
        call = self._loaded.get(key) or self._load(folder, key, names, static, dynamic)
        return call(*dynamic)

    def _cache_size(self) -> int:
        """Programs this process holds (traced or loaded, and plain jit's)."""
        return len(self._loaded) + self._jit._cache_size()

    def _key(self, static: dict, dynamic: tuple) -> str:
        leaves, tree = jax.tree_util.tree_flatten(dynamic)
        shapes = [(x.shape, str(x.dtype)) for x in leaves]
        text = (
            f"{self._name}|{sorted(static.items())!r}|{tree}|{shapes}|{_code_digest()}"
        )
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    def _load(self, folder, key, names, static, dynamic) -> Callable:
        path = folder / "traced" / f"{key}.stablehlo"
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # absent, unreadable or damaged: trace it again
            exported = None
        if exported is None:
            target = functools.partial(_call_named, self._fn, names, static)
            try:
                exported = jax.export.export(jax.jit(target))(*dynamic)
                _write(path, exported.serialize())
            except Exception:
                # Not exportable (e.g. a pytree class not marked exportable): the
                # plain jit, in memory only; a real error in ``fn`` raises from it.
                call = functools.partial(_call_named, self._jit, names, static)
                self._loaded[key] = call
                return call
        call = jax.jit(exported.call)
        self._loaded[key] = call
        return call


def stage(static_argnames: tuple[str, ...] = ()) -> Callable[[Callable], Stage]:
    """Decorator: ``@stage(("config",))`` in place of ``@jax.jit(static_argnames=...)``."""
    return lambda fn: Stage(fn, static_argnames)


def _traced_or_sharded(x) -> bool:
    """Inside a trace, or spread over several devices (kept on the plain jit)."""
    if isinstance(x, jax.core.Tracer):
        return True
    return isinstance(x, jax.Array) and len(x.sharding.device_set) > 1


def _as_array(x):
    return x if isinstance(x, jax.Array | np.ndarray) else np.asarray(x)


def _call_named(fn, names, static, *dynamic):
    return fn(**dict(zip(names, dynamic, strict=True)), **static)


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
