"""The checked inputs of one meta-policy update, shared by every policy that observes batches."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from tampo_core.loglik import TemperatureLoglik
from tampo_core.validation import check_advantages, check_loglik, check_num_tokens, expected


class ObservedBatch(NamedTuple):
    """One rank's batch after every check passed.

    Attributes:
        loglik: float64 ``[N, K]``; rows where ``valid`` is False are never read.
        num_tokens: int64 ``[N]`` valid tokens per row, or None when the caller gave none.
        valid: bool ``[N]``, rows with at least one token (all rows when ``num_tokens`` is None).
        advantages: float64 ``[N]``, finite and bounded.
    """

    loglik: np.ndarray
    num_tokens: np.ndarray | None
    valid: np.ndarray
    advantages: np.ndarray


def check_observed_batch(
    loglik: TemperatureLoglik | torch.Tensor | np.ndarray,
    advantages: object,
    num_tokens: object,
    num_temperatures: int,
) -> ObservedBatch:
    """Check ``observe_loglik``'s inputs: shapes, counts, advantages, and finite likelihoods in
    every row that has tokens. ``loglik`` may be a kernel's ``TemperatureLoglik``."""
    if isinstance(loglik, TemperatureLoglik):
        if num_tokens is not None:
            raise ValueError(
                expected("num_tokens", "None when loglik is a TemperatureLoglik", "both")
            )
        loglik, num_tokens = loglik
    array = check_loglik(loglik, num_temperatures)
    counts = check_num_tokens(num_tokens, array.shape[0])
    valid = counts > 0
    advantage_array = check_advantages(advantages, array.shape[0])
    bad = np.flatnonzero(valid & ~np.isfinite(array).all(axis=1))
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"loglik[{row}]: expected finite likelihoods for a trajectory with "
            f"{int(counts[row])} valid token(s) (NaN/inf logits, or a sampled token whose "
            f"logit is -inf, make them non-finite), got {array[row].tolist()} "
            f"({bad.size} such rows)"
        )
    return ObservedBatch(array, None if num_tokens is None else counts, valid, advantage_array)
