"""Driver-side join of the old-log-prob likelihoods with verl's advantages."""

from __future__ import annotations

import torch

from tampo_core.adapters.verl import _seam


def trajectory_advantages(advantages: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Per-trajectory advantage: the advantage at each sample's first response token.

    verl's outcome estimators (GRPO, Dr. GRPO, RLOO, REINFORCE++ with and without baseline) give
    every response token of a trajectory the same value (the score, normalised or baselined,
    times ``response_mask``; REINFORCE++'s gamma = 1 return of an outcome reward is constant over
    the response and whitening keeps it so), so the first token carries it.

    Args:
        advantages: float ``[B, R]``.
        response_mask: ``[B, R]`` 0/1 or bool.

    Returns:
        float32 ``[B]``; 0.0 for a sample without response tokens (its likelihood row has count
        0 and the meta-policy skips it).
    """
    if advantages.shape != response_mask.shape or advantages.dim() != 2:
        raise ValueError(
            f"advantages and response_mask: expected the same [B, R] shape, got "
            f"{tuple(advantages.shape)} and {tuple(response_mask.shape)}"
        )
    mask = response_mask.bool()
    first = mask.int().argmax(dim=1, keepdim=True)
    values = advantages.float().gather(1, first).squeeze(1)
    return torch.where(mask.any(dim=1), values, torch.zeros_like(values))


def align_loglik(
    loglik: torch.Tensor, num_tokens: torch.Tensor, keys: list[str], batch_keys: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorder ``[N, K]`` likelihoods and ``[N]`` counts captured for samples ``keys`` into the
    order of ``batch_keys`` (``_seam.row_keys`` of the training batch).

    Raises:
        RuntimeError: a sample of the batch has no likelihoods, or the sizes differ.
    """
    if len(keys) != len(batch_keys) or loglik.shape[0] != len(keys):
        raise RuntimeError(
            f"likelihoods for {loglik.shape[0]} samples ({len(keys)} keys), training batch of "
            f"{len(batch_keys)}: the old-log-prob pass did not see this batch"
        )
    if keys == batch_keys:
        return loglik, num_tokens
    where: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        where.setdefault(key, []).append(index)
    try:
        order = [where[key].pop() for key in batch_keys]
    except (KeyError, IndexError) as error:
        raise RuntimeError(
            "a sample of the training batch has no likelihoods from the old-log-prob pass"
        ) from error
    index = torch.tensor(order)
    return loglik[index], num_tokens[index]


def batch_observation(
    batch: object, captured: tuple[torch.Tensor, torch.Tensor, list[str]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loglik [B, K], advantages [B], num_tokens [B])`` of a training batch with advantages."""
    loglik, num_tokens, keys = captured
    input_ids, response_mask, advantages = _seam.batch_tensors(batch)
    loglik, num_tokens = align_loglik(loglik, num_tokens, keys, _seam.row_keys(input_ids))
    return loglik, trajectory_advantages(advantages, response_mask), num_tokens
