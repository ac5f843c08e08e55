"""What the meta-policy sees: the per-trajectory advantage of an OpenRLHF batch.

TAMPO weights each trajectory by its group advantage of the outcome reward. OpenRLHF's token
advantages are that only in some settings: by default the KL penalty is folded into the
per-token reward (``--algo.kl.init_coef 0.01``, ``--algo.kl.use_loss`` off), so the first-token
return is ``A_i - beta * sum_t KL_t``; ``gae`` gives a whitened GAE value, ``reinforce`` a
(discounted, whitened) return and ``reinforce_baseline`` a token-whitened one. Hence:

- group estimators (``group_norm``, ``dr_grpo``, ``rloo``, ``reinforce_baseline``,
  ``flash_reinforce``): the meta-policy gets the estimator's baseline-subtracted outcome reward,
  recomputed from ``Experience.rewards`` with OpenRLHF's formulas (after its length penalties,
  clipped to ``--reward.clip_range`` as it does), without KL, discount or whitening. Where
  OpenRLHF adds none of those, this equals its first-token advantage exactly (tested);
- ``gae`` and ``reinforce`` compute no group advantage: the meta-policy gets OpenRLHF's advantage
  at each sample's first action token, and the trainer warns at start which signal that is.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import torch

from tampo_core.adapters.openrlhf import _seam
from tampo_core.validation import expected


class AdvantageSignal(NamedTuple):
    """Which per-trajectory advantage the meta-policy weights, and why (for the start log)."""

    outcome_group: bool
    description: str


def advantage_signal(settings: _seam.AdvantageSettings) -> AdvantageSignal:
    """Choose the meta-policy's signal for OpenRLHF's advantage settings."""
    name = settings.estimator
    if name in _seam.GROUP_ESTIMATORS:
        unseen = [
            what
            for what, present in (
                ("the KL penalty folded into the reward", settings.kl_in_reward),
                ("token whitening", settings.whitened),
            )
            if present
        ]
        extra = (
            f"; the policy gradient's advantages also carry {' and '.join(unseen)}"
            if unseen
            else ""
        )
        return AdvantageSignal(
            True,
            f"the {name} group advantage of the outcome reward (what TAMPO defines){extra}, "
            "which the meta-policy does not see",
        )
    parts = []
    if name == "gae":
        parts.append("a whitened GAE estimate at the first action token")
    else:
        discount = f" with gamma = {settings.gamma:g}" if settings.gamma != 1.0 else ""
        whitened = "whitened " if settings.whitened else ""
        parts.append(f"the {whitened}return{discount} at the first action token")
    if settings.kl_in_reward:
        parts.append("including the KL penalty folded into the reward")
    return AdvantageSignal(
        False,
        f"OpenRLHF's {name} advantage: {', '.join(parts)}. The estimator computes no group "
        "advantage of the outcome reward (what TAMPO defines); use group_norm, dr_grpo, rloo, "
        "reinforce_baseline or flash_reinforce for that",
    )


def first_token_advantages(advantages: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """OpenRLHF's token advantage at each sample's first action token.

    Args:
        advantages: float ``[B, A]``.
        action_mask: ``[B, A]`` 0/1 or bool.

    Returns:
        float32 ``[B]``; 0.0 for a sample without action tokens (its count is 0 and the
        meta-policy skips it).
    """
    if advantages.shape != action_mask.shape or advantages.dim() != 2:
        rule = "the same [B, A] shape for advantages and action_mask"
        got = f"{list(advantages.shape)} and {list(action_mask.shape)}"
        raise ValueError(expected("advantages", rule, got))
    mask = action_mask.bool()
    first = mask.int().argmax(dim=1, keepdim=True)
    values = advantages.float().gather(1, first).squeeze(1)
    return torch.where(mask.any(dim=1), values, torch.zeros_like(values))


def outcome_group_advantages(
    experiences: list[Any], settings: _seam.AdvantageSettings
) -> torch.Tensor:
    """The group estimator's baseline-subtracted, clipped outcome reward per sample, in
    experience order: float32 ``[N]`` (OpenRLHF's shaping, without KL or whitening)."""
    outcomes = [_seam.experience_outcomes(experience) for experience in experiences]
    indices = torch.tensor(list(itertools.chain.from_iterable(index for _, index in outcomes)))
    raw = torch.cat([rewards for rewards, _ in outcomes], dim=0)
    raw = raw.to(torch.promote_types(raw.dtype, torch.float32))
    rewards = torch.empty_like(raw)
    rewards[indices] = raw
    group = settings.n_samples_per_prompt
    if rewards.numel() % group:
        rule = f"a multiple of --rollout.n_samples_per_prompt = {group} samples"
        raise ValueError(expected("rollout batch", rule, rewards.numel()))
    rewards = rewards.reshape(-1, group)
    name = settings.estimator
    if name == "rloo":
        rewards = rewards - (rewards.sum(-1, keepdim=True) - rewards) / (group - 1)
    elif name in ("reinforce_baseline", "dr_grpo"):
        rewards = rewards - rewards.mean(-1, keepdim=True)
    elif name == "group_norm":
        rewards = (rewards - rewards.mean(-1, keepdim=True)) / (
            rewards.std(-1, keepdim=True) + 1e-9
        )
    elif name == "flash_reinforce":
        rewards = rewards - rewards.mean()
    else:
        raise ValueError(expected("estimator", f"one of {_seam.GROUP_ESTIMATORS}", repr(name)))
    if settings.clip_range is not None:
        rewards = rewards.clamp(min=settings.clip_range[0], max=settings.clip_range[1])
    return rewards.reshape(-1)[indices].float()


def outcome_rewards(experiences: list[Any]) -> torch.Tensor:
    """The outcome reward of each sample (after OpenRLHF's length penalties), float32 ``[N]`` in
    experience order (what ``meta_advantage="batch_baseline"`` standardises)."""
    return torch.cat([_seam.experience_outcomes(e)[0].float() for e in experiences], dim=0)


def meta_advantages(
    experiences: list[Any], signal: AdvantageSignal, settings: _seam.AdvantageSettings
) -> torch.Tensor:
    """The meta-policy's per-trajectory advantages, float32 ``[N]`` in experience order."""
    if signal.outcome_group:
        return outcome_group_advantages(experiences, settings)
    parts = []
    for experience in experiences:
        _, action_mask, advantages = _seam.experience_tensors(experience)
        parts.append(first_token_advantages(advantages, action_mask))
    return torch.cat(parts, dim=0)
