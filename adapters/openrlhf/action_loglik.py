"""Per-temperature mean log-likelihood of the action tokens of an OpenRLHF forward batch.

OpenRLHF's ``Actor.forward`` produces fp32 logits ``[B, S, V]`` (packed: ``[1, nnz, V]``, the
valid positions of ``attention_mask`` in row-major order), where position ``t`` of sample ``b``
scores ``sequences[b, t + 1]``. Its ``action_mask`` ``[B, A]`` covers the last ``A`` columns of the
shifted sequence, so action column ``j`` is logits position ``S - 1 - A + j`` and token
``sequences[b, S - A + j]``.
"""

from __future__ import annotations

import hashlib

import torch

from tampo_core.loglik import TemperatureLoglik, multi_temperature_loglik
from tampo_core.validation import expected


def sequence_key(sequences: torch.Tensor) -> str:
    """Content key of a ``[B, S]`` token batch (blake2b of shape, dtype and bytes).

    The policy process and the trainer process each compute it from their own copy of the same
    micro-batch, which is how the ``[B, K]`` likelihoods find their ``Experience``.
    """
    array = sequences.detach().to("cpu", torch.int64).contiguous().numpy()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(tuple(array.shape)).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def action_loglik(
    logits: torch.Tensor,
    sequences: torch.Tensor,
    action_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    packed: bool,
    temperatures: tuple[float, ...],
    source_temperature: float,
    chunk_size: int | None = None,
) -> TemperatureLoglik:
    """Mean log-likelihood of each sample's action tokens at each candidate temperature.

    Args:
        logits: float ``[B, S, V]``, or ``[1, nnz, V]`` when ``packed`` (``nnz`` =
            ``attention_mask.sum()``); already divided by ``source_temperature``. Read in
            chunks, never copied whole, never modified.
        sequences: int ``[B, S]`` token ids (right-padded).
        action_mask: ``[B, A]`` 0/1 or bool, ``A <= S - 1``.
        attention_mask: ``[B, S]`` 0/1, each row's ones contiguous.
        packed: whether ``logits`` are in packed layout.
        temperatures: the K candidate temperatures.
        source_temperature: the temperature the logits are divided by (the sampling T).
        chunk_size: rows per fp32 chunk of the kernel (None: its device default).

    Returns:
        ``TemperatureLoglik``: ``loglik`` float32 ``[B, K]`` on ``logits.device`` and
        ``num_tokens`` int64 ``[B]``, the action tokens of each sample (0: no action token, and
        that row's likelihoods mean nothing).
    """
    batch, seqlen = sequences.shape
    if action_mask.dim() != 2 or action_mask.shape[0] != batch:
        raise ValueError(expected("action_mask", f"shape [B={batch}, A]", list(action_mask.shape)))
    num_actions = action_mask.shape[1]
    if not 0 < num_actions < seqlen:
        raise ValueError(expected("action_mask", f"0 < A < S = {seqlen}", f"A = {num_actions}"))
    if attention_mask.shape != sequences.shape:
        rule = f"shape {list(sequences.shape)} (that of sequences)"
        raise ValueError(expected("attention_mask", rule, list(attention_mask.shape)))
    offset = seqlen - 1 - num_actions
    tokens = sequences[:, seqlen - num_actions :]
    mask = action_mask.bool()
    if not packed:
        if logits.shape[:2] != (batch, seqlen):
            rule = f"shape [B={batch}, S={seqlen}, V]"
            raise ValueError(expected("logits", rule, list(logits.shape)))
        return multi_temperature_loglik(
            logits[:, offset : seqlen - 1],
            tokens,
            temperatures,
            mask=mask,
            source_temperature=source_temperature,
            chunk_size=chunk_size,
        )
    return _packed_action_loglik(
        logits, tokens, mask, attention_mask, offset, temperatures, source_temperature, chunk_size
    )


def _packed_action_loglik(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    attention_mask: torch.Tensor,
    offset: int,
    temperatures: tuple[float, ...],
    source_temperature: float,
    chunk_size: int | None,
) -> TemperatureLoglik:
    batch, seqlen = attention_mask.shape
    flat_valid = attention_mask.flatten().nonzero().squeeze(1).to(logits.device)
    if logits.shape[:2] != (1, flat_valid.numel()):
        rule = f"packed shape [1, nnz={flat_valid.numel()}, V]"
        raise ValueError(expected("logits", rule, list(logits.shape)))
    rows, counts = [], []
    for b in range(batch):
        columns = mask[b].nonzero().squeeze(1)
        if columns.numel() == 0:
            rows.append(torch.full((1, len(temperatures)), float("nan"), device=logits.device))
            counts.append(torch.zeros(1, dtype=torch.int64, device=logits.device))
            continue
        first, last = int(columns[0]), int(columns[-1])
        flat_first = b * seqlen + offset + first
        start = int(torch.searchsorted(flat_valid, flat_first))
        length = last - first + 1
        if (
            start + length > flat_valid.numel()
            or int(flat_valid[start]) != flat_first
            or int(flat_valid[start + length - 1]) != flat_first + length - 1
        ):
            raise ValueError(
                expected(
                    f"attention_mask[{b}]",
                    "right-padded rows (the action positions contiguous valid positions)",
                    "action positions outside the row's valid span",
                )
            )
        row = multi_temperature_loglik(
            logits[:, start : start + length],
            tokens[b : b + 1, first : last + 1],
            temperatures,
            mask=mask[b : b + 1, first : last + 1],
            source_temperature=source_temperature,
            chunk_size=chunk_size,
        )
        rows.append(row.loglik)
        counts.append(row.num_tokens)
    return TemperatureLoglik(torch.cat(rows, dim=0), torch.cat(counts, dim=0))
