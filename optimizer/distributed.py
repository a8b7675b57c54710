"""Several processes, one training job: ``jax.distributed`` set-up and host exchange.

One process is the normal case and everything here is then a no-op. With
``--num-processes N`` each process runs ``adplan train`` on its own machine (or
port), reads its share of the log, and the processes agree on vocabularies,
statistics and the validation split by exchanging small byte strings through
JAX's own collectives (:func:`jax.experimental.multihost_utils.process_allgather`),
never pickles.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from optimizer.errors import InputError

ENV_COORDINATOR = "ADPLAN_COORDINATOR"
ENV_NUM_PROCESSES = "ADPLAN_NUM_PROCESSES"
ENV_PROCESS_ID = "ADPLAN_PROCESS_ID"


def initialize(
    coordinator: str | None, num_processes: int | None, process_id: int | None
) -> None:
    """Join a multi-process job (``jax.distributed.initialize``) when asked to.

    Arguments left as None fall back to the ``ADPLAN_COORDINATOR``,
    ``ADPLAN_NUM_PROCESSES`` and ``ADPLAN_PROCESS_ID`` environment variables; with
    no coordinator at all this does nothing (single process).

    Raises:
        InputError: incomplete or inconsistent settings.
    """
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR)
    if num_processes is None and os.environ.get(ENV_NUM_PROCESSES):
        num_processes = int(os.environ[ENV_NUM_PROCESSES])
    if process_id is None and os.environ.get(ENV_PROCESS_ID):
        process_id = int(os.environ[ENV_PROCESS_ID])
    if coordinator is None and num_processes in (None, 1):
        return
    if coordinator is None or num_processes is None or process_id is None:
        raise InputError(
            "multi-process training needs all three of --coordinator HOST:PORT, "
            "--num-processes N and --process-id I (or the ADPLAN_COORDINATOR, "
            "ADPLAN_NUM_PROCESSES and ADPLAN_PROCESS_ID environment variables)."
        )
    if not 0 <= process_id < num_processes:
        raise InputError(
            f"--process-id must be between 0 and {num_processes - 1}, got {process_id}."
        )
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
    )


def process_count() -> int:
    """Processes in the job (1 unless :func:`initialize` joined a job)."""
    return jax.process_count()


def process_index() -> int:
    """This process's rank, 0 to process_count() - 1; rank 0 writes the outputs."""
    return jax.process_index()


def allgather_bytes(data: bytes) -> list[bytes]:
    """Every process's ``data``, in process order (one element per process)."""
    if process_count() == 1:
        return [data]
    size = np.array([len(data)], np.int32)
    sizes = np.asarray(multihost_utils.process_allgather(size)).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: len(data)] = np.frombuffer(data, np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [gathered[i, : sizes[i]].tobytes() for i in range(len(sizes))]


def allgather_array(x: np.ndarray) -> list[np.ndarray]:
    """Every process's array (any shape, same dtype and trailing shape), in order."""
    x = np.ascontiguousarray(x)
    parts = allgather_bytes(x.tobytes())
    return [np.frombuffer(p, x.dtype).reshape(-1, *x.shape[1:]) for p in parts]


def combine(x: np.ndarray, reduce: Callable[[Sequence[np.ndarray]], np.ndarray]):
    """``reduce`` over every process's copy of ``x`` (same shape everywhere)."""
    x = np.asarray(x)
    return reduce([p.reshape(x.shape) for p in allgather_array(x.reshape(1, -1))])
