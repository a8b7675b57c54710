"""Features stage: a validated event log -> encoded arrays for the rate network.

Every categorical column (the audience included) gets a vocabulary learned from the
training rows; code 0 of each field is the out-of-vocabulary (OOV) bucket, which
also takes unseen, missing and rare values, so the network learns what to predict
for them. Numeric columns are standardized with the training mean and standard
deviation; a missing column or value becomes the mean (0 after scaling). Hour of
day and day of week (UTC) come from ``timestamp`` as two more categorical fields.

All fields share one embedding table: each field's codes are offset into its own
slice of the table, so the network does a single gather.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import pandas as pd

from optimizer.errors import InputError
from optimizer.io.schema import feature_columns

# Outcomes, prices and the behaviour policy's bid are not impression features: the
# rate per won impression must not depend on what we paid or chose to bid.
TIME_FIELDS = {"hour_of_day": 24, "day_of_week": 7}
OOV = 0
# Standardized numeric values are clipped so one outlier cannot saturate the network.
NUMERIC_CLIP = 5.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FeatureBatch:
    """Encoded impressions, the input of the rate network.

    Attributes:
        codes: (n, n_fields) int32, row into the shared embedding table (field
            offset already added; each field's first row is its OOV bucket).
        numeric: (n, n_numeric) float32, standardized numeric features (unitless).
    """

    codes: np.ndarray
    numeric: np.ndarray

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def take(self, rows: np.ndarray) -> FeatureBatch:
        """The batch restricted to ``rows`` ((k,) int or (n,) bool)."""
        return FeatureBatch(self.codes[rows], self.numeric[rows])


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """What the encoder learned from the training rows (stored as features.json).

    Attributes:
        vocab: categorical column -> known values, in code order from 1 (0 is OOV).
        numeric: numeric column -> (mean, std) of the training rows.
    """

    vocab: dict[str, list[str]]
    numeric: dict[str, tuple[float, float]]

    @property
    def field_sizes(self) -> list[int]:
        """Embedding rows per categorical field (vocabulary + OOV), time fields last."""
        return [len(v) + 1 for v in self.vocab.values()] + list(TIME_FIELDS.values())

    @property
    def field_names(self) -> list[str]:
        """Names of the categorical fields in ``FeatureBatch.codes`` column order."""
        return [*self.vocab, *TIME_FIELDS]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "vocab": self.vocab,
            "numeric": {k: list(v) for k, v in self.numeric.items()},
            "time_fields": TIME_FIELDS,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`; raises InputError on a malformed mapping."""
        try:
            vocab = {str(k): [str(x) for x in v] for k, v in data["vocab"].items()}
            numeric = {
                str(k): (float(v[0]), float(v[1])) for k, v in data["numeric"].items()
            }
            time_fields = dict(data["time_fields"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise InputError(f"features.json is malformed ({exc!r}).") from exc
        if time_fields != TIME_FIELDS:
            raise InputError(
                f"features.json has time fields {time_fields}, expected {TIME_FIELDS}."
            )
        if any(not std > 0 for _, std in numeric.values()):
            raise InputError("features.json has a non-positive numeric std.")
        return cls(vocab, numeric)


@dataclasses.dataclass(frozen=True)
class FeatureCounts:
    """Statistics of training rows that add up across chunks and processes.

    Attributes:
        categorical: column -> {value: rows}.
        numeric: column -> (finite rows, mean, sum of squared deviations).
    """

    categorical: dict[str, dict[str, int]]
    numeric: dict[str, tuple[int, float, float]]


def count_features(events: pd.DataFrame) -> FeatureCounts:
    """Value counts and moments of the feature columns of ``events``."""
    categorical, numeric = feature_columns(events)
    counts = {}
    for col in categorical:
        column = events[col]
        if not isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype(str)
        values = column.value_counts(sort=False)
        counts[col] = {str(k): int(v) for k, v in values.items() if v > 0}
    moments = {}
    for col in numeric:
        values = events[col].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        mean = float(values.mean()) if len(values) else 0.0
        moments[col] = (len(values), mean, float(((values - mean) ** 2).sum()))
    return FeatureCounts(counts, moments)


def merge_counts(parts: list[FeatureCounts]) -> FeatureCounts:
    """One FeatureCounts for the union of the rows of ``parts`` (same columns).

    Raises:
        InputError: a column is text in one part and numbers in another.
    """
    first = parts[0]
    for part in parts[1:]:
        if set(part.categorical) != set(first.categorical) or set(part.numeric) != set(
            first.numeric
        ):
            raise InputError(
                "event log: the feature columns differ between chunks or files "
                f"(text: {sorted(first.categorical)} vs {sorted(part.categorical)}; "
                f"numbers: {sorted(first.numeric)} vs {sorted(part.numeric)}). Give "
                "every file the same columns, each either always numbers or always text."
            )
    categorical = {}
    for col in first.categorical:
        total: dict[str, int] = {}
        for part in parts:
            for value, n in part.categorical[col].items():
                total[value] = total.get(value, 0) + n
        categorical[col] = total
    numeric = {}
    for col in first.numeric:
        n, mean, m2 = 0, 0.0, 0.0
        for k, mean_k, m2_k in (part.numeric[col] for part in parts):
            if k == 0:
                continue
            if n == 0:
                n, mean, m2 = k, mean_k, m2_k
                continue
            delta = mean_k - mean
            mean += delta * k / (n + k)
            m2 += m2_k + delta**2 * n * k / (n + k)
            n += k
        numeric[col] = (n, mean, m2)
    return FeatureCounts(categorical, numeric)


def spec_from_counts(
    counts: FeatureCounts, *, min_count: int = 5, max_vocab: int = 10_000
) -> FeatureSpec:
    """Vocabularies (values seen ``min_count`` times or more, most frequent first,
    at most ``max_vocab``) and numeric (mean, std) from merged counts."""
    vocab = {}
    for col, values in counts.categorical.items():
        # Frequency order (ties by value) keeps the vocabulary deterministic.
        kept = sorted(
            ((v, n) for v, n in values.items() if n >= min_count),
            key=lambda kv: (-kv[1], kv[0]),
        )
        vocab[col] = [value for value, _ in kept[:max_vocab]]
    stats = {}
    for col, (n, mean, m2) in counts.numeric.items():
        std = float(np.sqrt(m2 / n)) if n else 0.0
        stats[col] = (mean, std if std > 0 else 1.0)
    return FeatureSpec(vocab, stats)


def fit_features(
    events: pd.DataFrame, *, min_count: int = 5, max_vocab: int = 10_000
) -> FeatureSpec:
    """Learn vocabularies and normalization from the training rows.

    Args:
        events: validated event log, training rows only.
        min_count: values seen fewer times go to the OOV bucket, so the bucket is
            trained and rare IDs do not get an embedding of their own.
        max_vocab: at most this many most frequent values per column.
    """
    return spec_from_counts(
        count_features(events), min_count=min_count, max_vocab=max_vocab
    )


def _category_codes(column: pd.Series | None, known: list[str], n: int) -> np.ndarray:
    """(n,) int32 codes: 1..len(known) for known values, 0 (OOV) for anything else."""
    if column is None:
        return np.full(n, OOV, np.int32)
    if not isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(str)
    codes = pd.Categorical(column, categories=known).codes
    return (codes.astype(np.int32) + 1).astype(np.int32)


def _time_codes(timestamp: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(n,) int32 hour of day 0..23 and day of week 0..6 (Monday = 0), in UTC."""
    ts = pd.to_datetime(timestamp, utc=True)
    return (
        ts.dt.hour.to_numpy(dtype=np.int32),
        ts.dt.dayofweek.to_numpy(dtype=np.int32),
    )


def _numeric_values(column: pd.Series | None, mean: float, std: float, n: int):
    """(n,) float32 standardized and clipped values; missing -> 0 (the mean)."""
    if column is None:
        return np.zeros(n, np.float32)
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    scaled = np.nan_to_num((values - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(scaled, -NUMERIC_CLIP, NUMERIC_CLIP).astype(np.float32)


def encode(spec: FeatureSpec, events: pd.DataFrame) -> FeatureBatch:
    """Encode any event log (won or lost rows) with a fitted spec.

    Unseen values and missing categorical columns map to OOV, missing numeric
    columns to the training mean; columns the spec does not know are ignored.

    Raises:
        InputError: if ``timestamp`` is missing.
    """
    if "timestamp" not in events.columns:
        raise InputError("the event log needs a 'timestamp' column to predict rates.")
    n = len(events)
    columns = [
        _category_codes(events.get(col), known, n) for col, known in spec.vocab.items()
    ]
    columns.extend(_time_codes(events["timestamp"]))
    offsets = np.cumsum([0, *spec.field_sizes[:-1]], dtype=np.int32)
    codes = np.stack(columns, axis=1) + offsets[None, :]
    numeric = [
        _numeric_values(events.get(col), mean, std, n)
        for col, (mean, std) in spec.numeric.items()
    ]
    num = np.stack(numeric, axis=1) if numeric else np.zeros((n, 0), np.float32)
    return FeatureBatch(np.ascontiguousarray(codes, np.int32), num)
