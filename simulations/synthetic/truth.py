"""The true market behind a synthetic log, and the exact expected outcome of any plan.

The truth is expressed as :class:`optimizer.market.params.MarketParams` whose strata are
every combination of the categorical features times a 9-node Gauss-Hermite rule
for the numeric feature, so the same closed-form response functions that plan on
a fitted model give the exact expectation under the truth (the numeric feature is
integrated to quadrature precision, ~1e-6 relative).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

from optimizer.allocate.config import SolveConfig
from optimizer.allocate.exact import ExactSolution, solve_exact
from optimizer.allocate.problem import make_problem
from optimizer.errors import InputError
from optimizer.market.params import MarketParams, Outcomes, expected_outcomes
from simulations.synthetic import realism
from simulations.synthetic.discrete import discrete_optimum

_GH_NODES = 9


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Truth:
    """A synthetic market's parameters (the dict written to truth.json)."""

    def __init__(self, data: dict) -> None:
        self.data = data
        self.features: dict[str, list[str]] = data["features"]
        self.audiences: list[str] = [a["audience"] for a in data["audiences"]]
        self._numeric = data["numeric"]["page_score"]
        combos = np.array(
            list(itertools.product(*(range(len(v)) for v in self.features.values())))
        )
        nodes, gh_w = np.polynomial.hermite_e.hermegauss(_GH_NODES)
        self._codes = {
            f: np.repeat(combos[:, i], _GH_NODES) for i, f in enumerate(self.features)
        }
        self._z = np.tile(nodes, len(combos))
        self._gh_w = np.tile(gh_w / gh_w.sum(), len(combos))
        self._centre = np.array(
            [self._cell_centre(a) for a in range(len(self.audiences))]
        )

    @classmethod
    def load(cls, path: str | Path) -> Truth:
        """Read truth.json written by ``adplan generate``."""
        try:
            return cls(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(
                f"truth file {path}: not a truth.json written by 'adplan generate' ({exc})."
            ) from exc

    @property
    def auction_type(self) -> str:
        return self.data["auction_type"]

    def rates_from_codes(
        self, a: int, codes: dict[str, np.ndarray], z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """True p(click | won) and p(conversion | click) for audience ``a``.

        Args:
            codes: feature name -> (n,) integer level index.
            z: (n,) standardized numeric feature.
        """
        aud = self.data["audiences"][a]
        logits = []
        for part, intercept in (
            ("click", aud["click_intercept"]),
            ("post_click", aud["post_click_intercept"]),
        ):
            spec = self.data[part]
            x = intercept + spec["numeric_slope"] * z
            for f, levels in self.features.items():
                x = x + np.array([spec["effects"][f][lvl] for lvl in levels])[codes[f]]
            f1, f2 = spec["interaction"]["features"]
            x = x + np.asarray(spec["interaction"]["table"])[codes[f1], codes[f2]]
            logits.append(x)
        return _sigmoid(logits[0]), _sigmoid(logits[1])

    def rates_for_rows(self, events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """True p(click | won) and p(conversion | won) for each row of an event log."""
        p_click = np.empty(len(events))
        p_conv = np.empty(len(events))
        z = (
            events["page_score"].to_numpy(float) - self._numeric["mean"]
        ) / self._numeric["std"]
        for a, name in enumerate(self.audiences):
            rows = np.flatnonzero(events["audience"].to_numpy() == name)
            codes = {
                f: pd.Categorical(events[f].to_numpy()[rows], categories=v).codes
                for f, v in self.features.items()
            }
            pc, pp = self.rates_from_codes(a, codes, z[rows])
            p_click[rows], p_conv[rows] = pc, pc * pp
        return p_click, p_conv

    def _cell_weights(self, a: int) -> np.ndarray:
        mix = self.data["audiences"][a]["feature_mix"]
        w = self._gh_w.copy()
        for f in self.features:
            w = w * np.asarray(mix[f])[self._codes[f]]
        return w

    def _cell_centre(self, a: int) -> float:
        pc, pp = self.rates_from_codes(a, self._codes, self._z)
        return float(np.sum(self._cell_weights(a) * np.log(pc * pp)))

    def _price_loc(self, a: int, p_conv: np.ndarray) -> np.ndarray:
        aud = self.data["audiences"][a]
        slope = self.data["competition_slope"]
        return aud["price"]["log_median"] + slope * (np.log(p_conv) - self._centre[a])

    def sample_prices(
        self, a: int, p_conv: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Highest competing bid for impressions with true p(conversion | won) ``p_conv``."""
        comps = self.data["audiences"][a]["price"]["components"]
        which = rng.choice(len(comps), size=len(p_conv), p=[c["weight"] for c in comps])
        offset = np.array([c["offset"] for c in comps])[which]
        sigma = np.array([c["sigma"] for c in comps])[which]
        return np.exp(
            self._price_loc(a, p_conv)
            + offset
            + sigma * rng.standard_normal(len(p_conv))
        )

    @property
    def is_real(self) -> bool:
        """Whether this is a ``--realism real`` market (discrete prices, latent, drift)."""
        return self.data.get("realism") == "real"

    def market_params(self, day: int | None = None) -> MarketParams:
        """The exact market as MarketParams: the planned horizon's, or log day ``day``'s.

        Demo market (no drift, every day alike): K = feature combinations x 9 nodes,
        J = 2. Real market: K = price points (padded), J = 1 (see
        :mod:`simulations.synthetic.realism`); ``day`` None is the horizon after drift.
        """
        if self.is_real:
            frac = 1.0 if day is None else day / self.data["days"]
            return self._real_params(frac)
        rows = {
            k: []
            for k in (
                "weight",
                "p_click",
                "p_conv",
                "value",
                "price_loc",
                "mix_weight",
                "mix_loc",
                "mix_scale",
            )
        }
        for a, aud in enumerate(self.data["audiences"]):
            pc, pp = self.rates_from_codes(a, self._codes, self._z)
            rows["weight"].append(self._cell_weights(a))
            rows["p_click"].append(pc)
            rows["p_conv"].append(pc * pp)
            rows["value"].append(np.full(pc.shape, aud["value_per_conversion"]))
            rows["price_loc"].append(self._price_loc(a, pc * pp))
            comps = aud["price"]["components"] + [
                {"weight": 0.0, "offset": 0.0, "sigma": 1.0}
            ]
            rows["mix_weight"].append([c["weight"] for c in comps[:2]])
            rows["mix_loc"].append([c["offset"] for c in comps[:2]])
            rows["mix_scale"].append([c["sigma"] for c in comps[:2]])
        return MarketParams(
            volume_per_day=jnp.asarray(
                [a["volume_per_day"] for a in self.data["audiences"]], jnp.float64
            ),
            hour_profile=jnp.asarray(
                [a["hour_profile"] for a in self.data["audiences"]], jnp.float64
            ),
            **{k: jnp.asarray(np.array(v), jnp.float64) for k, v in rows.items()},
        )

    def _real_params(self, frac: float) -> MarketParams:
        """The real market ``frac`` along its drift (1 = the planned horizon)."""
        auds = self.data["audiences"]
        size = max(len(a["price"]["prices"]) for a in auds)
        rows = {k: np.zeros((len(auds), size)) for k in ("weight", "rate", "loc")}
        click, conv = [], []
        for a, aud in enumerate(auds):
            weight, mult, price = realism.price_strata(aud, self.data["latent"], frac)
            g = len(price)
            rows["weight"][a, :g], rows["rate"][a, :g] = weight, mult
            rows["loc"][a, :g] = np.log(price)
            rows["loc"][a, g:] = np.log(price[-1])
            pc, pp = self.rates_from_codes(a, self._codes, self._z)
            w = self._cell_weights(a)
            click.append(np.sum(w * pc))
            conv.append(np.sum(w * pc * pp))
        n = len(auds)
        return MarketParams(
            volume_per_day=jnp.asarray(
                [
                    a["volume_per_day"] * realism.volume_factor(a, frac)
                    for a in self.data["audiences"]
                ],
                jnp.float64,
            ),
            hour_profile=jnp.asarray([a["hour_profile"] for a in auds], jnp.float64),
            weight=jnp.asarray(rows["weight"]),
            p_click=jnp.asarray(rows["rate"] * np.asarray(click)[:, None]),
            p_conv=jnp.asarray(rows["rate"] * np.asarray(conv)[:, None]),
            value=jnp.asarray(
                np.repeat([[a["value_per_conversion"]] for a in auds], size, axis=1)
            ),
            price_loc=jnp.asarray(rows["loc"]),
            mix_weight=jnp.ones((n, 1), jnp.float64),
            mix_loc=jnp.full((n, 1), realism.TIE_SHIFT * realism.ATOM_SCALE),
            mix_scale=jnp.full((n, 1), realism.ATOM_SCALE),
        )

    def expected_outcome(
        self, bid: np.ndarray, budget: np.ndarray | None, days: float
    ) -> Outcomes:
        """Exact expected outcomes per audience of bids (A,) and budget caps (A,)."""
        cap = None if budget is None else jnp.asarray(budget, jnp.float64)
        return expected_outcomes(
            self.market_params(),
            jnp.asarray(bid, jnp.float64),
            days,
            cap,
            self.auction_type == "first_price",
        )

    def optimal_plan(
        self, budget: float, days: float, objective: str = "conversions"
    ) -> ExactSolution:
        """The exact optimal plan under the truth for a total budget over ``days``."""
        if self.is_real:
            return discrete_optimum(
                self.market_params(), days, budget, objective, self.auction_type
            )
        problem = make_problem(self.market_params(), days, budget)
        return solve_exact(
            problem, SolveConfig(objective, self.auction_type == "first_price")
        )

    def usual_bids(self) -> np.ndarray:
        """(A,) the behaviour policy's usual bid per audience (the 'current' plan)."""
        return np.array(
            [
                np.exp(a["price"]["log_median"]) * a["usual_bid_ratio"]
                for a in self.data["audiences"]
            ]
        )
