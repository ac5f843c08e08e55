"""Sparsemax (Martins & Astudillo, 2016): Euclidean projection onto the probability simplex."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from tampo_core.validation import check_usable_tensor, expected

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

FINITE_RULE = "finite scores (-inf allowed, not in a whole row; no NaN or +inf)"


def sparsemax(x: ArrayT) -> ArrayT:
    """Sparsemax along the last axis.

    Args:
        x: numpy array or torch tensor ``[..., K]`` of floats, K >= 1: finite, or -inf for a
            candidate that must get probability 0 (every row needs one finite score).

    Returns:
        Same type, shape and floating dtype as ``x``: non-negative rows summing to 1, exactly
        zero outside the support. Shift invariant: ``sparsemax(x + c) == sparsemax(x)``.

    Raises:
        TypeError: not a floating numpy array / torch tensor.
        ValueError: K = 0, a tensor on the ``meta`` device, NaN or +inf anywhere, or a row of
            only -inf (the same check for numpy and torch; ``x`` is never modified).
    """
    if isinstance(x, torch.Tensor):
        return _sparsemax_torch(x)
    if isinstance(x, np.ndarray):
        return _sparsemax_numpy(x)
    raise TypeError(expected("x", "a numpy array or torch tensor [..., K]", type(x).__name__))


def _bad_scores(index: list[int], value: float, count: int) -> ValueError:
    where = index[0] if len(index) == 1 else index
    return ValueError(expected("x", FINITE_RULE, f"{value} at index {where} ({count} such)"))


def _sparsemax_numpy(x: np.ndarray) -> np.ndarray:
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(expected("x", "a floating array", f"dtype {x.dtype}"))
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(expected("x", "shape [..., K] with K >= 1", list(x.shape)))
    row_max = x.max(axis=-1, keepdims=True)
    bad = np.isnan(x) | (x == np.inf) | np.broadcast_to(row_max == -np.inf, x.shape)
    if bad.any():
        index = [int(i) for i in np.argwhere(bad)[0]]
        raise _bad_scores(index, float(x[tuple(index)]), int(bad.sum()))
    z = x - row_max
    z_sorted = -np.sort(-z, axis=-1)
    k = np.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cumsum = np.cumsum(z_sorted, axis=-1)
    in_support = 1.0 + k * z_sorted > cumsum
    support = in_support.sum(axis=-1, keepdims=True)
    tau = (np.take_along_axis(cumsum, support - 1, axis=-1) - 1.0) / support
    return np.maximum(z - tau, 0.0).astype(x.dtype, copy=False)


def _sparsemax_torch(x: torch.Tensor) -> torch.Tensor:
    check_usable_tensor("x", x, "[..., K]")
    if not x.is_floating_point():
        raise TypeError(expected("x", "a floating tensor", f"dtype {x.dtype}"))
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(expected("x", "shape [..., K] with K >= 1", list(x.shape)))
    row_max = x.amax(dim=-1, keepdim=True)
    bad = x.isnan() | (x == torch.inf) | (row_max == -torch.inf).expand_as(x)
    if bool(bad.any()):
        index = [int(i) for i in bad.nonzero()[0]]
        raise _bad_scores(index, float(x[tuple(index)]), int(bad.sum()))
    z = x - row_max
    z_sorted = torch.sort(z, dim=-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    cumsum = z_sorted.cumsum(dim=-1)
    support = (1.0 + k * z_sorted > cumsum).sum(dim=-1, keepdim=True)
    tau = (cumsum.gather(-1, support - 1) - 1.0) / support.to(z.dtype)
    return torch.clamp(z - tau, min=0.0)
