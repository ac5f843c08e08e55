"""Edge inputs both kernels handle alike: L = 0, temperature bounds, natural scalar types,
float masks, unshifted logits and the CPU chunk workers."""

from __future__ import annotations

import math
import sys
import threading
import time

import numpy as np
import pytest
import torch

from tampo_core import TampoConfig, TempMetaPolicy
from tampo_core.loglik import (
    budget,
    contention,
    multi_temperature_loglik,
    multi_temperature_loglik_from_hidden,
    reference_multi_temperature_loglik,
    workers,
)
from tampo_core.loglik.memory_probe import TensorMemoryProbe
from tampo_core.validation import MAX_TEMPERATURE, MIN_TEMPERATURE

TEMPERATURES = (0.5, 1.0, 2.0)


def hidden_case(
    seed: int = 0, batch: int = 2, length: int = 5, width: int = 8, vocab: int = 17
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, length, width, generator=gen)
    weight = torch.randn(vocab, width, generator=gen)
    tokens = torch.randint(0, vocab, (batch, length), generator=gen)
    return hidden, weight, tokens


def logits_case(
    seed: int = 0, batch: int = 2, length: int = 5, vocab: int = 17
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=gen) * 2
    return logits, torch.randint(0, vocab, (batch, length), generator=gen)


def assert_no_valid_token(result, batch: int, k: int) -> None:
    assert result.loglik.shape == (batch, k) and result.loglik.dtype == torch.float32
    assert result.loglik.isnan().all()
    assert result.num_tokens.dtype == torch.int64
    assert torch.equal(result.num_tokens, torch.zeros(batch, dtype=torch.int64))


@pytest.mark.parametrize("masked", [False, True])
def test_zero_length_sequences_give_the_no_valid_token_result_in_both_kernels(masked):
    mask = torch.zeros(3, 0, dtype=torch.bool) if masked else None
    tokens = torch.zeros(3, 0, dtype=torch.long)
    from_logits = multi_temperature_loglik(torch.zeros(3, 0, 11), tokens, TEMPERATURES, mask)
    from_hidden = multi_temperature_loglik_from_hidden(
        torch.zeros(3, 0, 4), torch.zeros(11, 4), tokens, TEMPERATURES, mask
    )
    assert_no_valid_token(from_logits, 3, len(TEMPERATURES))
    assert_no_valid_token(from_hidden, 3, len(TEMPERATURES))


def test_all_masked_rows_match_zero_length_rows():
    logits, tokens = logits_case()
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    assert_no_valid_token(multi_temperature_loglik(logits, tokens, TEMPERATURES, mask), 2, 3)


def test_observe_on_zero_length_sequences_refuses_the_batch_and_keeps_the_state():
    policy = TempMetaPolicy(temperatures=TEMPERATURES, warmup_steps=0)
    before = policy.state_dict()
    with pytest.raises(ValueError, match="batch: expected at least one trajectory with a valid"):
        policy.observe(
            torch.zeros(2, 0, 11), [1.0, -1.0], tokens=torch.zeros(2, 0, dtype=torch.long)
        )
    assert policy.state_dict() == before


@pytest.mark.parametrize("temperature", [MIN_TEMPERATURE, MAX_TEMPERATURE])
def test_kernels_are_accurate_at_the_temperature_bounds(temperature):
    logits, tokens = logits_case()
    temps = (temperature, 1.0)
    want = reference_multi_temperature_loglik(logits, tokens, temps)
    got = multi_temperature_loglik(logits, tokens, temps).loglik
    assert got.isfinite().all()
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-6)
    hidden, weight, ids = hidden_case()
    logits_h = (hidden.double() @ weight.double().T).float()
    want_h = reference_multi_temperature_loglik(logits_h, ids, temps)
    got_h = multi_temperature_loglik_from_hidden(hidden, weight, ids, temps).loglik
    assert got_h.isfinite().all()
    torch.testing.assert_close(got_h.double(), want_h, atol=1e-5, rtol=1e-4)


OUTSIDE = [MIN_TEMPERATURE * 0.99, MAX_TEMPERATURE * 1.01, 3e-39, 1e-45]


