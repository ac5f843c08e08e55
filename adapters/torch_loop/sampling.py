"""Batched autoregressive sampling at one temperature (or one per row), with or without a KV
cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tampo_core.adapters.torch_loop.model_call import (
    ModelSignature,
    call_model,
    positions_from_mask,
)
from tampo_core.adapters.torch_loop.temperature import (
    Temperature,
    check_batch_temperature,
    divide_by_temperature,
)


@dataclass(frozen=True)
class Rollout:
    """``completion_ids``: int64 [B, L] (``pad_token_id`` after ``<eos>``);
    ``completion_mask``: bool [B, L], True on generated tokens including the ``<eos>``."""

    completion_ids: torch.Tensor
    completion_mask: torch.Tensor


def _next_token(
    logits: torch.Tensor, temperature: Temperature, generator: torch.Generator | None
) -> torch.Tensor:
    if not isinstance(temperature, torch.Tensor) and temperature == 0.0:
        return logits.argmax(-1)
    probs = torch.softmax(divide_by_temperature(logits, temperature), dim=-1)
    sampled = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    if not isinstance(temperature, torch.Tensor):
        return sampled
    return torch.where(temperature.to(logits.device) == 0.0, logits.argmax(-1), sampled)


@torch.no_grad()
def sample_completions(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    *,
    temperature: Temperature,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    use_cache: bool | None = None,
    generator: torch.Generator | None = None,
) -> Rollout:
    """Sample one completion per row of ``prompt_ids`` (int64 [B, P]) from softmax(z / T).

    ``temperature``: one float for the batch, or a ``[B]`` tensor (row i sampled from
    softmax(z / T_i): per-prompt temperatures); 0 means greedy. ``attention_mask`` ([B, P],
    1 = token) is needed only for left-padded prompts. ``use_cache=None`` uses the KV cache
    when ``model.forward`` accepts ``past_key_values`` (or ``cache``) and ``use_cache``;
    ``use_cache=False`` re-runs the whole prefix each step (the no-cache path for plain
    modules: O(L^2) compute, fine for short completions).
    Plain softmax sampling only (no top-k/top-p), which is what TAMPO's likelihood assumes.
    """
    if prompt_ids.dim() != 2 or prompt_ids.dtype != torch.long:
        raise ValueError(
            f"prompt_ids must be int64 [B, P]; got {prompt_ids.dtype} {tuple(prompt_ids.shape)}"
        )
    temperature = check_batch_temperature(
        "temperature", temperature, prompt_ids.shape[0], greedy_ok=True
    )
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}")
    if attention_mask is not None and attention_mask.shape != prompt_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} != prompt_ids "
            f"shape {tuple(prompt_ids.shape)}"
        )
    sig = ModelSignature.of(model)
    cached = sig.cache_kwarg is not None if use_cache is None else use_cache
    pad = eos_token_id if pad_token_id is None else pad_token_id
    b = prompt_ids.shape[0]
    device = prompt_ids.device
    mask = None if attention_mask is None else attention_mask.long()
    seq = prompt_ids
    past = None
    step_ids = prompt_ids
    step_pos = None if mask is None else positions_from_mask(mask)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    tokens, valid = [], []
    for _ in range(max_new_tokens):
        if cached:
            logits, past = call_model(
                model,
                sig,
                step_ids,
                attention_mask=mask,
                position_ids=step_pos,
                past_key_values=past,
                use_cache=True,
            )
        else:
            pos = None if mask is None else positions_from_mask(mask)
            logits, _ = call_model(model, sig, seq, attention_mask=mask, position_ids=pos)
        nxt = _next_token(logits[:, -1], temperature, generator)
        valid.append(~done)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        tokens.append(nxt)
        done = done | (nxt == eos_token_id)
        if bool(done.all()):
            break
        step_ids = nxt[:, None]
        seq = torch.cat([seq, step_ids], dim=1)
        if mask is not None:
            step_pos = mask.sum(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
    return Rollout(torch.stack(tokens, dim=1), torch.stack(valid, dim=1))
