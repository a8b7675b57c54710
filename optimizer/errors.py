"""Errors a planner can act on. The CLI turns them into one message and exit code 1."""


class InputError(ValueError):
    """A file or option breaks the data contract; the message says what to fix."""


class InfeasibleError(ValueError):
    """The constraints cannot all be met (e.g. minimum spends above the budget)."""
