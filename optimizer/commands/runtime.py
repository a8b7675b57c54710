"""What every ``adplan`` command shares at run time: JAX set-up, clear errors
instead of tracebacks, signal handling, device meshes, quiet printing, help examples.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable
from typing import Any

import click

from optimizer.errors import InfeasibleError, InputError


def enable_x64() -> None:
    """Money is summed in float64: switch JAX to 64-bit before any array exists,
    and turn on the compilation cache (off with ``adplan --no-cache``)."""
    import jax

    from optimizer import devices

    jax.config.update("jax_enable_x64", True)
    ctx = click.get_current_context(silent=True)
    no_cache = bool(ctx and ctx.find_root().obj and ctx.find_root().obj["no_cache"])
    devices.use_compilation_cache(devices.compilation_cache_folder(no_cache))


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn contract errors into ClickException (exit 1, message, no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InfeasibleError as exc:
            raise click.ClickException(f"infeasible: {exc}") from None
        except InputError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            from optimizer.io.files import os_error_message

            raise click.ClickException(os_error_message(exc)) from None

    return wrapper


def stop_on_signal(signum: int, frame: Any) -> None:
    """SIGTERM: unwind like Ctrl-C so temporary outputs are removed (exit 143)."""
    click.echo("adplan: stopped (SIGTERM); nothing half-written was left.", err=True)
    raise SystemExit(128 + signum)


def device_mesh(count: int, axis: str):
    """None for one device, else a mesh over the first ``count`` devices."""
    if count == 1:
        return None
    import jax

    from optimizer import devices

    available = jax.devices()
    if count > len(available):
        raise InputError(
            f"--devices {count}: this machine has {len(available)} device(s) "
            f"({available[0].platform}). Pass --devices {len(available)} or fewer."
        )
    return devices.mesh(axis, available[:count])


def example(command: str) -> str:
    """A --help epilog showing one command line (kept unwrapped by click)."""
    return f"\b\nExample:\n  {command}"


def echo(ctx: click.Context, message: str) -> None:
    """Print unless --quiet was given."""
    if not ctx.obj.get("quiet"):
        click.echo(message)


def unwind_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C (main thread only: tests run commands in threads)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop_on_signal)
