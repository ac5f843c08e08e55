"""Input checks shared by the meta-policy: each error names what was expected and what came."""

from __future__ import annotations

import numbers

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray | list | tuple


def to_float64(name: str, value: object) -> np.ndarray:
    """Copy a real-valued tensor, array or sequence to a float64 numpy array.

    Raises:
        TypeError: ``value`` is not real numeric (bool, complex, object, strings...).
    """
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must be a real-valued tensor, got dtype {value.dtype}")
        return value.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
    if isinstance(value, (np.ndarray, list, tuple)):
        array = np.asarray(value)
        if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"{name} must be real numbers, got dtype {array.dtype}")
        if np.issubdtype(array.dtype, np.complexfloating):
            raise TypeError(f"{name} must be real numbers, got dtype {array.dtype}")
        return array.astype(np.float64, copy=True)
    raise TypeError(
        f"{name} must be a torch.Tensor, numpy array or sequence, got {type(value).__name__}"
    )


def check_advantages(advantages: object, num_rows: int) -> np.ndarray:
    """Advantages as float64 ``[N]``: one finite value per trajectory."""
    array = to_float64("advantages", advantages)
    if array.ndim != 1 or array.shape[0] != num_rows:
        raise ValueError(
            f"advantages must have shape [N] = [{num_rows}] (one per trajectory), "
            f"got shape {list(array.shape)}"
        )
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(
            f"advantages must be finite, got {array[bad[0]]} at index {int(bad[0])} "
            f"({bad.size} non-finite values)"
        )
    return array


def check_loglik(loglik: object, num_temperatures: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihoods as float64 ``[N, K]`` plus the rows to count.

    An all-NaN row marks a trajectory without a valid token (what the kernel returns for it);
    any other NaN or any infinity is an error.

    Returns:
        ``(loglik, valid)`` with ``valid`` bool ``[N]``.
    """
    array = to_float64("loglik", loglik)
    if array.ndim != 2 or array.shape[1] != num_temperatures:
        raise ValueError(
            f"loglik must have shape [N, K] with K = {num_temperatures} candidate temperatures, "
            f"got shape {list(array.shape)}"
        )
    if array.shape[0] == 0:
        raise ValueError("loglik is an empty batch (N = 0); expected at least one trajectory")
    empty = np.isnan(array).all(axis=1)
    finite = np.isfinite(array)
    bad_rows = np.flatnonzero(~empty & ~finite.all(axis=1))
    if bad_rows.size:
        row = int(bad_rows[0])
        raise ValueError(
            f"loglik must be finite (an all-NaN row marks an empty trajectory), got "
            f"{array[row].tolist()} in row {row} ({bad_rows.size} such rows)"
        )
    return array, ~empty


def check_real_scalar(name: str, value: object, *, positive: bool) -> float:
    """A finite Python float (strictly positive if asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    result = float(value)
    if not np.isfinite(result) or (positive and result <= 0.0):
        rule = "finite and > 0" if positive else "finite"
        raise ValueError(f"{name} must be {rule}, got {result}")
    return result
