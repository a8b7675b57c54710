"""Hyperparameters of rate-network training: :class:`TrainConfig` (in config.json)."""

from __future__ import annotations

import dataclasses

from optimizer.errors import InputError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters (stored in config.json).

    Attributes:
        epochs: maximum passes over the training rows.
        validation_days: trailing days of the log held out for validation.
        batch_size: rows per step; 0 picks ~1/64 of the training rows, as a power
            of two within [256, 8192].
        learning_rate: AdamW step size.
        weight_decay: AdamW decoupled weight decay.
        clip_norm: global gradient-norm clip.
        patience: epochs without improvement before stopping.
        min_improvement: smaller drops of the validation loss do not count.
        embed_dim: embedding dimension.
        hidden: shared MLP widths.
        min_count: category values rarer than this in training go to OOV.
    """

    epochs: int = 30
    validation_days: float = 2.0
    batch_size: int = 0
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    clip_norm: float = 1.0
    patience: int = 2
    min_improvement: float = 1e-4
    embed_dim: int = 8
    hidden: tuple[int, ...] = (64, 32)
    min_count: int = 5

    def __post_init__(self) -> None:
        """Reject settings that cannot train."""
        if self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}.")
        if not self.validation_days > 0:
            raise InputError(
                f"validation_days must be > 0, got {self.validation_days}."
            )
        if self.batch_size < 0 or self.patience < 1 or self.min_count < 1:
            raise InputError("batch_size must be >= 0, patience and min_count >= 1.")
