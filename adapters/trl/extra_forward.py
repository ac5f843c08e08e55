"""Fallback likelihood source: one extra no-grad policy pass per generation round.

For architectures the hidden-state hook cannot serve (final-logit soft-capping, ZeRO-3 / FSDP
sharded LM heads, backbones whose output has no ``last_hidden_state``). Costs about one
old-log-prob pass per round.
"""

from __future__ import annotations

from typing import Any

import torch

from tampo_core import multi_temperature_loglik


def loglik_by_extra_forward(
    model: torch.nn.Module,
    accelerator: Any,
    batch: dict[str, torch.Tensor],
    temperatures: tuple[float, ...],
    rows_per_pass: int,
) -> torch.Tensor:
    """Per-temperature mean log-likelihoods of a round's completions from real logits.

    Args:
        model: the policy as the trainer holds it; called with ``fused_lm_head`` off, so it
            returns logits.
        accelerator: the trainer's accelerator (for its autocast).
        batch: ``_generate_and_score_completions`` output: ``prompt_ids``/``prompt_mask``
            ``[B, P]``, ``completion_ids``/``completion_mask`` ``[B, C]``, optional ``tool_mask``.
        temperatures: the K candidates.
        rows_per_pass: rows scored per forward.

    Returns:
        float32 ``[B, K]`` (NaN rows for completions without a valid token).
    """
    completion_ids = batch["completion_ids"]
    mask = batch["completion_mask"]
    if "tool_mask" in batch:
        mask = mask * batch["tool_mask"]
    input_ids = torch.cat([batch["prompt_ids"], completion_ids], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    num_completion = completion_ids.shape[1]
    chunks = []
    for start in range(0, input_ids.shape[0], rows_per_pass):
        rows = slice(start, start + rows_per_pass)
        with torch.no_grad(), accelerator.autocast():
            logits = model(
                input_ids=input_ids[rows],
                attention_mask=attention_mask[rows],
                use_cache=False,
                logits_to_keep=num_completion + 1,
            ).logits[:, :-1]
        chunks.append(
            multi_temperature_loglik(logits, completion_ids[rows], temperatures, mask=mask[rows])
        )
    return torch.cat(chunks)
