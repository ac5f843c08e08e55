"""Float64 reference for the multi-temperature log-likelihood kernels, straight from the equation.

Slow and memory-hungry ([B, L, V] float64 temporaries per temperature): for tests only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def reference_multi_temperature_loglik(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    temperatures: Sequence[float],
    mask: torch.Tensor | None = None,
    source_temperature: float = 1.0,
) -> torch.Tensor:
    """``out[b, k] = mean_{t: mask[b, t]} log_softmax(z[b, t] / T_k)[tokens[b, t]]``, float64.

    logits: [B, L, V] any float dtype (upcast to float64), ``z = logits * source_temperature``;
    tokens: [B, L] integer; mask: [B, L] or None (all valid). Returns float64 [B, K]; sequences
    without valid tokens give NaN (0 / 0).
    """
    z = logits.double() * source_temperature
    valid = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask.bool()
    index = tokens.long().masked_fill(~valid, 0).unsqueeze(-1)
    columns = []
    for temperature in temperatures:
        logp = torch.log_softmax(z / temperature, dim=-1).gather(-1, index).squeeze(-1)
        logp = torch.where(valid, logp, 0.0)
        columns.append(logp.sum(dim=1) / valid.sum(dim=1))
    return torch.stack(columns, dim=1)
