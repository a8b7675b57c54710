"""The solve-wide choices of a plan: objective, auction type, spend-all.

They select code paths, not values, so they travel as one frozen (hashable)
:class:`SolveConfig`, a static argument of every jitted solve, rather than as
loose flags.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SolveConfig:
    """How a Problem is scored and solved (static under ``jax.jit``).

    Attributes:
        objective: what to maximize, 'conversions' or 'value' (conversions x value).
        first_price: auction type of the market: True if a won impression costs
            its bid, False if it costs the competing price (second price).
        spend_all: force total spend to equal the budget (otherwise the plan may
            spend less).
    """

    objective: str = "conversions"
    first_price: bool = False
    spend_all: bool = False


# The default of every solve: conversions, second price, spend up to the budget.
DEFAULT_CONFIG = SolveConfig()
