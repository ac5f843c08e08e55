"""Testbeds: rewards, held-out split, pass@k, model cache, SFT checkpoint cache."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from benchmarks.testbeds import TASKS, Addition, Countdown
from benchmarks.testbeds.evaluation import pass_at_k
from benchmarks.testbeds.model import TinyCausalLM, TinyLMConfig
from benchmarks.testbeds.sft import SFTConfig, config_key, eval_problems, load_or_train, train_pool


@pytest.mark.parametrize("name", sorted(TASKS))
def test_references_earn_reward_and_corruptions_do_not(name: str) -> None:
    task = TASKS[name]()
    problems = task.problems(50, seed=0)
    for p in problems:
        assert len(p.prompt) == task.prompt_len and len(p.reference) <= task.max_new_tokens
        assert task.score(p, p.reference[:-1]) == 1.0
        assert task.score(p, p.reference[:-2]) == 0.0
    ids = torch.tensor(
        [list(p.reference) + [0] * (task.max_new_tokens - len(p.reference)) for p in problems]
    )
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, p in enumerate(problems):
        mask[i, : len(p.reference)] = True
    assert task.rewards(problems, ids, mask).tolist() == [1.0] * 50
    mask[:, -1] = False
    no_eos = [p for p in problems if len(p.reference) == task.max_new_tokens]
    assert no_eos
    assert all(
        r == 0.0
        for r, p in zip(task.rewards(problems, ids, mask), problems, strict=True)
        if p in no_eos
    )


def test_addition_answers_are_the_sum() -> None:
    task = Addition()
    for p in task.problems(20, seed=1):
        a, b = p.numbers
        assert task.decode(p.reference[:-1]).replace(" ", "") == str(a + b)


def test_countdown_accepts_any_valid_expression_and_rejects_reuse() -> None:
    task = Countdown()
    p = next(q for q in task.problems(200, seed=2) if len(set(q.numbers[:4])) == 4)
    *nums, target = p.numbers
    solutions = 0
    for perm in itertools.permutations(nums):
        for ops in itertools.product("+-*", repeat=3):
            acc = perm[0]
            for op, d in zip(ops, perm[1:], strict=True):
                acc = acc + d if op == "+" else acc - d if op == "-" else acc * d
            expr = [str(perm[0])] + [
                s for pair in zip(ops, map(str, perm[1:]), strict=True) for s in pair
            ]
            assert task.score(p, task.encode(expr)) == float(acc == target)
            solutions += acc == target
    assert solutions >= 1
    reused = [str(nums[0])] + ["+", str(nums[0])] * 3
    assert task.score(p, task.encode(reused)) == 0.0  # the four numbers are distinct


@pytest.mark.parametrize("name", sorted(TASKS))
def test_eval_set_is_fixed_and_disjoint_from_training(name: str) -> None:
    task = TASKS[name]()
    cfg = SFTConfig(steps=1, pool_size=3000, eval_size=300)
    ev = eval_problems(task, 300)
    assert ev == eval_problems(task, 300)
    assert not {p.prompt for p in ev} & {p.prompt for p in train_pool(task, cfg)}


def test_pass_at_k_matches_the_combinatorial_definition() -> None:
    for n, c, k in [(10, 0, 1), (10, 3, 1), (10, 3, 4), (8, 7, 2), (16, 16, 8), (5, 1, 5)]:
        want = 1.0 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(want)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_tiny_lm_cache_matches_full_forward() -> None:
    torch.manual_seed(0)
    m = TinyCausalLM(TinyLMConfig(vocab_size=10, max_len=12)).eval()
    ids = torch.randint(0, 10, (3, 9))
    with torch.no_grad():
        full = m(ids).logits
        out = m(ids[:, :4], use_cache=True)
        mid = m(ids[:, 4:7], past_key_values=out.past_key_values, use_cache=True)
        last = m(ids[:, 7:], past_key_values=mid.past_key_values, use_cache=True)
    torch.testing.assert_close(
        torch.cat([out.logits, mid.logits, last.logits], 1), full, atol=1e-5, rtol=1e-5
    )
    with pytest.raises(ValueError, match="max_len"):
        m(torch.zeros(1, 13, dtype=torch.long))


def test_sft_checkpoint_is_cached_by_config(tmp_path: Path) -> None:
    task = Addition()
    cfg = SFTConfig(steps=3, pool_size=200, eval_size=20, batch_size=8)
    assert config_key(task, cfg) != config_key(
        task, SFTConfig(steps=4, pool_size=200, eval_size=20, batch_size=8)
    )
    first = load_or_train(task, cfg, tmp_path)
    (path,) = tmp_path.glob("addition-*.pt")
    stamp = path.stat().st_mtime_ns
    again = load_or_train(task, cfg, tmp_path)
    assert path.stat().st_mtime_ns == stamp
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
