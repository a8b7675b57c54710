"""Many plans in one compiled solve: problems stacked on a leading axis.

What-if scenarios, the min-budget pause/raise choices, the constraint prices and
the target searches all solve a stack of S problems of one shape. The stack is
padded to a bucket size (repeating its last problem) so that one compiled
program serves every S up to that bucket: a planner's second command with a
different scenario count reuses the first one's compiled code instead of
compiling again (seconds each). Results are trimmed back to the S problems.
"""

from __future__ import annotations

import jax

from optimizer import devices
from optimizer.allocate.allocator import Allocation, allocate
from optimizer.allocate.config import DEFAULT_CONFIG, SolveConfig
from optimizer.allocate.problem import Problem

# Stack sizes compiled for; larger stacks round up to a multiple of the last.
BUCKETS = (4, 16, 64)


def bucket(n: int) -> int:
    """The padded length of a stack of ``n`` problems (n >= 1)."""
    for size in BUCKETS:
        if n <= size:
            return size
    return devices.pad_to(n, BUCKETS[-1])


@jax.jit(static_argnames=("config",))
def allocate_stacked(batch: Problem, config: SolveConfig) -> Allocation:
    """Plans of the stacked problems as they are (no padding), one vmapped solve."""
    return jax.vmap(lambda p: allocate(p, config))(batch)


def allocate_many(batch: Problem, config: SolveConfig = DEFAULT_CONFIG) -> Allocation:
    """Plans of S stacked problems (every array with a leading axis S).

    Each plan is the one :func:`~optimizer.allocate.allocator.allocate` gives
    that problem alone; the returned arrays have the leading axis S.
    """
    s = jax.tree_util.tree_leaves(batch)[0].shape[0]
    padded = devices.pad_leading(batch, bucket(s))
    return jax.tree_util.tree_map(lambda x: x[:s], allocate_stacked(padded, config))
