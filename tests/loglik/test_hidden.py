"""Tests of the hidden-state (LM head) path of the multi-temperature log-likelihood kernel."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tampo_core.loglik import budget, multi_temperature_loglik, multi_temperature_loglik_from_hidden
from tampo_core.loglik import hidden as kernel_hidden
from tampo_core.loglik.memory_probe import TensorMemoryProbe
from tampo_core.loglik.reference import reference_multi_temperature_loglik
from tests.loglik.test_logits import TEMPERATURES, assert_close_to_reference

FAST = settings(max_examples=20, deadline=None)


def hidden_case(
    seed: int, batch: int, length: int, width: int, vocab: int, with_bias: bool
) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, length, width, generator=gen)
    weight = torch.randn(vocab, width, generator=gen) / math.sqrt(width)
    bias = torch.randn(vocab, generator=gen) if with_bias else None
    tokens = torch.randint(0, vocab, (batch, length), generator=gen)
    mask = torch.rand(batch, length, generator=gen) < 0.7
    mask[:, 0] = True
    return hidden, weight, bias, tokens, mask


def float64_logits(hidden, weight, bias, scale):
    logits = hidden.double() @ weight.double().T
    if bias is not None:
        logits = logits + bias.double()
    return logits * scale


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    width=st.integers(1, 48),
    vocab=st.integers(1, 300),
    with_bias=st.booleans(),
    scale=st.floats(0.3, 3.0),
    chunk_size=st.none() | st.integers(1, 9),
    vocab_block=st.none() | st.integers(1, 301),
)
def test_matches_float64_reference(seed, width, vocab, with_bias, scale, chunk_size, vocab_block):
    hidden, weight, bias, tokens, mask = hidden_case(seed, 2, 5, width, vocab, with_bias)
    got = multi_temperature_loglik_from_hidden(
        hidden, weight, tokens, TEMPERATURES, mask, bias, scale, chunk_size, vocab_block
    ).loglik
    logits = float64_logits(hidden, weight, bias, scale)
    want = reference_multi_temperature_loglik(logits, tokens, TEMPERATURES, mask)
    # fp32 GEMM rounding of logits up to ~|z|/T_min: relative, not absolute, error.
    assert_close_to_reference(got, want, atol=1e-5 + 1e-6 * want.abs().nan_to_num().max().item())


@pytest.mark.parametrize("vocab_block", [None, 1, 7, 64, 333, 10_000])
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_equals_logits_path(vocab_block, chunk_size):
    hidden, weight, bias, tokens, mask = hidden_case(11, 3, 6, 32, 333, with_bias=True)
    got = multi_temperature_loglik_from_hidden(
        hidden,
        weight,
        tokens,
        TEMPERATURES,
        mask,
        bias=bias,
        logit_scale=0.8,
        chunk_size=chunk_size,
        vocab_block=vocab_block,
    ).loglik
    logits = (hidden @ weight.T + bias) * 0.8
    want = multi_temperature_loglik(logits, tokens, TEMPERATURES, mask).loglik
    torch.testing.assert_close(got, want, atol=5e-5, rtol=1e-6)


@pytest.mark.parametrize("vocab_block", [None, 5, 64])
def test_power_sum_strategy_matches_float64_reference(monkeypatch, vocab_block):
    monkeypatch.setattr(kernel_hidden, "uses_power_sums", lambda device: True)
    hidden, weight, bias, tokens, mask = hidden_case(17, 3, 6, 16, 150, with_bias=True)
    bias[:40] = -math.inf
    got = multi_temperature_loglik_from_hidden(
        hidden, weight, tokens.clamp(min=40), TEMPERATURES, mask, bias, vocab_block=vocab_block
    ).loglik
    logits = float64_logits(hidden, weight, bias, 1.0)
    want = reference_multi_temperature_loglik(logits, tokens.clamp(min=40), TEMPERATURES, mask)
    assert_close_to_reference(got, want, atol=1e-5 + 1e-6 * want.abs().max().item())


@pytest.mark.parametrize(
    ("hidden_dtype", "weight_dtype"),
    [
        (torch.bfloat16, torch.bfloat16),
        (torch.float16, torch.float16),
        (torch.float32, torch.bfloat16),
    ],
)
def test_low_precision_inputs_use_fp32_logits_of_the_same_values(hidden_dtype, weight_dtype):
    hidden, weight, bias, tokens, mask = hidden_case(12, 2, 5, 24, 200, with_bias=True)
    hidden, weight, bias = hidden.to(hidden_dtype), weight.to(weight_dtype), bias.to(weight_dtype)
    got = multi_temperature_loglik_from_hidden(
        hidden, weight, tokens, TEMPERATURES, mask, bias=bias, vocab_block=37
    ).loglik
    want = reference_multi_temperature_loglik(
        float64_logits(hidden, weight, bias, 1.0), tokens, TEMPERATURES, mask
    )
    assert_close_to_reference(got, want, atol=2e-5)


def test_negative_infinity_bias_in_first_blocks_and_targets():
    hidden, weight, bias, tokens, mask = hidden_case(13, 3, 4, 16, 120, with_bias=True)
    mask[:] = True
    bias[:50] = -math.inf  # the first blocks of 8 columns are entirely -inf
    tokens[0] = torch.randint(50, 120, (4,))
    tokens[1] = torch.randint(50, 120, (4,))
    tokens[2, 1] = 3  # -inf target
    tokens[2, [0, 2, 3]] = 60
    got = multi_temperature_loglik_from_hidden(
        hidden, weight, tokens, TEMPERATURES, mask, bias=bias, vocab_block=8
    ).loglik
    want = reference_multi_temperature_loglik(
        float64_logits(hidden, weight, bias, 1.0), tokens, TEMPERATURES, mask
    )
    assert not got.isnan().any()
    assert torch.equal(got[2], torch.full((len(TEMPERATURES),), -math.inf))
    assert_close_to_reference(got[:2], want[:2], atol=2e-5)


def test_empty_sequences_give_nan_rows():
    hidden, weight, _, tokens, mask = hidden_case(14, 3, 4, 8, 50, with_bias=False)
    mask[0] = False
    got = multi_temperature_loglik_from_hidden(hidden, weight, tokens, TEMPERATURES, mask).loglik
    assert got[0].isnan().all() and not got[1:].isnan().any()


def test_caller_tensors_are_not_modified():
    hidden, weight, bias, tokens, mask = hidden_case(15, 2, 5, 12, 70, with_bias=True)
    hidden = hidden.bfloat16()
    inputs = (hidden, weight, bias, tokens, mask)
    copies = [t.clone() for t in inputs]
    multi_temperature_loglik_from_hidden(
        hidden[:, 1:],
        weight.bfloat16(),
        tokens[:, 1:],
        TEMPERATURES,
        mask[:, 1:],
        bias=bias,
        logit_scale=0.5,
        vocab_block=9,
    )
    for before, after in zip(copies, inputs, strict=True):
        assert torch.equal(before, after)


def test_extra_memory_is_bounded_by_the_chunk_budget(monkeypatch):
    chunk_budget = 512 * 1024
    monkeypatch.setattr(budget, "CHUNK_BUDGET_BYTES", chunk_budget)
    hidden, weight, bias, tokens, mask = hidden_case(16, 2, 128, 32, 8192, with_bias=True)
    n_valid = int(mask.sum())
    assert 4 * n_valid * weight.shape[0] >= 8 * chunk_budget  # the [N, V] logits would not fit
    probe = TensorMemoryProbe([hidden, weight, bias, tokens, mask])
    with probe:
        got = multi_temperature_loglik_from_hidden(
            hidden, weight, tokens, TEMPERATURES, mask, bias
        ).loglik
    assert 0 < probe.largest <= chunk_budget / 2
    assert probe.peak_live <= chunk_budget + 64 * 1024  # + O(N K) per-token statistics
    want = reference_multi_temperature_loglik(
        float64_logits(hidden, weight, bias, 1.0), tokens, TEMPERATURES, mask
    )
    assert_close_to_reference(got, want, atol=5e-5)


GOOD = {
    "hidden": torch.zeros(2, 3, 4),
    "lm_head_weight": torch.zeros(5, 4),
    "tokens": torch.zeros(2, 3, dtype=torch.long),
    "temperatures": [0.5, 1.0],
}


@pytest.mark.parametrize(
    ("changes", "error", "pattern"),
    [
        ({"hidden": torch.zeros(2, 3)}, ValueError, r"hidden: expected shape \[B, L, H\]"),
        ({"hidden": torch.zeros(2, 3, 4, dtype=torch.int64)}, TypeError, "hidden: expected dtype"),
        ({"lm_head_weight": torch.zeros(5, 3)}, ValueError, r"H = 4, got \[5, 3\]"),
        (
            {"lm_head_weight": torch.zeros(5)},
            ValueError,
            r"lm_head_weight: expected shape \[V, H\]",
        ),
        ({"lm_head_weight": torch.zeros(0, 4)}, ValueError, "V >= 1"),
        ({"bias": torch.zeros(4)}, ValueError, r"bias: expected shape \[V\] = \[5\]"),
        ({"bias": torch.zeros(5, dtype=torch.int32)}, TypeError, "bias: expected dtype"),
        ({"tokens": torch.full((2, 3), 5)}, ValueError, r"\[0, 5\)"),
        ({"tokens": torch.zeros(3, 2, dtype=torch.long)}, ValueError, "tokens: expected shape"),
        ({"temperatures": [0.0]}, ValueError, "temperatures"),
        ({"mask": torch.ones(2, 3, 1, dtype=torch.bool)}, ValueError, "mask: expected shape"),
        ({"logit_scale": -1.0}, ValueError, "logit_scale"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"vocab_block": -3}, ValueError, "vocab_block"),
    ],
)
def test_invalid_inputs_raise_clear_errors(changes, error, pattern):
    with pytest.raises(error, match=pattern):
        multi_temperature_loglik_from_hidden(**{**GOOD, **changes})
