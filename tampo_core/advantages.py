"""Temperature-specific advantages and the min-max meta-policy (the paper's Eqs. 7-12)."""

from __future__ import annotations

from typing import NamedTuple, get_type_hints

import numpy as np

from tampo_core.sparsemax import sparsemax
from tampo_core.validation import expected

MINMAX_EPS = 1e-12
"""Below this spread of the EMA the meta-policy is uniform (e.g. before any update)."""


class TemperatureAdvantageSums(NamedTuple):
    """Sums over one batch, ready to be all-reduced across ranks (every field adds up).

    Every field is a float or a float64 ``[K]`` array (annotated ``np.ndarray``); :meth:`pack`
    and :meth:`unpack` follow the field order, so a new additive field travels in the same
    single collective without further code.

    Attributes:
        advantage_sum: float64 ``[K]``, ``sum_i w_ik * A_i`` over the counted trajectories
            (with ``meta_advantage="batch_baseline"``, ``A_i`` is the reward ``r_i``: the
            baseline is applied after the reduction, ``tampo_core.meta_advantage``).
        count: number of counted trajectories N.
        skipped: number of trajectories skipped for having no valid token.
        support_sum: total sparsemax support size over the counted trajectories.
        argmax_histogram: float64 ``[K]``, how many counted trajectories have T_k as their
            most likely temperature (ties: the lower temperature).
        weight_sum: float64 ``[K]``, ``sum_i w_ik`` over the counted trajectories.
        reward_sum: ``sum_i r_i`` over the counted trajectories (0 unless the batch baseline
            is in use).
        reward_sq_sum: ``sum_i r_i^2`` likewise.
    """

    advantage_sum: np.ndarray
    count: float
    skipped: float
    support_sum: float
    argmax_histogram: np.ndarray
    weight_sum: np.ndarray
    reward_sum: float
    reward_sq_sum: float

    def pack(self) -> np.ndarray:
        """Flatten to one float64 vector, fields in order (``[3K + 5]``), for one collective."""
        return np.concatenate([np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in self])

    @classmethod
    def unpack(cls, packed: np.ndarray, num_temperatures: int) -> TemperatureAdvantageSums:
        """Inverse of :meth:`pack` (each ``np.ndarray`` field is ``[K]``, each float one slot).

        Raises:
            ValueError: ``packed`` is not float64 ``[M]`` with M what K implies.
        """
        sizes = cls._field_sizes(num_temperatures)
        if packed.shape != (sum(sizes),):
            rule = f"shape [{sum(sizes)}] for K = {num_temperatures}"
            raise ValueError(expected("packed", rule, f"shape {list(packed.shape)}"))
        ends = np.cumsum(sizes).tolist()
        return cls(
            *(
                packed[end - size : end].astype(np.float64) if vector else float(packed[end - 1])
                for size, end, vector in zip(sizes, ends, cls._vector_fields(), strict=True)
            )
        )

    @classmethod
    def zeros(cls, num_temperatures: int) -> TemperatureAdvantageSums:
        """Empty sums: what a rank contributes when its batch failed its checks."""
        return cls.unpack(np.zeros(sum(cls._field_sizes(num_temperatures))), num_temperatures)

    @classmethod
    def _vector_fields(cls) -> list[bool]:
        hints = get_type_hints(cls)
        return [hints[name] is np.ndarray for name in cls._fields]

    @classmethod
    def _field_sizes(cls, num_temperatures: int) -> list[int]:
        return [num_temperatures if vector else 1 for vector in cls._vector_fields()]


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
        weight_sum=weights.sum(axis=0),
        reward_sum=0.0,
        reward_sq_sum=0.0,
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
