"""Benchmarks of adplan's stages against reference implementations.

Money is float64 throughout adplan, and ``optimizer.allocate.response`` builds constants at
import time, so float64 is enabled here, before any benchmark module imports the
optimizer: ``python -m benchmarks.run ...`` and ``python -m benchmarks.bench_*``
both import this package first.
"""

import jax

jax.config.update("jax_enable_x64", True)
