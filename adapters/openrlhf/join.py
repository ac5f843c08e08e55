"""Trainer-side join of OpenRLHF experiences with the policy actors' ``[B, K]`` likelihoods."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from tampo_core.adapters.openrlhf import _seam
from tampo_core.adapters.openrlhf.action_loglik import sequence_key
from tampo_core.loglik import TemperatureLoglik


def join_loglik(
    experiences: list[Any],
    loglik_by_key: Mapping[str, TemperatureLoglik],
    num_temperatures: int,
) -> TemperatureLoglik:
    """Stack each experience's likelihoods and action-token counts, in experience order.

    Args:
        experiences: OpenRLHF ``Experience`` micro-batches.
        loglik_by_key: ``sequence_key(sequences)`` -> the policy hook's ``TemperatureLoglik``
            (float32 ``[B, K]``, int64 ``[B]``).
        num_temperatures: K.

    Returns:
        ``TemperatureLoglik`` with ``loglik`` float32 ``[N, K]`` and ``num_tokens`` int64
        ``[N]``, N = total samples (rows with 0 tokens are the meta-policy's to skip).

    Raises:
        RuntimeError: a micro-batch has no likelihoods, or they have the wrong shape.
    """
    logliks, counts = [], []
    for index, experience in enumerate(experiences):
        sequences, _, _ = _seam.experience_tensors(experience)
        found = loglik_by_key.get(sequence_key(sequences))
        if found is None:
            raise RuntimeError(
                f"no per-temperature likelihoods for experience micro-batch {index} "
                f"(sequences {tuple(sequences.shape)}): the policy hook did not see its forward"
            )
        rows = sequences.shape[0]
        if tuple(found.loglik.shape) != (rows, num_temperatures) or tuple(
            found.num_tokens.shape
        ) != (rows,):
            raise RuntimeError(
                f"likelihoods of micro-batch {index}: expected [{rows}, {num_temperatures}] "
                f"with [{rows}] counts, got {list(found.loglik.shape)} with "
                f"{list(found.num_tokens.shape)}"
            )
        logliks.append(found.loglik.float())
        counts.append(found.num_tokens.long())
    return TemperatureLoglik(torch.cat(logliks, dim=0), torch.cat(counts, dim=0))
