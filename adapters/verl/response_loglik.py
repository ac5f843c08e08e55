"""Per-temperature mean log-likelihood of the response tokens of a verl no-padding micro-batch.

verl's engine runs the model on each sample's valid tokens (prompt then response, no padding):
packed as ``[total_nnz (+pad), V]`` logits or padded as ``[B, S_max, V]``. Position ``t`` of a
sample scores its token ``t + 1``. A sample of ``L`` valid tokens with ``r`` response tokens has
its response scored at positions ``L - r - 1 .. L - 2`` (as ``no_padding_2_padding`` slices the
log-probs), with ``response_mask[:, :r]`` marking the generated ones.
"""

from __future__ import annotations

import torch

from tampo_core.loglik import TemperatureLoglik, multi_temperature_loglik


def response_loglik(
    logits: torch.Tensor,
    layout: dict[str, torch.Tensor],
    *,
    packed: bool,
    temperatures: tuple[float, ...],
    chunk_size: int | None = None,
) -> TemperatureLoglik:
    """Mean log-likelihood of each sample's response tokens at each candidate temperature.

    Args:
        logits: unscaled logits, float ``[total_nnz (+pad), V]`` when ``packed`` else
            ``[B, S_max, V]``; read in chunks, never copied whole, never modified.
        layout: ``_seam.micro_batch_layout`` of the micro-batch (``offsets`` ``[B + 1]``,
            ``tokens`` ``[total_nnz]``, ``response_lens`` ``[B]``, ``response_mask`` ``[B, R]``).
        packed: the layout of ``logits``.
        temperatures: the K candidate temperatures.
        chunk_size: rows per fp32 chunk of the kernel (None: its device default).

    Returns:
        ``TemperatureLoglik``: float32 ``[B, K]`` and int64 ``[B]`` counts on ``logits.device``;
        a sample without response tokens has count 0 and a NaN row.
    """
    offsets = layout["offsets"].tolist()
    response_lens = layout["response_lens"].tolist()
    device = logits.device
    tokens = layout["tokens"].to(device)
    response_mask = layout["response_mask"].to(device).bool()
    batch = len(response_lens)
    if len(offsets) != batch + 1:
        raise ValueError(f"offsets: expected B + 1 = {batch + 1} entries, got {len(offsets)}")
    rows, counts = [], []
    for b in range(batch):
        start, length, size = offsets[b], offsets[b + 1] - offsets[b], response_lens[b]
        if not 0 < size < length:
            rows.append(torch.full((1, len(temperatures)), float("nan"), device=device))
            counts.append(torch.zeros(1, dtype=torch.int64, device=device))
            continue
        first = length - size - 1
        sample_logits = (
            logits[start + first : start + length - 1].unsqueeze(0)
            if packed
            else logits[b : b + 1, first : length - 1]
        )
        result = multi_temperature_loglik(
            sample_logits,
            tokens[start + first + 1 : start + length].unsqueeze(0),
            temperatures,
            mask=response_mask[b : b + 1, :size],
            source_temperature=1.0,
            chunk_size=chunk_size,
        )
        rows.append(result.loglik)
        counts.append(result.num_tokens)
    return TemperatureLoglik(loglik=torch.cat(rows), num_tokens=torch.cat(counts))


def response_mean_log_probs(
    log_probs: torch.Tensor, layout: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean of verl's per-token log-probs over each sample's response.

    Args:
        log_probs: nested ``[B, L_b]`` (position t scores token t + 1), as the engine returns.
        layout: as in :func:`response_loglik`.

    Returns:
        ``(mean [B] float32, has_tokens [B] bool)``.
    """
    means, valid = [], []
    mask = layout["response_mask"].bool()
    for b, values in enumerate(log_probs.unbind()):
        size = int(layout["response_lens"][b])
        length = values.shape[0]
        row_mask = mask[b, :size].to(values.device)
        count = int(row_mask.sum()) if 0 < size < length else 0
        valid.append(count > 0)
        if count == 0:
            means.append(torch.tensor(float("nan")))
            continue
        scored = values[length - size - 1 : length - 1].float()
        means.append((scored[row_mask].sum() / count).cpu())
    return torch.stack(means), torch.tensor(valid)
