"""Clipped policy-gradient loss with log-probs taken at the sampling temperature (one for the
batch, or one per row)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from tampo_core.adapters.torch_loop.temperature import (
    Temperature,
    check_batch_temperature,
    divide_by_temperature,
)

Aggregation = Literal["token_mean", "sequence_mean", "constant_norm"]
AGGREGATIONS: tuple[Aggregation, ...] = ("token_mean", "sequence_mean", "constant_norm")


def token_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: Temperature
) -> torch.Tensor:
    """float32 [B, L]: ``log softmax(logits / T)[tokens]``; logits [B, L, V] score tokens [B, L].

    ``temperature``: one float, or a ``[B]`` tensor (row i at ``T_i``: per-prompt temperatures).
    Dividing by the sampling temperature makes the ratio and gradient those of the policy that
    generated the rollout (TRL/OpenRLHF convention).
    """
    if logits.dim() != 3 or tokens.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be [B, L, V] and tokens [B, L]; got "
            f"{tuple(logits.shape)} and {tuple(tokens.shape)}"
        )
    t = check_batch_temperature("temperature", temperature, logits.shape[0], greedy_ok=False)
    logp = torch.log_softmax(divide_by_temperature(logits, t), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class PolicyLoss:
    """``loss``: scalar with grad; ``logprobs``: float32 [B, L] detached; ``clip_fraction``
    and ``kl``: float, over valid tokens."""

    loss: torch.Tensor
    logprobs: torch.Tensor
    clip_fraction: float
    kl: float


def policy_loss(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    temperature: Temperature,
    *,
    old_logprobs: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    aggregation: Aggregation = "token_mean",
    max_len: int | None = None,
) -> PolicyLoss:
    """GRPO/PPO clipped surrogate ``-min(rho A, clip(rho, 1 - lo, 1 + hi) A)`` per token.

    logits [B, L, V] (grad), tokens int64 [B, L], mask [B, L] bool/int, advantages [B],
    ``temperature`` a float or a ``[B]`` tensor of per-row sampling temperatures.
    ``old_logprobs`` None means on-policy (one update per batch): rho = 1 with the right
    gradient. ``ref_logprobs`` with ``kl_coef`` > 0 adds the k3 KL estimator. Aggregation:
    ``token_mean`` (DAPO: mean over all valid tokens), ``sequence_mean`` (original GRPO: per
    sequence mean, then batch mean), ``constant_norm`` (Dr. GRPO: token sum / (B * max_len),
    ``max_len`` defaulting to L).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}; got {aggregation!r}")
    if mask.shape != tokens.shape or advantages.shape != tokens.shape[:1]:
        raise ValueError(
            f"mask must be [B, L] and advantages [B]; got {tuple(mask.shape)}, "
            f"{tuple(advantages.shape)} for tokens {tuple(tokens.shape)}"
        )
    logp = token_logprobs(logits, tokens, temperature)
    old = logp.detach() if old_logprobs is None else old_logprobs.float()
    m = mask.float()
    adv = advantages.float().detach()[:, None]
    ratio = torch.exp(logp - old)
    hi = clip_low if clip_high is None else clip_high
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + hi)
    per_token = -torch.minimum(ratio * adv, clipped * adv)
    kl = torch.zeros_like(per_token)
    if ref_logprobs is not None and kl_coef > 0.0:
        d = ref_logprobs.float() - logp
        kl = torch.exp(d) - d - 1.0
        per_token = per_token + kl_coef * kl
    n_valid = m.sum().clamp_min(1.0)
    if aggregation == "token_mean":
        loss = (per_token * m).sum() / n_valid
    elif aggregation == "sequence_mean":
        loss = ((per_token * m).sum(-1) / m.sum(-1).clamp_min(1.0)).mean()
    else:
        loss = (per_token * m).sum() / (tokens.shape[0] * (max_len or tokens.shape[1]))
    clip_frac = (((ratio - clipped).abs() > 0).float() * m).sum() / n_valid
    return PolicyLoss(loss, logp.detach(), float(clip_frac), float((kl * m).sum() / n_valid))
