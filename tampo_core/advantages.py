"""Temperature-specific advantages and the min-max meta-policy (the paper's Eqs. 7-12)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tampo_core.sparsemax import sparsemax

MINMAX_EPS = 1e-12
"""Below this spread of the EMA the meta-policy is uniform (e.g. before any update)."""


class TemperatureAdvantageSums(NamedTuple):
    """Sums over one batch, ready to be all-reduced across ranks (every field adds up).

    Attributes:
        advantage_sum: float64 ``[K]``, ``sum_i w_ik * A_i`` over the counted trajectories.
        count: number of counted trajectories N.
        skipped: number of trajectories skipped for having no valid token.
        support_sum: total sparsemax support size over the counted trajectories.
        argmax_histogram: float64 ``[K]``, how many counted trajectories have T_k as their
            most likely temperature (ties: the lower temperature).
    """

    advantage_sum: np.ndarray
    count: float
    skipped: float
    support_sum: float
    argmax_histogram: np.ndarray

    def pack(self) -> np.ndarray:
        """Flatten to one float64 vector ``[2K + 3]`` (one collective)."""
        return np.concatenate(
            [
                self.advantage_sum,
                [self.count, self.skipped, self.support_sum],
                self.argmax_histogram,
            ]
        )

    @classmethod
    def unpack(cls, packed: np.ndarray, num_temperatures: int) -> TemperatureAdvantageSums:
        """Inverse of :meth:`pack`."""
        k = num_temperatures
        return cls(
            advantage_sum=packed[:k].copy(),
            count=float(packed[k]),
            skipped=float(packed[k + 1]),
            support_sum=float(packed[k + 2]),
            argmax_histogram=packed[k + 3 :].copy(),
        )


def temperature_advantage_sums(
    loglik: np.ndarray, advantages: np.ndarray, valid: np.ndarray
) -> TemperatureAdvantageSums:
    """Per-batch sums of the temperature advantages ``A_i^(k) = sparsemax(loglik_i)_k * A_i``.

    Args:
        loglik: float64 ``[N, K]`` mean log-likelihood of each trajectory at each candidate;
            rows where ``valid`` is False are ignored (they may hold NaN).
        advantages: float64 ``[N]`` trajectory advantages.
        valid: bool ``[N]``, False for trajectories without a valid token.

    Returns:
        The sums (divide ``advantage_sum`` by ``count`` for the batch value A_B).
    """
    rows = loglik[valid]
    weights = sparsemax(rows) if rows.shape[0] else np.zeros_like(rows)
    num_temperatures = loglik.shape[1]
    return TemperatureAdvantageSums(
        advantage_sum=weights.T @ advantages[valid],
        count=float(rows.shape[0]),
        skipped=float(valid.shape[0] - rows.shape[0]),
        support_sum=float((weights > 0).sum()),
        argmax_histogram=np.bincount(rows.argmax(axis=1), minlength=num_temperatures).astype(
            np.float64
        ),
    )


def ema_update(ema: np.ndarray, batch_advantage: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * ema + alpha * batch_advantage`` (float64 ``[K]``)."""
    return (1.0 - alpha) * ema + alpha * batch_advantage


def minmax_distribution(ema: np.ndarray) -> np.ndarray:
    """Meta-policy ``pi = minmax(ema) / sum(minmax(ema))``; uniform when max - min < 1e-12.

    Args:
        ema: float64 ``[K]`` smoothed temperature advantages.

    Returns:
        float64 ``[K]`` probability vector; the lowest EMA entries get probability exactly 0.
    """
    spread = float(ema.max() - ema.min())
    if not spread >= MINMAX_EPS:
        return np.full(ema.shape, 1.0 / ema.shape[0])
    scaled = (ema - ema.min()) / spread
    return scaled / scaled.sum()
