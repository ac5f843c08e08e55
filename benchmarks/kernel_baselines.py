"""Single-temperature log-likelihood routines that the kernel benchmarks compare against.

Each takes logits [B, L, V] (bf16/fp16/fp32), tokens [B, L] int64, a bool mask [B, L] and K
temperatures, runs its single-temperature routine once per temperature, and returns the masked
mean log-likelihood per sequence, float32 [B, K] - the same contract as
``tampo_core.multi_temperature_loglik``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

LoglikFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Sequence[float]], torch.Tensor]


def _masked_mean(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``logp`` [B, L] over ``mask`` [B, L] -> float32 [B]."""
    logp = torch.where(mask, logp.float(), 0.0)
    return logp.sum(1) / mask.sum(1)


@torch.no_grad()
def naive_fp32_loop(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, temps: Sequence[float]
) -> torch.Tensor:
    """``log_softmax(z.float() / T).gather`` per temperature (OpenRLHF-style full upcast)."""
    index = tokens.unsqueeze(-1)
    columns = []
    for t in temps:
        logp = torch.log_softmax(logits.float() / t, dim=-1).gather(-1, index).squeeze(-1)
        columns.append(_masked_mean(logp, mask))
    return torch.stack(columns, dim=1)


@torch.no_grad()
def in_dtype_loop(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, temps: Sequence[float]
) -> torch.Tensor:
    """TRL/verl style for bf16: divide by T and ``log_softmax`` in the logits dtype."""
    index = tokens.unsqueeze(-1)
    columns = []
    for t in temps:
        logp = torch.log_softmax(logits / t, dim=-1).gather(-1, index).squeeze(-1)
        columns.append(_masked_mean(logp, mask))
    return torch.stack(columns, dim=1)


@torch.no_grad()
def gather_logsumexp_loop(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, temps: Sequence[float]
) -> torch.Tensor:
    """Per temperature: fp32 ``z / T``, target gather and ``torch.logsumexp`` over all rows."""
    index = tokens.unsqueeze(-1)
    columns = []
    for t in temps:
        scaled = logits.float() / t
        logp = scaled.gather(-1, index).squeeze(-1) - torch.logsumexp(scaled, dim=-1)
        del scaled
        columns.append(_masked_mean(logp, mask))
    return torch.stack(columns, dim=1)


@torch.no_grad()
def selective_log_softmax_loop(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, temps: Sequence[float]
) -> torch.Tensor:
    """TRL ``selective_log_softmax`` (fp32 branch) run K times, one sequence chunk at a time.

    Per temperature and sequence: upcast the sequence's [L, V] logits, divide by T in place,
    gather the targets, subtract the per-position ``logsumexp``.
    """
    columns = []
    for t in temps:
        rows = []
        for seq_logits, seq_tokens in zip(logits, tokens, strict=True):
            scaled = seq_logits.to(torch.float32, copy=True).div_(t)
            selected = scaled.gather(-1, seq_tokens.unsqueeze(-1)).squeeze(-1)
            rows.append(selected - torch.logsumexp(scaled, dim=-1))
        columns.append(_masked_mean(torch.stack(rows), mask))
    return torch.stack(columns, dim=1)


def linear_cross_entropy_available() -> bool:
    """Whether this torch has the chunked ``F.linear_cross_entropy`` (torch >= 2.13)."""
    return hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions")


@torch.no_grad()
def linear_cross_entropy_loop(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    temps: Sequence[float],
) -> torch.Tensor:
    """K runs of torch's chunked ``F.linear_cross_entropy`` on ``hidden / T`` (= logits / T).

    ``hidden / T`` is computed in the hidden dtype, as a caller without a fused kernel would.
    """
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_tokens = tokens.reshape(-1)
    options = torch.nn.LinearCrossEntropyOptions()
    columns = []
    for t in temps:
        loss = F.linear_cross_entropy(
            flat_hidden / t, weight, flat_tokens, reduction="none", options=options
        )
        columns.append(_masked_mean(-loss.view_as(tokens), mask))
    return torch.stack(columns, dim=1)


LOGITS_BASELINES: dict[str, LoglikFn] = {
    "naive_fp32_loop": naive_fp32_loop,
    "in_dtype_loop": in_dtype_loop,
    "gather_logsumexp_loop": gather_logsumexp_loop,
    "selective_log_softmax_loop": selective_log_softmax_loop,
}
