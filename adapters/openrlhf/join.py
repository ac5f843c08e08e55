"""Trainer-side join of OpenRLHF experiences with the policy actors' ``[B, K]`` likelihoods."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from tampo_core.adapters.openrlhf import _seam
from tampo_core.adapters.openrlhf.action_loglik import sequence_key


def trajectory_advantages(advantages: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """Per-trajectory advantage: the advantage at each sample's first action token.

    OpenRLHF's REINFORCE-family estimators (``group_norm``, ``dr_grpo``, ``rloo``,
    ``reinforce_baseline``, ...) store the return-to-go with gamma = 1 as the token advantage, so
    at the first action token it is the whole trajectory's (shaped) return; with outcome rewards
    and no KL in the reward every action token carries that same value. For ``gae`` it is the
    GAE estimate at the start of the response.

    Args:
        advantages: float ``[B, A]``.
        action_mask: ``[B, A]`` 0/1 or bool.

    Returns:
        float32 ``[B]``; 0.0 for a sample without action tokens (its likelihood row is NaN and
        the meta-policy skips it).
    """
    if advantages.shape != action_mask.shape or advantages.dim() != 2:
        raise ValueError(
            f"advantages and action_mask: expected the same [B, A] shape, got "
            f"{tuple(advantages.shape)} and {tuple(action_mask.shape)}"
        )
    mask = action_mask.bool()
    first = mask.int().argmax(dim=1, keepdim=True)
    values = advantages.float().gather(1, first).squeeze(1)
    return torch.where(mask.any(dim=1), values, torch.zeros_like(values))


def join_loglik(
    experiences: list[Any], loglik_by_key: Mapping[str, torch.Tensor], num_temperatures: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack each experience's ``[B, K]`` likelihoods with its ``[B]`` trajectory advantages.

    Args:
        experiences: OpenRLHF ``Experience`` micro-batches with advantages computed.
        loglik_by_key: ``sequence_key(sequences)`` -> float32 ``[B, K]`` from the policy hook.
        num_temperatures: K.

    Returns:
        ``(loglik [N, K] float32, advantages [N] float32)``, N = total samples.

    Raises:
        RuntimeError: a micro-batch has no likelihoods, or they have the wrong shape.
    """
    logliks, advantages = [], []
    for index, experience in enumerate(experiences):
        sequences, action_mask, experience_advantages = _seam.experience_tensors(experience)
        loglik = loglik_by_key.get(sequence_key(sequences))
        if loglik is None:
            raise RuntimeError(
                f"no per-temperature likelihoods for experience micro-batch {index} "
                f"(sequences {tuple(sequences.shape)}): the policy hook did not see its forward"
            )
        expected = (sequences.shape[0], num_temperatures)
        if tuple(loglik.shape) != expected:
            raise RuntimeError(
                f"likelihoods of micro-batch {index}: expected {expected}, got "
                f"{tuple(loglik.shape)}"
            )
        logliks.append(loglik.float())
        advantages.append(trajectory_advantages(experience_advantages, action_mask))
    return torch.cat(logliks, dim=0), torch.cat(advantages, dim=0)
