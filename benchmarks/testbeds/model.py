"""A tiny decoder-only transformer with a KV cache, shaped like a Hugging Face causal LM.

``forward(input_ids, past_key_values=None, use_cache=False)`` returns a
:class:`CausalLMOutput` with ``.logits`` and ``.past_key_values``, so the torch-loop sampler
drives it through the same cache path as a ``transformers`` model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

LayerCache = tuple[torch.Tensor, torch.Tensor]


class CausalLMOutput(NamedTuple):
    """``logits``: float32 [B, L, V]; ``past_key_values``: per layer (k, v), each [B, H, S, Dh]."""

    logits: torch.Tensor
    past_key_values: tuple[LayerCache, ...] | None


@dataclass(frozen=True)
class TinyLMConfig:
    """Architecture of :class:`TinyCausalLM`."""

    vocab_size: int
    max_len: int = 32
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4


class _Block(nn.Module):
    def __init__(self, cfg: TinyLMConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
        )

    def forward(self, x: torch.Tensor, past: LayerCache | None) -> tuple[torch.Tensor, LayerCache]:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        s = k.shape[2]
        if n == 1:
            att = F.scaled_dot_product_attention(q, k, v)
        elif s == n:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            keep = torch.ones(n, s, dtype=torch.bool, device=x.device).tril(diagonal=s - n)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, d))
        x = x + self.mlp(self.ln2(x))
        return x, (k, v)


class TinyCausalLM(nn.Module):
    """Pre-LayerNorm GPT with learned positions and tied embeddings (no padding support)."""

    def __init__(self, cfg: TinyLMConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        nn.init.normal_(self.tok.weight, std=1.0 / math.sqrt(cfg.d_model))

    def forward(
        self,
        input_ids: torch.Tensor,
        past_key_values: tuple[LayerCache, ...] | None = None,
        use_cache: bool = False,
    ) -> CausalLMOutput:
        """``input_ids``: int64 [B, L], continuing the cached prefix if ``past_key_values``."""
        start = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        end = start + input_ids.shape[1]
        if end > self.config.max_len:
            raise ValueError(f"sequence length {end} exceeds max_len {self.config.max_len}")
        pos = torch.arange(start, end, device=input_ids.device)
        x = self.tok(input_ids) + self.pos(pos)
        caches = []
        for i, block in enumerate(self.blocks):
            x, cache = block(x, None if past_key_values is None else past_key_values[i])
            caches.append(cache)
        logits = self.ln_f(x) @ self.tok.weight.T
        return CausalLMOutput(logits, tuple(caches) if use_cache else None)