@pytest.mark.parametrize("temperature", OUTSIDE)
def test_temperatures_just_outside_the_bounds_are_refused_everywhere(temperature):
    rule = r"expected a temperature in \[0.0001, 10000\]"
    with pytest.raises(ValueError, match=r"temperatures\[0\]: " + rule):
        TampoConfig(temperatures=(temperature, 1.0))
    logits, tokens = logits_case()
    with pytest.raises(ValueError, match=r"temperatures\[0\]: " + rule):
        multi_temperature_loglik(logits, tokens, (temperature, 1.0))
    hidden, weight, ids = hidden_case()
    with pytest.raises(ValueError, match=r"temperatures\[0\]: " + rule):
        multi_temperature_loglik_from_hidden(hidden, weight, ids, (temperature, 1.0))


def test_config_accepts_both_bounds():
    config = TampoConfig(temperatures=(MIN_TEMPERATURE, 1.0, MAX_TEMPERATURE))
    assert config.temperatures == (MIN_TEMPERATURE, 1.0, MAX_TEMPERATURE)


SCALARS = [np.float32(0.5), np.float64(0.5), torch.tensor(0.5), np.array(0.5)]
SIZES = [np.int64(2), np.int32(2), torch.tensor(2), np.array(2)]


@pytest.mark.parametrize("scale", SCALARS, ids=repr)
@pytest.mark.parametrize("size", SIZES, ids=repr)
def test_numpy_scalars_and_0d_tensors_are_accepted_like_python_numbers(scale, size):
    logits, tokens = logits_case()
    want = multi_temperature_loglik(logits, tokens, TEMPERATURES, None, 0.5, 2)
    got = multi_temperature_loglik(
        logits, tokens, TEMPERATURES, source_temperature=scale, chunk_size=size
    )
    assert torch.equal(got.loglik, want.loglik)
    hidden, weight, ids = hidden_case()
    want_h = multi_temperature_loglik_from_hidden(
        hidden, weight, ids, TEMPERATURES, logit_scale=0.5, chunk_size=2, vocab_block=2
    )
    got_h = multi_temperature_loglik_from_hidden(
        hidden, weight, ids, TEMPERATURES, logit_scale=scale, chunk_size=size, vocab_block=size
    )
    assert torch.equal(got_h.loglik, want_h.loglik)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("chunk_size", torch.tensor(2.0), TypeError),
        ("chunk_size", np.array([2]), TypeError),
        ("chunk_size", torch.tensor(True), TypeError),
        ("source_temperature", torch.tensor([0.5]), TypeError),
        ("source_temperature", np.array(np.nan), ValueError),
        ("source_temperature", torch.tensor(0.5, device="meta"), ValueError),
    ],
    ids=repr,
)
def test_ambiguous_scalars_are_still_refused(name, value, error):
    logits, tokens = logits_case()
    with pytest.raises(error, match=f"{name}: expected"):
        multi_temperature_loglik(logits, tokens, TEMPERATURES, **{name: value})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_float_masks_are_refused_with_the_fix_in_the_message(dtype):
    logits, tokens = logits_case()
    mask = torch.ones(tokens.shape, dtype=dtype)
    with pytest.raises(TypeError, match=r"mask: expected .*pass mask\.bool\(\).*got torch\."):
        multi_temperature_loglik(logits, tokens, TEMPERATURES, mask)
    hidden, weight, ids = hidden_case()
    with pytest.raises(TypeError, match=r"pass mask\.bool\(\)"):
        multi_temperature_loglik_from_hidden(hidden, weight, ids, TEMPERATURES, mask)
    assert torch.equal(
        multi_temperature_loglik(logits, tokens, TEMPERATURES, mask.bool()).loglik,
        multi_temperature_loglik(logits, tokens, TEMPERATURES).loglik,
    )


