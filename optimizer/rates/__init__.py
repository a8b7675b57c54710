"""Rate stage: won auctions -> calibrated click and conversion rates per impression.

Modules, in the order training uses them: ``config`` (hyperparameters), ``rows``
(split, vocabulary, encoded rows), ``model`` (the ESMM network), ``data_parallel``
(minibatch epochs over the devices), ``train`` (the fit), ``calibration`` (Platt
maps), ``evaluate`` (metrics, baselines), ``store`` (:class:`RateModel` and its
``rates/`` folder).
"""

from optimizer.rates.config import TrainConfig
from optimizer.rates.store import RateModel, load_rate_model
from optimizer.rates.train import fit_rate_model

__all__ = ["RateModel", "TrainConfig", "fit_rate_model", "load_rate_model"]
