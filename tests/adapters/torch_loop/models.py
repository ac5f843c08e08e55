"""Tiny causal LMs for the torch-loop tests: a plain module and a Hugging Face-shaped one.

``CachedLM.forward(input_ids, past_key_values=None, use_cache=False)`` returns an object with
``.logits`` and ``.past_key_values`` (the GRU state), the cache protocol the sampler drives for
``transformers`` models.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class PlainLM(nn.Module):
    """Returns a bare logits tensor [B, L, V] and has no cache: the documented no-cache path."""

    def __init__(self, vocab: int = 11, d: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.rnn = nn.GRU(d, d, batch_first=True)
        self.head = nn.Linear(d, vocab)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.emb(input_ids))[0])


class CausalLMOutput(NamedTuple):
    """``logits``: float32 [B, L, V]; ``past_key_values``: the GRU state [1, B, d] or None."""

    logits: torch.Tensor
    past_key_values: torch.Tensor | None


class CachedLM(PlainLM):
    """``PlainLM`` with a KV-cache-like state, called the way HF causal LMs are."""

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor,
        past_key_values: torch.Tensor | None = None,
        use_cache: bool = False,
    ) -> CausalLMOutput:
        out, state = self.rnn(self.emb(input_ids), past_key_values)
        return CausalLMOutput(self.head(out), state if use_cache else None)


def cached_lm(seed: int = 0, vocab: int = 11, d: int = 32) -> CachedLM:
    """A seeded ``CachedLM`` in eval mode, its head scaled so that logits spread over a few
    nats (temperature then visibly changes the distribution)."""
    torch.manual_seed(seed)
    model = CachedLM(vocab, d).eval()
    nn.init.normal_(model.head.weight, std=1.0)
    return model
