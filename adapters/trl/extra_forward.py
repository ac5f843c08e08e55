"""Fallback likelihood source: one extra no-grad policy pass per generation round.

For architectures the hidden-state hook cannot serve (final-logit soft-capping, ZeRO-3 / FSDP
sharded LM heads, backbones whose output has no ``last_hidden_state``). Costs about one
old-log-prob pass per round. Rows are scored in chunks whose ``[rows, C + 1, V]`` logits stay
within ``LOGITS_BUDGET_BYTES`` (one row per pass at the least).
"""

from __future__ import annotations

from typing import Any

import torch

from tampo_core.adapters.trl import _seam
from tampo_core.adapters.trl.likelihoods import cat_loglik
from tampo_core.loglik import TemperatureLoglik, multi_temperature_loglik

LOGITS_BUDGET_BYTES = 2**30
"""Largest logits tensor one pass may build (1 GiB); a single row may exceed it (a 4,097-token
row over a 151,936-word vocabulary is 1.2 GiB in bf16)."""


def rows_per_pass(preferred: int, positions: int, vocab: int) -> int:
    """Rows per forward: at most ``preferred``, with ``[rows, positions, vocab]`` logits within
    ``LOGITS_BUDGET_BYTES`` counted at 4 bytes a value (fp32, or an upcast), at least 1."""
    return max(1, min(preferred, LOGITS_BUDGET_BYTES // max(positions * vocab * 4, 1)))


def loglik_by_extra_forward(
    model: torch.nn.Module,
    accelerator: Any,
    batch: dict[str, Any],
    temperatures: tuple[float, ...],
    max_rows: int,
) -> TemperatureLoglik:
    """Per-temperature mean log-likelihoods of a round's completions from real logits.

    Args:
        model: the policy as the trainer holds it; called with ``fused_lm_head`` off, so it
            returns logits.
        accelerator: the trainer's accelerator (for its autocast).
        batch: ``_generate_and_score_completions`` output: ``prompt_ids``/``prompt_mask``
            ``[B, P]``, ``completion_ids``/``completion_mask`` ``[B, C]``, optional ``tool_mask``
            and multimodal inputs (``_seam.ROW_INPUT_KEYS`` are split with the rows;
            ``_seam.IMAGE_INPUT_KEYS`` are indexed per image, so when present all rows go
            through one pass with them whole).
        temperatures: the K candidates.
        max_rows: most rows scored per forward (the memory budget may lower it).

    Returns:
        ``TemperatureLoglik``: float32 ``[B, K]`` and the ``[B]`` counts of the loss mask.
    """
    completion_ids = batch["completion_ids"]
    mask = _seam.loss_mask(batch)
    input_ids = torch.cat([batch["prompt_ids"], completion_ids], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    num_rows, num_completion = completion_ids.shape
    image_inputs = {key: batch[key] for key in _seam.IMAGE_INPUT_KEYS if key in batch}
    row_inputs = {key: batch[key] for key in _seam.ROW_INPUT_KEYS if key in batch}
    if image_inputs:
        step = num_rows
    else:
        vocab = model.get_output_embeddings().weight.shape[0]
        step = rows_per_pass(max_rows, num_completion + 1, vocab)
    parts = []
    for start in range(0, num_rows, step):
        rows = slice(start, start + step)
        with torch.no_grad(), accelerator.autocast():
            logits = model(
                input_ids=input_ids[rows],
                attention_mask=attention_mask[rows],
                use_cache=False,
                logits_to_keep=num_completion + 1,
                **image_inputs,
                **{key: value[rows] for key, value in row_inputs.items()},
            ).logits[:, :-1]
        parts.append(
            multi_temperature_loglik(logits, completion_ids[rows], temperatures, mask=mask[rows])
        )
        del logits
    return cat_loglik(parts)