def test_unshifted_logits_get_a_hint_about_the_shift_in_both_kernels():
    logits, tokens = logits_case(length=6)
    with pytest.raises(ValueError) as caught:
        multi_temperature_loglik(logits, tokens[:, 1:], TEMPERATURES)
    message = str(caught.value)
    assert message.startswith("tokens: expected shape [B, L] = [2, 6] like logits, got [2, 5]")
    assert "position t of logits must score tokens[:, t]" in message
    assert "pass logits[:, :-1]" in message
    hidden, weight, ids = hidden_case(length=6)
    with pytest.raises(ValueError) as caught:
        multi_temperature_loglik_from_hidden(hidden, weight, ids[:, 1:], TEMPERATURES)
    message = str(caught.value)
    assert "position t of hidden must score tokens[:, t]" in message
    assert "pass hidden[:, :-1]" in message
    # The shifted call is the fix the message names.
    fixed = multi_temperature_loglik(logits[:, :-1], tokens[:, 1:], TEMPERATURES)
    assert fixed.num_tokens.tolist() == [5, 5]


def test_tokens_of_another_length_get_no_shift_hint():
    logits, tokens = logits_case(length=6)
    with pytest.raises(ValueError, match=r"got \[2, 3\]$"):
        multi_temperature_loglik(logits, tokens[:, :3], TEMPERATURES)


@pytest.fixture
def two_threads(monkeypatch):
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(workers, "MIN_PARALLEL_ELEMENTS", 1)
    yield
    torch.set_num_threads(saved)


def test_chunk_workers_are_allowed_only_where_they_can_help(two_threads, monkeypatch):
    cpu, chunk_bytes = torch.device("cpu"), 4096 * 8
    assert workers.chunk_workers(cpu, 120, 120 * 4096, chunk_bytes) == 2
    assert workers.chunk_workers(cpu, 1, 4096, chunk_bytes) == 1
    assert workers.chunk_workers(torch.device("meta"), 120, 120 * 4096, chunk_bytes) == 1
    over_half = budget.CHUNK_BUDGET_BYTES // 2 + 1  # the budget holds one chunk's buffers
    assert workers.chunk_workers(cpu, 120, 120 * 4096, over_half) == 1
    with TensorMemoryProbe([]):  # a dispatch mode must see every op: caller thread only
        assert workers.chunk_workers(cpu, 120, 120 * 4096, chunk_bytes) == 1
    monkeypatch.setattr(workers, "MIN_PARALLEL_ELEMENTS", 1 << 20)
    assert workers.chunk_workers(cpu, 120, 120 * 4096, chunk_bytes) == 1


@pytest.mark.parametrize("schedule", ["workers", "auto"])
def test_cpu_chunk_workers_match_the_calling_thread_and_keep_its_thread_count(
    two_threads, monkeypatch, schedule
):
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 40, 4096, generator=gen).mul_(3).bfloat16()
    tokens = torch.randint(0, 4096, (3, 40), generator=gen)
    mask = torch.rand(3, 40, generator=gen) < 0.8
    monkeypatch.setattr(workers, "SCHEDULE", schedule)
    monkeypatch.setattr(workers, "_decision", ("caller", 0.0))
    monkeypatch.setattr(contention, "LOST_SHARE", -1.0)  # auto: every window is "contended"
    threaded = multi_temperature_loglik(logits, tokens, TEMPERATURES, mask, chunk_size=1)
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(workers, "SCHEDULE", "caller")
    serial = multi_temperature_loglik(logits, tokens, TEMPERATURES, mask, chunk_size=1)
    assert torch.equal(threaded.loglik, serial.loglik)
    assert torch.equal(threaded.num_tokens, serial.num_tokens)
    want = reference_multi_temperature_loglik(logits, tokens, TEMPERATURES, mask)
    torch.testing.assert_close(threaded.loglik.double(), want, atol=1e-5, rtol=0)


def test_cpu_chunk_workers_in_the_hidden_kernel_match_the_calling_thread(two_threads, monkeypatch):
    hidden, weight, tokens = hidden_case(seed=4, batch=3, length=30, width=16, vocab=300)
    hidden.requires_grad_(True)
    monkeypatch.setattr(workers, "SCHEDULE", "workers")
    threaded = multi_temperature_loglik_from_hidden(
        hidden, weight, tokens, TEMPERATURES, chunk_size=4, vocab_block=64
    )
    assert not threaded.loglik.requires_grad  # no autograd graph in the worker threads either
    monkeypatch.setattr(workers, "SCHEDULE", "caller")
    serial = multi_temperature_loglik_from_hidden(
        hidden, weight, tokens, TEMPERATURES, chunk_size=4, vocab_block=64
    )
    assert torch.equal(threaded.loglik, serial.loglik)


