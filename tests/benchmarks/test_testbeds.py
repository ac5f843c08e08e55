"""Testbeds: rewards, held-out split, pass@k, model cache, SFT checkpoint cache."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.testbed_stats import rollout_stats, start_statistics
from benchmarks.testbeds import (
    TASKS,
    Addition,
    Countdown,
    LoopAddition,
    MixedAddition,
    ShapedAddition,
    SurfaceAddition,
    WrongModeAddition,
)
from benchmarks.testbeds.evaluation import pass_at_k, truncated
from benchmarks.testbeds.model import TinyCausalLM, TinyLMConfig
from benchmarks.testbeds.sft import SFTConfig, config_key, eval_problems, load_or_train, train_pool
from tampo_core import PAPER_TEMPERATURES


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
    for i, p in enumerate(problems):  # the same tokens without their <eos>: truncated, reward 0
        mask[i, len(p.reference) - 1] = False
    assert task.rewards(problems, ids, mask).tolist() == [0.0] * 50


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


def test_surface_variants_do_not_change_correctness() -> None:
    task = SurfaceAddition()
    assert task.vocab_size >= 500
    rng = np.random.default_rng(0)
    for p in task.problems(30, seed=3):
        ref = task.sft_reference(p, rng)
        assert ref[-1] == task.eos_id and task.score(p, ref[:-1]) == 1.0
        digits = str(sum(p.numbers))
        for j in (1, 17, 49):
            variant = [task.ids[f"{d}~{j}"] for d in digits]
            assert task.score(p, variant) == 1.0
        wrong = str(sum(p.numbers) + 1)
        assert task.score(p, [task.ids[f"{d}~3"] for d in wrong]) == 0.0
    picks = [task.sft_reference(p, rng)[0] for p in task.problems(2000, seed=4)]
    canonical = np.mean([t in task.variant_ids[int(task.digit_of[t])][:1] for t in picks])
    assert canonical == pytest.approx(task.variant_probs[0], abs=0.04)  # Zipf(1) over 50


def test_wrong_mode_drops_the_carry_on_carry_problems_only() -> None:
    task = WrongModeAddition()
    rng = np.random.default_rng(1)
    wrong = {True: [], False: []}
    for p in task.problems(3000, seed=5):
        ref = task.sft_reference(p, rng)
        trap = ShapedAddition.is_trap(*p.numbers)
        wrong[trap].append(task.score(p, ref[:-1]) == 0.0)
        if task.score(p, ref[:-1]) == 0.0:
            assert task.decode(ref[:-1]).replace(" ", "") == str(sum(p.numbers) - 10)
    assert not any(wrong[False])
    assert np.mean(wrong[True]) == pytest.approx(0.75, abs=0.03)
    assert 0.4 < len(wrong[True]) / 3000 < 0.5


def test_loop_references_repeat_to_the_cap_without_eos_and_earn_nothing() -> None:
    task = LoopAddition()
    rng = np.random.default_rng(2)
    problems = task.problems(2000, seed=6)
    refs = [task.sft_reference(p, rng) for p in problems]
    loops = [len(r) == task.max_new_tokens and task.eos_id not in r for r in refs]
    prone = [ShapedAddition.is_loop_prone(p.numbers[0]) for p in problems]
    assert not any(lp and not pr for lp, pr in zip(loops, prone, strict=True))
    assert np.mean([lp for lp, pr in zip(loops, prone, strict=True) if pr]) == pytest.approx(
        0.7, abs=0.04
    )
    looped = [(p, r) for p, r, lp in zip(problems, refs, loops, strict=True) if lp][:20]
    ids = torch.tensor([r for _, r in looped])
    mask = torch.ones_like(ids, dtype=torch.bool)
    stats = rollout_stats(task, [p for p, _ in looped], ids, mask)
    assert stats == {"reward": 0.0, "truncation": 1.0, "loop": 1.0}
    assert truncated(task, ids, mask).all()


def test_shaped_addition_rejects_bad_knobs() -> None:
    with pytest.raises(ValueError, match="trap_prob"):
        ShapedAddition(trap_prob=1.5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        ShapedAddition(max_new_tokens=3)
    assert MixedAddition().params["n_variants"] == 50


def test_start_statistics_measure_curve_support_and_trap_subset(tmp_path: Path) -> None:
    task = MixedAddition()
    model = load_or_train(task, SFTConfig(steps=30, pool_size=300, eval_size=40), tmp_path)
    stats = start_statistics(task, model, eval_problems(task, 40), samples=2)
    assert set(stats["by_temperature"]) == {f"{t:g}" for t in PAPER_TEMPERATURES}
    assert 1.0 <= stats["support_size"] <= stats["K"] == 10
    assert sum(stats["argmax_T_histogram"]) == 80
    for s in (stats["greedy"], *stats["by_temperature"].values()):
        assert 0.0 <= s["loop"] <= s["truncation"] <= 1.0 and 0.0 <= s["reward"] <= 1.0
        assert "reward_on_trap" in s
    assert 0.2 < stats["trap_fraction"] < 0.7
