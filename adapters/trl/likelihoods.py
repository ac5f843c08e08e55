"""Per-token likelihoods at the K candidate temperatures, and their per-row means under a mask.

The hidden-state hook records every attended completion position of a scoring pass; the loss
mask (completion x tool mask) is applied afterwards, when the caller knows it: TRL's
old-log-prob pass never sees the tool mask, but its likelihoods come from the weights the round
was generated with, so they are the ones to keep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from tampo_core.loglik import TemperatureLoglik, multi_temperature_loglik_from_hidden


class TokenLoglik(NamedTuple):
    """Per-position likelihoods of a batch of completions.

    Attributes:
        values: float32 ``[B, C, K]``, ``log_softmax(z / T_k)[token]`` at each position
            (NaN where ``recorded`` is False; never read there).
        recorded: bool ``[B, C]``, the positions that were scored.
    """

    values: torch.Tensor
    recorded: torch.Tensor


def token_loglik_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    temperatures: tuple[float, ...],
    bias: torch.Tensor | None,
    logit_scale: float,
) -> TokenLoglik:
    """Score each masked position on its own (a one-token sequence) through the fused
    hidden-state kernel; only those positions' hidden states are copied.

    Args:
        hidden: ``[B, C, H]`` hidden states; position ``t`` scores ``tokens[:, t]``.
        weight: ``[V, H]`` LM head weight (same device); bias: ``[V]`` or None.
        tokens: int64 ``[B, C]``; mask: ``[B, C]`` bool/int, the positions to score.
        temperatures: the K candidates; logit_scale: the head's logit multiplier.
    """
    batch, length, _ = hidden.shape
    selected = mask.bool()
    values = torch.full(
        (batch, length, len(temperatures)), torch.nan, dtype=torch.float32, device=hidden.device
    )
    if selected.any():
        values[selected] = multi_temperature_loglik_from_hidden(
            hidden[selected].unsqueeze(1),
            weight,
            tokens[selected].unsqueeze(1),
            temperatures,
            bias=bias,
            logit_scale=logit_scale,
        ).loglik
    return TokenLoglik(values=values, recorded=selected)


def cat_token_loglik(parts: Sequence[TokenLoglik]) -> TokenLoglik:
    """Concatenate the row chunks of one scoring call (same ``C``)."""
    return TokenLoglik(
        values=torch.cat([part.values for part in parts]),
        recorded=torch.cat([part.recorded for part in parts]),
    )


def mean_over_mask(tokens: TokenLoglik, mask: torch.Tensor) -> TemperatureLoglik:
    """Per-row mean of ``tokens.values`` over ``mask`` (``[B, C]`` bool/int), summed in float64.

    Rows without a masked position get ``num_tokens == 0`` (their likelihoods are NaN and never
    read); a non-finite value inside the mask stays non-finite, for the meta-policy to refuse.

    Raises:
        RuntimeError: the mask selects a position the scoring pass did not record (TRL's loss
            mask is no longer inside its attention mask).
    """
    selected = mask.to(tokens.recorded.device).bool()
    if selected.shape != tokens.recorded.shape:
        raise RuntimeError(
            f"loss mask: expected shape {list(tokens.recorded.shape)} (the scored positions), "
            f"got {list(selected.shape)}"
        )
    missing = selected & ~tokens.recorded
    if missing.any():
        raise RuntimeError(
            "loss mask: expected only positions TRL's scoring pass attended to, got "
            f"{int(missing.sum())} unscored position(s); TRL's masking changed"
        )
    values = torch.where(selected.unsqueeze(-1), tokens.values.double(), 0.0)
    counts = selected.sum(dim=1)
    mean = values.sum(dim=1) / counts.unsqueeze(1)
    return TemperatureLoglik(loglik=mean.float(), num_tokens=counts.to(torch.int64))


def cat_loglik(parts: Sequence[TemperatureLoglik]) -> TemperatureLoglik:
    """Concatenate row chunks of kernel results, keeping each row's count."""
    return TemperatureLoglik(
        loglik=torch.cat([part.loglik for part in parts]),
        num_tokens=torch.cat([part.num_tokens for part in parts]),
    )
