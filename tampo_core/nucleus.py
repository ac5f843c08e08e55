"""Nucleus (top-p) truncation and sampling over the K candidate temperatures."""

from __future__ import annotations

import numpy as np

_MASS_TOLERANCE = 1e-12


def nucleus_support(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Indices kept by nucleus truncation, most probable first.

    Sorts descending (ties: lower index, i.e. lower temperature, first) and keeps the shortest
    prefix whose mass reaches ``top_p`` (at least one index). ``top_p = 0`` keeps the argmax.

    Args:
        probs: float64 ``[K]`` probability vector.
        top_p: nucleus mass in [0, 1].

    Returns:
        int64 ``[k]``, 1 <= k <= K, indices into ``probs`` in the kept order.
    """
    order = np.argsort(-probs, kind="stable")
    cumulative = np.cumsum(probs[order])
    num_kept = int(np.searchsorted(cumulative, top_p - _MASS_TOLERANCE, side="left")) + 1
    return order[: min(num_kept, probs.shape[0])]


def nucleus_distribution(probs: np.ndarray, top_p: float) -> np.ndarray:
    """The renormalised truncated distribution that :func:`nucleus_sample` draws from.

    Returns:
        float64 ``[K]``: zero outside :func:`nucleus_support`, summing to 1.
    """
    kept = nucleus_support(probs, top_p)
    truncated = np.zeros_like(probs, dtype=np.float64)
    truncated[kept] = probs[kept]
    total = truncated.sum()
    if total <= 0.0:
        truncated[kept[0]] = 1.0
        return truncated
    return truncated / total


def nucleus_sample(probs: np.ndarray, top_p: float, rng: np.random.Generator) -> int:
    """Draw one index from the nucleus of ``probs`` with the given generator (one uniform draw).

    Returns:
        The drawn index into ``probs``.
    """
    kept = nucleus_support(probs, top_p)
    weights = probs[kept]
    total = float(weights.sum())
    if kept.shape[0] == 1 or total <= 0.0:
        return int(kept[0])
    u = rng.random() * total
    position = int(np.searchsorted(np.cumsum(weights), u, side="right"))
    return int(kept[min(position, kept.shape[0] - 1)])
