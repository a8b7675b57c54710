"""The persistent compilation cache: where it lives, how it is turned off, and that
every adplan command turns it on before computing (compiled programs land on disk)."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from optimizer import devices
from optimizer.cli import main


@pytest.fixture
def restore_cache():
    """Put the session's (temporary) cache back after a test moves it."""
    yield
    devices.use_compilation_cache(devices.compilation_cache_folder())


def test_folder_defaults_to_per_user_cache(tmp_path):
    assert devices.compilation_cache_folder(environ={}) == (
        Path.home() / ".cache" / "adplan" / "jax"
    )
    xdg = {"XDG_CACHE_HOME": str(tmp_path)}
    assert devices.compilation_cache_folder(environ=xdg) == tmp_path / "adplan" / "jax"
    moved = {**xdg, "ADPLAN_CACHE_DIR": str(tmp_path / "mine")}
    assert devices.compilation_cache_folder(environ=moved) == tmp_path / "mine"


@pytest.mark.parametrize(
    ("disabled", "environ"),
    [(True, {}), (False, {"ADPLAN_NO_CACHE": "1"}), (True, {"ADPLAN_CACHE_DIR": "x"})],
)
def test_folder_none_when_disabled(disabled, environ):
    assert devices.compilation_cache_folder(disabled, environ) is None


def test_folder_kept_when_no_cache_is_zero(tmp_path):
    environ = {"ADPLAN_NO_CACHE": "0", "ADPLAN_CACHE_DIR": str(tmp_path)}
    assert devices.compilation_cache_folder(False, environ) == tmp_path


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _run_predict(tmp_path: Path, *group_args: str):
    """``adplan predict`` on an empty model folder: it sets JAX up, then fails
    cleanly (exit 1) reading the model; enough to see the cache settings."""
    events = tmp_path / "events.csv"
    events.write_text("not,an,event,log\n")
    args = ["--model", str(tmp_path / "model"), "--events", str(events)]
    return CliRunner().invoke(
        main, [*group_args, "predict", *args, "--out", str(tmp_path / "p.csv")]
    )


def test_command_writes_small_programs_to_the_cache(
    tmp_path, monkeypatch, restore_cache
):
    folder = tmp_path / "cache"
    monkeypatch.setenv("ADPLAN_CACHE_DIR", str(folder))
    result = _run_predict(tmp_path)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    # A tiny program (well under JAX's default 1 s threshold) is kept on disk.
    before = len(_files(folder))
    jax.jit(lambda x: x * 3.25 + 0.125)(jnp.arange(7.0)).block_until_ready()
    assert len(_files(folder)) > before


def test_no_cache_flag_keeps_the_folder_empty(tmp_path, monkeypatch, restore_cache):
    folder = tmp_path / "cache"
    monkeypatch.setenv("ADPLAN_CACHE_DIR", str(folder))
    result = _run_predict(tmp_path, "--no-cache")
    assert result.exit_code == 1, result.output
    jax.jit(lambda x: x * 5.75 - 0.375)(jnp.arange(9.0)).block_until_ready()
    assert _files(folder) == []
    assert not jax.config.jax_enable_compilation_cache


def test_no_cache_env_keeps_the_folder_empty(tmp_path, monkeypatch, restore_cache):
    folder = tmp_path / "cache"
    monkeypatch.setenv("ADPLAN_CACHE_DIR", str(folder))
    monkeypatch.setenv("ADPLAN_NO_CACHE", "1")
    assert _run_predict(tmp_path).exit_code == 1
    jax.jit(lambda x: x * 6.5 + 0.875)(jnp.arange(11.0)).block_until_ready()
    assert _files(folder) == []


def test_tests_never_write_to_the_users_home():
    home_cache = Path.home() / ".cache" / "adplan"
    assert not str(devices.compilation_cache_folder()).startswith(str(home_cache))
    assert os.environ["ADPLAN_CACHE_DIR"]


def _landscape_rows(seed: int):
    from optimizer.market.landscape import LandscapeData

    rng = np.random.default_rng(seed)
    n, a = 240, 3
    audience = np.repeat(np.arange(a, dtype=np.int32), n // a)
    log_price = rng.normal(-6.0 + 0.3 * audience, 0.5)
    log_bid = rng.normal(-6.0, 0.6, n)
    won = log_bid > log_price
    return LandscapeData(
        audience=audience,
        log_bid=log_bid,
        log_cost=np.where(won, log_price, 0.0),
        won=won,
        shift=rng.normal(0.0, 0.2, n),
        n_audiences=a,
        first_price=False,
    )


def test_landscape_fit_compiles_once_per_shape():
    """A second log of the same size compiles nothing (no jit built per call)."""
    from jax import monitoring

    from optimizer.market.landscape import _fit

    seen = {"on": False, "compiles": 0}

    def listen(event, _seconds, **_):
        if seen["on"] and event == "/jax/core/compile/backend_compile_duration":
            seen["compiles"] += 1

    monitoring.register_event_duration_secs_listener(listen)
    _fit(_landscape_rows(0), mixture=False, iterations=20)  # the plain family only
    seen["on"] = True
    params, loglik = _fit(_landscape_rows(1), mixture=False, iterations=20)
    seen["on"] = False
    assert seen["compiles"] == 0
    assert np.all(np.isfinite(params["mu"])) and np.all(np.isfinite(loglik))
