"""What the likelihood kernels return, and the mean over each sequence's valid tokens."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from tampo_core.loglik.tokens import PackedTokens


class TemperatureLoglik(NamedTuple):
    """Per-sequence mean log-likelihood at each of K temperatures, with its token counts.

    Attributes:
        loglik: float32 ``[B, K]``, detached. Rows with ``num_tokens == 0`` hold NaN (0 / 0);
            read ``num_tokens``, never the NaN, to tell an empty row.
        num_tokens: int64 ``[B]``, valid tokens per sequence (same device as ``loglik``).
    """

    loglik: torch.Tensor
    num_tokens: torch.Tensor


def finish_mean_loglik(
    target: torch.Tensor,
    shift: torch.Tensor,
    log_sums: torch.Tensor,
    betas: Sequence[float],
    packed: PackedTokens,
) -> TemperatureLoglik:
    """Per-token ``beta_k (g - m) - log S_k`` averaged over each sequence's valid tokens.

    target ``g``: fp32 [N] target logits; shift ``m``: fp32 [N] row shifts (``finite_shift``);
    log_sums: fp32 [K, N] ``log S_k`` relative to the shift. This O(N K) step runs in float64
    so that ``beta_k (g - m)`` (up to hundreds of nats at low T) and the sequence sums add no
    fp32 rounding. A -inf target gives -inf; NaN or +inf logits give NaN for their sequence.
    """
    device = log_sums.device
    beta = torch.tensor(betas, dtype=torch.float64, device=device).unsqueeze(1)
    gap = (target.double() - shift.double()).unsqueeze(0)
    logp = torch.where(gap == -math.inf, -math.inf, beta * gap - log_sums.double())
    # log p <= 0 exactly; power sums can round S_k (>= 1) a few ulps below 1.
    logp.clamp_(max=0.0)
    totals = torch.zeros(packed.num_sequences, len(betas), dtype=torch.float64, device=device)
    totals.index_add_(0, packed.batch, logp.T)
    mean = (totals / packed.counts.double().unsqueeze(1)).float()
    return TemperatureLoglik(loglik=mean, num_tokens=packed.counts)
