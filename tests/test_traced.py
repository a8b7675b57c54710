"""Traced programs kept on disk: a later process loads them instead of tracing, and
gets the same numbers; anything unusual falls back to tracing, never to a wrong result."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optimizer import devices as traced

TRACES = [0]


def _scaled_sum(x, offset, scale):
    TRACES[0] += 1  # Python runs only while JAX traces
    return jnp.sum(x * scale) + offset, x[::-1]


@pytest.fixture
def folder(tmp_path):
    traced.use_traced_folder(tmp_path)
    yield tmp_path
    from optimizer.devices import compilation_cache_folder

    # back to what conftest set for the run (the shared cache folder)
    traced.use_traced_folder(compilation_cache_folder())


def _stage():
    """A fresh Stage, as a new process would have."""
    return traced.Stage(_scaled_sum, ("scale",))


def test_a_new_process_loads_the_program_instead_of_tracing(folder):
    x = jnp.arange(5.0)
    TRACES[0] = 0
    first = _stage()(x, 1.5, scale=2.0)
    assert TRACES[0] == 1 and len(list((folder / "traced").iterdir())) == 1
    again = _stage()(x, 1.5, scale=2.0)  # no trace: loaded from disk
    assert TRACES[0] == 1
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(again[0]) == 21.5 and again[1].tolist() == [4, 3, 2, 1, 0]


def test_new_shapes_static_values_or_code_trace_again(folder, monkeypatch):
    TRACES[0] = 0
    _stage()(jnp.arange(5.0), 0.0, scale=2.0)
    _stage()(jnp.arange(6.0), 0.0, scale=2.0)  # new shape
    _stage()(jnp.arange(6.0), 0.0, scale=3.0)  # new static value
    assert TRACES[0] == 3
    monkeypatch.setattr(traced, "_code_digest", lambda: "other source")
    out = _stage()(jnp.arange(6.0), 0.0, scale=3.0)  # adplan's code changed
    assert TRACES[0] == 4 and float(out[0]) == 45.0
    assert len(list((folder / "traced").iterdir())) == 4


def test_a_damaged_entry_is_traced_again_and_replaced(folder):
    x = jnp.arange(4.0)
    _stage()(x, 0.0, scale=1.0)
    (entry,) = (folder / "traced").iterdir()
    entry.write_bytes(b"not a program")
    TRACES[0] = 0
    out = _stage()(x, 0.0, scale=1.0)
    assert TRACES[0] == 1 and float(out[0]) == 6.0
    assert entry.read_bytes() != b"not a program"
    _stage()(x, 0.0, scale=1.0)
    assert TRACES[0] == 1  # the rewritten entry loads


def test_cache_off_and_inside_a_trace_use_plain_jit(folder):
    traced.use_traced_folder(None)
    TRACES[0] = 0
    stage = _stage()
    assert float(stage(jnp.arange(3.0), 0.0, scale=1.0)[0]) == 3.0
    assert TRACES[0] == 1 and not (folder / "traced").exists()
    traced.use_traced_folder(folder)
    batched = jax.vmap(lambda x: stage(x, 0.0, scale=2.0)[0])(jnp.ones((4, 3)))
    assert batched.tolist() == [6.0] * 4 and not (folder / "traced").exists()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Pair:  # a pytree class not marked exportable
    total: jax.Array
    first: jax.Array


def _pair(x):
    TRACES[0] += 1
    return _Pair(jnp.sum(x), x[0])


def test_an_output_that_cannot_be_kept_runs_on_plain_jit(folder):
    TRACES[0] = 0
    stage = traced.Stage(_pair)
    out = stage(jnp.arange(3.0) + 1)
    assert isinstance(out, _Pair) and float(out.total) == 6.0 and float(out.first) == 1
    stage(jnp.arange(3.0))
    assert TRACES[0] <= 3 and not list((folder / "traced").glob("*"))


def test_an_error_in_the_function_reaches_the_caller(folder):
    def bad(x):
        raise ValueError("wrong input shape")

    with pytest.raises(ValueError, match="wrong input shape"):
        traced.Stage(bad)(jnp.ones(2))