def _recorder(ran: list[tuple[int, str]]):
    def make_worker():
        def work(index: int) -> None:
            ran.append((index, threading.current_thread().name))

        return work

    return make_worker


def _on_caller(ran: list[tuple[int, str]]) -> list[int]:
    return sorted(index for index, name in ran if name == threading.current_thread().name)


class _Loss:
    """Stands in for ``contention.LostTime``: ``contended()`` answers from ``self.answers``."""

    def __init__(self, answers: list[bool], process_wide: bool = True) -> None:
        self.answers, self.process_wide = answers, process_wide

    def restart(self) -> None:
        pass

    def contended(self) -> bool:
        return self.answers.pop(0) if self.answers else False


@pytest.fixture
def auto(monkeypatch):
    monkeypatch.setattr(workers, "SCHEDULE", "auto")
    monkeypatch.setattr(workers, "_decision", ("caller", 0.0))

    def losses(*answers: bool, process_wide: bool = True) -> None:
        monkeypatch.setattr(workers, "LostTime", lambda: _Loss(list(answers), process_wide))

    return losses


def test_auto_moves_to_the_workers_after_a_contended_window_and_back_when_it_ends(auto):
    auto(False, True, True)  # window 1 fine, window 2 contended; the workers' part contended
    ran: list[tuple[int, str]] = []
    workers.run_chunks(40, 2, _recorder(ran))
    assert sorted(index for index, _ in ran) == list(range(40))
    assert _on_caller(ran) == list(range(2 * workers.CHECK_CHUNKS))
    assert workers._decision == ("workers", math.inf)
    auto(True)  # still contended: the workers keep the next call
    ran.clear()
    workers.run_chunks(40, 2, _recorder(ran))
    assert _on_caller(ran) == [] and workers._decision[0] == "workers"
    auto(False)  # a quiet call on the workers hands the next one back
    workers.run_chunks(40, 2, _recorder(ran))
    assert workers._decision[0] == "caller"
    ran.clear()
    workers.run_chunks(40, 2, _recorder(ran))
    assert _on_caller(ran) == list(range(40))


def test_auto_stays_on_the_calling_thread_while_no_window_is_contended(auto):
    auto()
    ran: list[tuple[int, str]] = []
    workers.run_chunks(40, 2, _recorder(ran))
    assert _on_caller(ran) == list(range(40)) and workers._decision[0] == "caller"


def test_without_process_wide_counters_the_workers_keep_a_timed_window(auto, monkeypatch):
    auto(True, process_wide=False)
    ran: list[tuple[int, str]] = []
    workers.run_chunks(40, 2, _recorder(ran))
    assert _on_caller(ran) == list(range(workers.CHECK_CHUNKS))
    schedule, until = workers._decision
    assert schedule == "workers" and 0 < until - time.monotonic() <= workers.DECISION_SECONDS
    monkeypatch.setattr(workers, "_decision", ("workers", time.monotonic() - 1))  # expired
    ran.clear()
    auto(process_wide=False)
    workers.run_chunks(40, 2, _recorder(ran))
    assert _on_caller(ran) == list(range(40))


def test_lost_time_reads_run_queue_waits_and_sees_a_busy_thread_lose_nothing() -> None:
    lost = contention.LostTime()
    assert lost.process_wide == (sys.platform == "linux")
    deadline = time.perf_counter() + 0.05
    while time.perf_counter() < deadline:
        pass
    assert 0.0 <= lost.share() < 1.0


def test_an_error_in_a_worker_reaches_the_caller_and_the_pool_keeps_working(monkeypatch):
    monkeypatch.setattr(workers, "SCHEDULE", "workers")
    done: list[int] = []

    def make_worker():
        def work(index: int) -> None:
            if index == 5:
                raise RuntimeError("chunk 5 failed")
            done.append(index)

        return work

    with pytest.raises(RuntimeError, match="chunk 5 failed"):
        workers.run_chunks(40, 2, make_worker)
    done.clear()
    workers.run_chunks(40, 2, lambda: done.append)
    assert sorted(done) == list(range(40))
