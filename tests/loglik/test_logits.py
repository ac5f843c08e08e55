"""Tests of the fused multi-temperature log-likelihood kernel (logits path)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from tampo_core.loglik import budget, exp_sums, multi_temperature_loglik
from tampo_core.loglik import logits as kernel
from tampo_core.loglik.memory_probe import TensorMemoryProbe
from tampo_core.loglik.reference import reference_multi_temperature_loglik

FAST = settings(max_examples=25, deadline=None)
TEMPERATURES = (0.1, 0.35, 0.7, 1.0, 1.5, 2.6, 5.0)


def random_case(
    seed: int, batch: int, length: int, vocab: int, scale: float, p_valid: float = 0.7
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=gen) * scale
    tokens = torch.randint(0, vocab, (batch, length), generator=gen)
    mask = torch.rand(batch, length, generator=gen) < p_valid
    mask[:, 0] = True
    return logits, tokens, mask


def assert_close_to_reference(got: torch.Tensor, want: torch.Tensor, atol: float) -> None:
    assert got.dtype == torch.float32
    assert got.shape == want.shape
    assert torch.equal(got.isnan(), want.isnan())
    err = (got.double() - want).abs().nan_to_num(nan=0.0)
    assert err.max().item() <= atol, f"max |err| = {err.max().item():.3g} > {atol}"


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 3),
    length=st.integers(1, 6),
    vocab=st.integers(1, 300),
    scale=st.floats(0.1, 3.0),
    temps=st.lists(st.sampled_from(TEMPERATURES) | st.floats(0.1, 5.0), min_size=1, max_size=5),
    chunk_size=st.none() | st.integers(1, 7),
)
def test_fp32_matches_float64_reference(seed, batch, length, vocab, scale, temps, chunk_size):
    logits, tokens, mask = random_case(seed, batch, length, vocab, scale)
    got = multi_temperature_loglik(logits, tokens, temps, mask, chunk_size=chunk_size).loglik
    want = reference_multi_temperature_loglik(logits, tokens, temps, mask)
    assert_close_to_reference(got, want, atol=1e-5)


@pytest.fixture
def power_sums(monkeypatch):
    """Run the GPU strategy (power sums, no clamp) on CPU."""
    monkeypatch.setattr(kernel, "uses_power_sums", lambda device: True)


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    vocab=st.integers(1, 300),
    scale=st.floats(0.1, 3.0),
    temps=st.lists(st.floats(0.1, 5.0), min_size=1, max_size=5),
    chunk_size=st.none() | st.integers(1, 7),
)
def test_power_sum_strategy_matches_float64_reference(seed, vocab, scale, temps, chunk_size):
    logits, tokens, mask = random_case(seed, 3, 5, vocab, scale)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernel, "uses_power_sums", lambda device: True)
        got = multi_temperature_loglik(logits, tokens, temps, mask, chunk_size=chunk_size).loglik
    want = reference_multi_temperature_loglik(logits, tokens, temps, mask)
    assert_close_to_reference(got, want, atol=1e-5)


def test_power_sum_strategy_negative_infinity_and_empty_rows(power_sums):
    logits, tokens, mask = random_case(9, 4, 6, 50, 2.0, p_valid=1.0)
    logits[0, 1, ::3] = -math.inf
    logits[0, 1, tokens[0, 1]] = 0.5
    logits[1, 2, :] = -math.inf
    mask[3] = False
    got = multi_temperature_loglik(logits, tokens, TEMPERATURES, mask).loglik
    want = reference_multi_temperature_loglik(logits, tokens, TEMPERATURES, mask)
    assert torch.equal(got[1], torch.full((len(TEMPERATURES),), -math.inf))
    assert got[3].isnan().all()
    assert_close_to_reference(got[[0, 2]], want[[0, 2]], atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@FAST
@given(seed=st.integers(0, 2**31 - 1), vocab=st.integers(2, 400), scale=st.floats(0.1, 3.0))
def test_low_precision_matches_reference_of_same_values(dtype, seed, vocab, scale):
    logits, tokens, mask = random_case(seed, 2, 5, vocab, scale)
    logits = logits.to(dtype)
    got = multi_temperature_loglik(logits, tokens, TEMPERATURES, mask).loglik
    want = reference_multi_temperature_loglik(logits, tokens, TEMPERATURES, mask)
    assert_close_to_reference(got, want, atol=1e-5)


class ExpArgumentProbe(TorchDispatchMode):
    """Records the smallest argument any ``exp`` op receives."""

    def __init__(self) -> None:
        super().__init__()
        self.smallest = math.inf

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.exp, torch.ops.aten.exp_):
            self.smallest = min(self.smallest, args[0].min().item())
        return func(*args, **(kwargs or {}))


def test_cpu_exp_arguments_are_clamped_per_temperature():
    # Logits spread over ~1000 nats: unclamped, most exps would hit the slow underflow path.
    logits, tokens, mask = random_case(10, 2, 4, 500, 150.0)
    temps = [0.1, 1.0, 5.0]
    probe = ExpArgumentProbe()
    with probe:
        got = multi_temperature_loglik(logits, tokens, temps, mask).loglik
    assert probe.smallest >= exp_sums.EXP_FLOOR
    want = reference_multi_temperature_loglik(logits, tokens, temps, mask)
    assert_close_to_reference(got, want, atol=1e-5 + 1e-7 * want.abs().max().item())


@FAST
@given(seed=st.integers(0, 2**31 - 1), vocab=st.integers(1, 200))
def test_invariant_to_per_row_constant(seed, vocab):
    logits, tokens, mask = random_case(seed, 2, 4, vocab, 2.0)
    # Multiples of 1/64 plus integers stay exact in fp32, so the result must not move at all.
    logits = (logits * 64).round() / 64
    offsets = torch.randint(-1000, 1000, (2, 4, 1), generator=torch.Generator().manual_seed(seed))
    base = multi_temperature_loglik(logits, tokens, TEMPERATURES, mask).loglik
    shifted = multi_temperature_loglik(logits + offsets.float(), tokens, TEMPERATURES, mask).loglik
    assert torch.equal(base, shifted)


def test_log_probs_input_equals_raw_logits_and_source_temperature():
    logits, tokens, mask = random_case(1, 3, 8, 500, 2.5)
    raw = multi_temperature_loglik(logits, tokens, TEMPERATURES, mask).loglik
    from_logp = multi_temperature_loglik(logits.log_softmax(-1), tokens, TEMPERATURES, mask).loglik
    torch.testing.assert_close(from_logp, raw, atol=1e-5, rtol=0)
    for t_src in (0.3, 0.7, 1.8):
        scaled = multi_temperature_loglik(
            logits / t_src, tokens, TEMPERATURES, mask, source_temperature=t_src
        ).loglik
        torch.testing.assert_close(scaled, raw, atol=1e-5, rtol=0)
    # z = 2 * logits at T = 0.5 is T = 0.25 on the given logits.
    tempered = multi_temperature_loglik(logits, tokens, [0.5], mask, source_temperature=2.0).loglik
    direct = multi_temperature_loglik(logits, tokens, [0.25], mask).loglik
    torch.testing.assert_close(tempered, direct, atol=1e-5, rtol=0)


@FAST
@given(seed=st.integers(0, 2**31 - 1), vocab=st.integers(2, 300), scale=st.floats(0.5, 3.0))
def test_concave_in_inverse_temperature(seed, vocab, scale):
    logits, tokens, mask = random_case(seed, 2, 5, vocab, scale)
    betas = torch.linspace(0.2, 10.0, 40, dtype=torch.float64)
    values = multi_temperature_loglik(logits, tokens, (1.0 / betas).tolist(), mask).loglik.double()
    second = values[:, 2:] - 2 * values[:, 1:-1] + values[:, :-2]
    assert second.max().item() <= 1e-5


def test_negative_infinity_logits():
    logits, tokens, mask = random_case(2, 4, 6, 50, 2.0, p_valid=1.0)
    logits[0, 1, ::3] = -math.inf  # partial -inf row (targets kept finite)
    logits[0, 1, tokens[0, 1]] = 0.5
    logits[1, 2, :] = -math.inf  # valid all -inf row: its target is -inf
    logits[2, 0, tokens[2, 0]] = -math.inf  # -inf target in a finite row
    logits[3, 3, :] = -math.inf  # all -inf row under a zero mask: ignored
    mask[3, 3] = False
    got = multi_temperature_loglik(logits, tokens, TEMPERATURES, mask).loglik
    want = reference_multi_temperature_loglik(logits, tokens, TEMPERATURES, mask)
    assert not got.isnan().any()
    assert torch.equal(got[1:3], torch.full((2, len(TEMPERATURES)), -math.inf))
    assert_close_to_reference(got[[0, 3]], want[[0, 3]], atol=1e-5)


def test_empty_sequences_give_nan_rows_and_others_are_unaffected():
    logits, tokens, mask = random_case(3, 3, 5, 40, 1.0)
    mask[1] = False
    got = multi_temperature_loglik(logits, tokens, TEMPERATURES, mask).loglik
    assert got[1].isnan().all()
    assert not got[[0, 2]].isnan().any()
    alone = multi_temperature_loglik(
        logits[[0, 2]], tokens[[0, 2]], TEMPERATURES, mask[[0, 2]]
    ).loglik
    torch.testing.assert_close(got[[0, 2]], alone)
    nothing = multi_temperature_loglik(logits, tokens, TEMPERATURES, torch.zeros_like(mask)).loglik
    assert nothing.shape == (3, len(TEMPERATURES)) and nothing.isnan().all()


def test_nan_logits_give_nan_for_that_sequence_only():
    logits, tokens, mask = random_case(4, 2, 3, 30, 1.0, p_valid=1.0)
    logits[1, 2, 7] = math.nan
    got = multi_temperature_loglik(logits, tokens, TEMPERATURES, mask).loglik
    assert got[1].isnan().all() and not got[0].isnan().any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_caller_tensors_are_not_modified(dtype):
    logits, tokens, mask = random_case(5, 3, 7, 90, 2.0)
    logits = logits.to(dtype)
    temps = torch.tensor([0.3, 1.0, 2.0])
    view = logits[:, :-1]  # non-contiguous, as callers pass shifted logits
    copies = [t.clone() for t in (logits, tokens, mask, temps)]
    multi_temperature_loglik(view, tokens[:, 1:], temps, mask[:, 1:].int(), chunk_size=2)
    multi_temperature_loglik(logits, tokens, temps, mask, source_temperature=0.7)
    for before, after in zip(copies, (logits, tokens, mask, temps), strict=True):
        assert torch.equal(before, after)


@pytest.mark.parametrize(
    "layout",
    [
        lambda z: z[:, 1:],  # shifted positions: one-index row table
        lambda z: z.transpose(0, 1).contiguous().transpose(0, 1)[:, 1:],  # B and L swapped
        lambda z: torch.cat([z, z[..., :5]], dim=2)[:, 1:, 2 : 2 + z.shape[2]],  # 2-axis gather
        lambda z: z[:1, 1:].expand(3, -1, -1),  # stride-0 batch
    ],
)
def test_strided_layouts_match_contiguous_copies(layout):
    logits, tokens, mask = random_case(6, 3, 9, 64, 2.0)
    view = layout(logits)
    got = multi_temperature_loglik(view, tokens[:, 1:], TEMPERATURES, mask[:, 1:]).loglik
    want = multi_temperature_loglik(
        view.contiguous(), tokens[:, 1:], TEMPERATURES, mask[:, 1:]
    ).loglik
    assert torch.equal(got, want)


@FAST
@given(seed=st.integers(0, 2**31 - 1), vocab=st.integers(1, 500))
def test_chunk_size_independent(seed, vocab):
    logits, tokens, mask = random_case(seed, 3, 7, vocab, 2.0)
    results = [
        multi_temperature_loglik(logits, tokens, TEMPERATURES, mask, chunk_size=c)
        for c in (None, 1, 2, 3, 5, 64)
    ]
    for result in results[1:]:
        torch.testing.assert_close(result, results[0], atol=1e-6, rtol=0, equal_nan=True)


def test_accepts_int32_tokens_integer_mask_tensor_temperatures_and_masked_padding():
    logits, tokens, mask = random_case(7, 2, 6, 33, 1.0)
    padded = tokens.masked_fill(~mask, -100)
    want = multi_temperature_loglik(logits, tokens, list(TEMPERATURES), mask).loglik
    got = multi_temperature_loglik(
        logits, padded.int(), torch.tensor(TEMPERATURES, dtype=torch.float64), mask.long()
    ).loglik
    assert torch.equal(got, want)
    all_valid = multi_temperature_loglik(logits, tokens, TEMPERATURES).loglik
    with_ones = multi_temperature_loglik(logits, tokens, TEMPERATURES, torch.ones_like(mask)).loglik
    assert torch.equal(all_valid, with_ones)


def test_extra_memory_is_bounded_by_the_chunk_budget(monkeypatch):
    chunk_budget = 256 * 1024
    monkeypatch.setattr(budget, "CHUNK_BUDGET_BYTES", chunk_budget)
    vocab, length = 8192, 256  # logits: 8 MiB fp32, 32x the chunk_budget
    logits, tokens, mask = random_case(8, 1, length, vocab, 2.0, p_valid=1.0)
    for chunk_size, limit in ((None, chunk_budget), (64, 64 * 12 * vocab)):
        probe = TensorMemoryProbe([logits, tokens, mask])
        with probe:
            got = multi_temperature_loglik(
                logits, tokens, TEMPERATURES, mask, chunk_size=chunk_size
            ).loglik
        assert 0 < probe.largest <= limit / 2
        assert probe.peak_live <= limit + 64 * 1024  # + O(N K) per-token statistics
    want = reference_multi_temperature_loglik(logits, tokens, TEMPERATURES, mask)
    assert_close_to_reference(got, want, atol=1e-5)
    naive = TensorMemoryProbe([logits])
    with naive:
        torch.log_softmax(logits / 0.5, dim=-1)
    assert naive.peak_live >= 2 * logits.numel() * 4  # the probe sees [N, V] temporaries


GOOD = {
    "logits": torch.zeros(2, 3, 5),
    "tokens": torch.zeros(2, 3, dtype=torch.long),
    "temperatures": [0.5, 1.0],
}


@pytest.mark.parametrize(
    ("changes", "error", "pattern"),
    [
        ({"logits": torch.zeros(2, 3)}, ValueError, r"logits: expected shape \[B, L, V\]"),
        ({"logits": torch.zeros(2, 3, 0)}, ValueError, "V >= 1"),
        ({"logits": torch.zeros(2, 3, 5, dtype=torch.float64)}, TypeError, "got torch.float64"),
        ({"logits": [[0.0]]}, TypeError, "logits: expected a torch.Tensor"),
        ({"tokens": torch.zeros(2, 4, dtype=torch.long)}, ValueError, r"tokens: .*\[2, 3\]"),
        ({"tokens": torch.zeros(2, 3)}, TypeError, "tokens: expected dtype int64"),
        ({"tokens": torch.full((2, 3), 5)}, ValueError, r"\[0, 5\).*max 5"),
        ({"tokens": torch.full((2, 3), -1)}, ValueError, "min -1"),
        ({"temperatures": []}, ValueError, "at least one"),
        ({"temperatures": [1.0, 0.0]}, ValueError, r"temperatures\[1\].*> 0, got 0.0"),
        ({"temperatures": [-1.0]}, ValueError, "got -1.0"),
        ({"temperatures": [math.inf]}, ValueError, "finite"),
        ({"temperatures": [math.nan]}, ValueError, "finite"),
        ({"temperatures": 1.0}, TypeError, "sequence of floats"),
        ({"temperatures": torch.ones(2, 2)}, ValueError, "1-D"),
        ({"mask": torch.ones(3, 2, dtype=torch.bool)}, ValueError, r"mask: .*\[2, 3\]"),
        ({"mask": torch.ones(2, 3)}, TypeError, "mask: expected dtype bool"),
        ({"mask": torch.full((2, 3), 2)}, ValueError, r"\{0, 1\}"),
        ({"source_temperature": 0.0}, ValueError, "source_temperature"),
        ({"source_temperature": math.nan}, ValueError, "source_temperature"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"chunk_size": 2.5}, TypeError, "chunk_size"),
    ],
)
def test_invalid_inputs_raise_clear_errors(changes, error, pattern):
    with pytest.raises(error, match=pattern):
        multi_temperature_loglik(**{**GOOD, **changes})
