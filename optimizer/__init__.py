"""adplan: per-audience budgets and bids that maximize conversions under a budget.

Pipeline: event log -> features -> rate network + market model -> allocator ->
simulator -> spend plan and HTML report.
"""

__version__ = "0.1.0"
