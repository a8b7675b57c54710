"""Market stage: what a bid buys in each audience, fitted from the event log.

``params`` holds the hand-off types (:class:`MarketParams`, :class:`Outcomes`) and
the closed forms; ``landscape`` and ``spread`` fit the bid landscapes and the
within-audience rate spread; ``fit`` turns a log into a
:class:`~optimizer.market.fit.FittedMarket`; ``store`` writes and reads
market.json. Only the pure-JAX hand-off types are re-exported here, so that
importing them does not load pandas.
"""

from optimizer.market.params import MarketParams, Outcomes

__all__ = ["MarketParams", "Outcomes"]
