"""The candidate likelihood paths of benchmarks/kernel_candidates.py match the float64
reference on CPU (their GPU accuracy is measured by benchmarks/kernel_gpu.py)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.kernel_candidates import (
    bf16_parts,
    compiled_chunk_stats_loglik,
    sdpa_lse_loglik,
    vocab_blocks,
)
from tampo_core.loglik import reference_multi_temperature_loglik

TEMPERATURES = [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5]


def _case(dtype: torch.dtype, vocab: int = 1200):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 20, vocab, generator=gen) * 3).to(dtype)
    tokens = torch.randint(0, vocab, (3, 20), generator=gen)
    mask = torch.rand(3, 20, generator=gen) < 0.8
    mask[2] = False  # an empty row: count 0
    return logits, tokens, mask


def test_bf16_parts_sum_to_the_value_within_fp32_rounding() -> None:
    x = torch.tensor([1 / 0.7, 1 / 1.3, 3.0, -2.718281828, 1e-3])
    parts = bf16_parts(x)
    assert all(p.dtype == torch.bfloat16 for p in parts) and len(parts) <= 3
    total = sum(p.double() for p in parts)
    assert torch.allclose(total, x.double(), rtol=2**-23, atol=0)
    assert len(bf16_parts(torch.tensor([0.5, 2.0]))) == 1  # exact in bf16: one part


def test_vocab_blocks_divide_the_vocabulary() -> None:
    assert vocab_blocks(151_936) == 64  # 151,936 = 2^7 x 1187: blocks of 2374 keys
    assert vocab_blocks(1000) == 1 and vocab_blocks(10_007) == 1  # 10,007 is prime
    assert all(v % vocab_blocks(v, 64) == 0 for v in (1000, 1200, 4096, 32_000, 151_936))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("chunk", [1, 7, None])
def test_sdpa_lse_path_matches_the_float64_reference(dtype: torch.dtype, chunk) -> None:
    logits, tokens, mask = _case(dtype)
    want = reference_multi_temperature_loglik(logits, tokens, TEMPERATURES, mask)
    got = sdpa_lse_loglik(logits, tokens, TEMPERATURES, mask, chunk_size=chunk, block_target=64)
    assert torch.equal(got.num_tokens, mask.sum(1))
    valid = mask.any(1)
    err = (got.loglik.double()[valid] - want[valid]).abs().max().item()
    assert err < 1e-5


def test_compiled_chunk_path_matches_the_float64_reference() -> None:
    logits, tokens, mask = _case(torch.bfloat16, vocab=256)
    want = reference_multi_temperature_loglik(logits, tokens, TEMPERATURES, mask)
    got = compiled_chunk_stats_loglik(logits, tokens, TEMPERATURES, mask, chunk_size=64)
    valid = mask.any(1)
    assert (got.loglik.double()[valid] - want[valid]).abs().max().item() < 1e-5
