"""One GRPO update that also feeds the temperature policy from the same forward pass.

The loss already computes the completion logits; ``TempMetaPolicy.observe`` only needs those
(detached), so TAMPO costs no extra forward pass: :func:`grpo_update` calls the model exactly
once whether or not a temperature policy is attached. Per-prompt temperatures: pass a ``[B]``
temperature tensor and a ``ContextualTempMetaPolicy`` with one bucket label per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tampo_core.adapters.torch_loop.loss import PolicyLoss, policy_loss
from tampo_core.adapters.torch_loop.model_call import (
    ModelSignature,
    call_model,
    positions_from_mask,
)
from tampo_core.adapters.torch_loop.sampling import Rollout
from tampo_core.adapters.torch_loop.temperature import Temperature
from tampo_core.contextual import ContextualTempMetaPolicy
from tampo_core.labels import Label
from tampo_core.protocol import TemperaturePolicy
from tampo_core.validation import expected


def completion_logits(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    completion_ids: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Raw logits [B, L, V] (with grad) where position t scores ``completion_ids[:, t]``.

    One forward over ``[prompt, completion]``; prompts int64 [B, P], completions int64 [B, L],
    ``attention_mask`` [B, P] only for left-padded prompts.
    """
    if prompt_ids.shape[0] != completion_ids.shape[0]:
        raise ValueError(
            f"batch mismatch: prompts {tuple(prompt_ids.shape)}, completions "
            f"{tuple(completion_ids.shape)}"
        )
    p, n = prompt_ids.shape[1], completion_ids.shape[1]
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    mask = pos = None
    if attention_mask is not None:
        mask = torch.cat([attention_mask.long(), torch.ones_like(completion_ids)], dim=1)
        pos = positions_from_mask(mask)
    logits, _ = call_model(
        model, ModelSignature.of(model), ids, attention_mask=mask, position_ids=pos
    )
    return logits[:, p - 1 : p - 1 + n]


def observe_loss_logits(
    temperature_policy: TemperaturePolicy | ContextualTempMetaPolicy,
    logits: torch.Tensor,
    advantages: torch.Tensor,
    rollout: Rollout,
    *,
    buckets: Sequence[Label] | None = None,
    rewards: torch.Tensor | None = None,
) -> Any:
    """Feed the loss pass's raw logits [B, L, V] to ``temperature_policy.observe`` (detached).

    ``buckets`` ([B] labels, for a ``ContextualTempMetaPolicy``) and ``rewards`` ([B], for
    ``meta_advantage="batch_baseline"``) are passed only when given, so policies that take
    neither keep working.
    """
    extra: dict[str, Any] = {}
    if buckets is not None:
        extra["buckets"] = buckets
    if rewards is not None:
        extra["rewards"] = rewards.detach()
    return temperature_policy.observe(
        logits.detach(),
        advantages.detach(),
        tokens=rollout.completion_ids,
        mask=rollout.completion_mask,
        source_temperature=1.0,
        **extra,
    )


@dataclass(frozen=True)
class UpdateStats:
    """Scalars of one update; ``observed`` is what ``temperature_policy.observe`` returned."""

    loss: float
    clip_fraction: float
    kl: float
    grad_norm: float
    observed: Any


def grpo_update(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    prompt_ids: torch.Tensor,
    rollout: Rollout,
    advantages: torch.Tensor,
    temperature: Temperature,
    *,
    temperature_policy: TemperaturePolicy | ContextualTempMetaPolicy | None = None,
    buckets: Sequence[Label] | None = None,
    rewards: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    max_grad_norm: float | None = 1.0,
    **loss_kwargs: Any,
) -> UpdateStats:
    """Forward once, clipped loss at ``temperature``, step ``optimizer``, then observe.

    A non-finite loss raises before any gradient or optimizer state changes.

    ``prompt_ids`` [B, P] is already repeated per completion (row i made ``rollout`` row i);
    ``advantages`` [B]; ``temperature`` a float or the ``[B]`` per-row sampling temperatures;
    ``buckets`` and ``rewards`` go to ``observe`` (see :func:`observe_loss_logits`).
    ``loss_kwargs`` go to :func:`policy_loss` (clip range, aggregation,
    old/ref log-probs, KL coefficient).
    """
    batch = rollout.completion_ids.shape[0]
    if buckets is not None and len(buckets) != batch:
        rule = f"[B] = [{batch}] labels (one per row), checked before the model is touched"
        raise ValueError(expected("buckets", rule, f"{len(buckets)} labels"))
    logits = completion_logits(
        model, prompt_ids, rollout.completion_ids, attention_mask=attention_mask
    )
    out: PolicyLoss = policy_loss(
        logits,
        rollout.completion_ids,
        rollout.completion_mask,
        advantages,
        temperature,
        **loss_kwargs,
    )
    loss_value = float(out.loss.detach())
    if not math.isfinite(loss_value):
        raise ValueError(f"policy loss is {loss_value}; model and optimizer left untouched")
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    norm = (
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        if max_grad_norm
        else torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    )
    optimizer.step()
    observed = None
    if temperature_policy is not None:
        observed = observe_loss_logits(
            temperature_policy, logits, advantages, rollout, buckets=buckets, rewards=rewards
        )
    return UpdateStats(loss_value, out.clip_fraction, out.kl, float(norm), observed)
