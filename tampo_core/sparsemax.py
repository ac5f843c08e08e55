"""Sparsemax (Martins & Astudillo, 2016): Euclidean projection onto the probability simplex."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def sparsemax(x: ArrayT) -> ArrayT:
    """Sparsemax along the last axis.

    Args:
        x: numpy array or torch tensor ``[..., K]`` of finite floats, K >= 1.

    Returns:
        Same type, shape and floating dtype as ``x``: non-negative rows summing to 1, exactly
        zero outside the support. Shift invariant: ``sparsemax(x + c) == sparsemax(x)``.
    """
    if isinstance(x, torch.Tensor):
        return _sparsemax_torch(x)
    if isinstance(x, np.ndarray):
        return _sparsemax_numpy(x)
    raise TypeError(f"sparsemax expects a numpy array or torch tensor, got {type(x).__name__}")


def _sparsemax_numpy(x: np.ndarray) -> np.ndarray:
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"sparsemax expects a floating array, got dtype {x.dtype}")
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"sparsemax expects shape [..., K] with K >= 1, got {x.shape}")
    z = x - x.max(axis=-1, keepdims=True)
    z_sorted = -np.sort(-z, axis=-1)
    k = np.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cumsum = np.cumsum(z_sorted, axis=-1)
    in_support = 1.0 + k * z_sorted > cumsum
    support = in_support.sum(axis=-1, keepdims=True)
    tau = (np.take_along_axis(cumsum, support - 1, axis=-1) - 1.0) / support
    return np.maximum(z - tau, 0.0).astype(x.dtype, copy=False)


def _sparsemax_torch(x: torch.Tensor) -> torch.Tensor:
    if not x.is_floating_point():
        raise TypeError(f"sparsemax expects a floating tensor, got dtype {x.dtype}")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"sparsemax expects shape [..., K] with K >= 1, got {tuple(x.shape)}")
    z = x - x.amax(dim=-1, keepdim=True)
    z_sorted = torch.sort(z, dim=-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    cumsum = z_sorted.cumsum(dim=-1)
    support = (1.0 + k * z_sorted > cumsum).sum(dim=-1, keepdim=True)
    tau = (cumsum.gather(-1, support - 1) - 1.0) / support.to(z.dtype)
    return torch.clamp(z - tau, min=0.0)
