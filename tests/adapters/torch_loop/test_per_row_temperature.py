"""One temperature per row, end to end: sampling, the loss, and observe into the contextual
policy (per-prompt temperatures)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import tampo_core as tc
from tampo_core.adapters.torch_loop import (
    completion_logits,
    group_advantages,
    grpo_update,
    policy_loss,
    sample_completions,
    token_logprobs,
)
from tampo_core.adapters.torch_loop.temperature import group_temperatures
from tampo_core.contextual import ContextualObserveStats, ContextualTempMetaPolicy
from tests.adapters.torch_loop.models import cached_lm

EOS, VOCAB, G = 1, 11, 4


def _prompts(b: int = 6, p: int = 5) -> torch.Tensor:
    return torch.randint(2, VOCAB, (b, p), generator=torch.Generator().manual_seed(1))


def _sample(temperature: float | torch.Tensor, prompts: torch.Tensor, cache: bool = True):
    return sample_completions(
        cached_lm(0, VOCAB),
        prompts,
        temperature=temperature,
        max_new_tokens=8,
        eos_token_id=EOS,
        use_cache=cache,
        generator=torch.Generator().manual_seed(3),
    )


@pytest.mark.parametrize("t", [0.7, 1.5])
@pytest.mark.parametrize("cache", [True, False])
def test_a_row_tensor_of_one_value_samples_exactly_the_scalar_rollout(t: float, cache) -> None:
    prompts = _prompts()
    scalar = _sample(t, prompts, cache)
    rows = _sample(torch.full((6,), t, dtype=torch.float64), prompts, cache)
    assert torch.equal(scalar.completion_ids, rows.completion_ids)
    assert torch.equal(scalar.completion_mask, rows.completion_mask)


def test_each_row_follows_softmax_of_its_own_temperature() -> None:
    model = cached_lm(0, VOCAB)
    n = 4000
    prompt = _prompts(1).repeat(2 * n, 1)
    temps = torch.tensor([0.5] * n + [2.0] * n)
    out = sample_completions(
        model,
        prompt,
        temperature=temps,
        max_new_tokens=1,
        eos_token_id=EOS,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        z = model(prompt[:1]).logits[0, -1]
    for half, t in ((slice(0, n), 0.5), (slice(n, 2 * n), 2.0)):
        freq = torch.bincount(out.completion_ids[half, 0], minlength=VOCAB).float() / n
        assert (freq - torch.softmax(z / t, -1)).abs().max() < 0.03
    assert (torch.softmax(z / 0.5, -1) - torch.softmax(z / 2.0, -1)).abs().max() > 0.1


def test_zero_rows_are_greedy_among_sampled_rows() -> None:
    prompts = _prompts()
    greedy = _sample(0.0, prompts)
    mixed = _sample(torch.tensor([0.0, 1.3, 0.0, 1.3, 0.0, 1.3]), prompts)
    for row in (0, 2, 4):
        assert torch.equal(mixed.completion_ids[row], greedy.completion_ids[row])


@pytest.mark.parametrize(
    ("temperature", "error", "match"),
    [
        (torch.ones(5), ValueError, r"temperature: expected a float or a 1-D tensor \[B\] = \[6\]"),
        (torch.ones(6, 1), ValueError, "temperature: expected a float or a 1-D tensor"),
        (torch.tensor([1.0, -1, 1, 1, 1, 1]), ValueError, r"temperature\[1\]: expected 0"),
        (torch.tensor([1.0, 1, float("nan"), 1, 1, 1]), ValueError, r"temperature\[2\]"),
        (torch.ones(6, dtype=torch.bool), TypeError, "temperature: expected a real-valued"),
    ],
)
def test_bad_row_temperatures_are_refused(temperature, error, match) -> None:
    with pytest.raises(error, match=match):
        _sample(temperature, _prompts())


def _batch(seed: int = 0, b: int = 5, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, n, 9, generator=g) * 2.0
    tokens = torch.randint(0, 9, (b, n), generator=g)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, 3:] = False
    return logits, tokens, mask, torch.randn(b, generator=g)


def test_loss_scores_each_row_at_its_own_temperature() -> None:
    logits, tokens, mask, adv = _batch()
    temps = torch.tensor([0.6, 0.9, 1.0, 1.2, 1.5])
    per_row = token_logprobs(logits, tokens, temps)
    for i, t in enumerate(temps.tolist()):
        torch.testing.assert_close(
            per_row[i], token_logprobs(logits[i : i + 1], tokens[i : i + 1], t)[0]
        )
    z = logits.clone().requires_grad_(True)
    policy_loss(z, tokens, mask, adv, temps).loss.backward()
    z_ref = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(z_ref / temps[:, None, None], -1).gather(-1, tokens[..., None])[..., 0]
    (-(adv[:, None] * logp * mask).sum() / mask.sum()).backward()
    torch.testing.assert_close(z.grad, z_ref.grad, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match=r"temperature\[0\]: expected a temperature"):
        policy_loss(logits, tokens, mask, adv, torch.tensor([0.0, 1, 1, 1, 1]))


def test_group_temperatures_repeat_each_group_over_its_rows() -> None:
    assert group_temperatures([0.6, 1.5], 3).tolist() == pytest.approx([0.6] * 3 + [1.5] * 3)
    with pytest.raises(ValueError, match="group_size: expected an int >= 1"):
        group_temperatures([1.0], 0)


def test_per_prompt_step_end_to_end_with_one_forward_and_contextual_observe() -> None:
    model = cached_lm(0, 12).train()
    prompts = torch.randint(2, 12, (3, 5), generator=torch.Generator().manual_seed(1))
    prompt_ids = prompts.repeat_interleave(G, dim=0)
    cfg = tc.TampoConfig(warmup_steps=0, seed=1)
    policy = ContextualTempMetaPolicy(["easy", "hard"], config=cfg, min_bucket_updates=0)
    group_buckets = ["easy", "hard", "hard"]
    temps = group_temperatures(policy.sample(group_buckets), G)
    rollout = sample_completions(
        model,
        prompt_ids,
        temperature=temps,
        max_new_tokens=6,
        eos_token_id=1,
        generator=torch.Generator().manual_seed(2),
    )
    rewards = (rollout.completion_ids[:, 0] % 2).float()
    rewards[0] = 1.0 - rewards[1]
    adv = group_advantages(rewards, G)
    row_buckets = [b for b in group_buckets for _ in range(G)]
    with torch.no_grad():
        logits = completion_logits(copy.deepcopy(model), prompt_ids, rollout.completion_ids)
    direct = ContextualTempMetaPolicy(["easy", "hard"], config=cfg, min_bucket_updates=0)
    direct.observe(
        logits,
        adv,
        tokens=rollout.completion_ids,
        mask=rollout.completion_mask,
        buckets=row_buckets,
    )
    calls: list[int] = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = grpo_update(
        model, opt, prompt_ids, rollout, adv, temps, temperature_policy=policy, buckets=row_buckets
    )
    assert calls == [1]
    assert isinstance(stats.observed, ContextualObserveStats)
    assert stats.observed.buckets["easy"].num_trajectories == G
    assert stats.observed.buckets["hard"].num_trajectories == 2 * G
    for label in (None, "easy", "hard"):
        np.testing.assert_allclose(policy.ema(label), direct.ema(label), rtol=1e-6, atol=1e-9)
    assert np.abs(policy.ema("hard")).max() > 0.0
    with pytest.raises(ValueError, match=r"buckets: expected \[B\] = \[12\] labels"):
        grpo_update(
            model, opt, prompt_ids, rollout, adv, temps, temperature_policy=policy, buckets=["easy"]
        )
    assert len(calls) == 1  # refused before the model was called


def test_batch_baseline_rewards_reach_observe() -> None:
    model = cached_lm(0, 12).train()
    prompt_ids = torch.randint(2, 12, (2, 5), generator=torch.Generator().manual_seed(1))
    prompt_ids = prompt_ids.repeat_interleave(G, dim=0)
    rollout = sample_completions(
        model, prompt_ids, temperature=1.0, max_new_tokens=4, eos_token_id=1
    )
    rewards = torch.tensor([1.0] * G + [0.0] * G)  # every group all-equal: GRPO advantages 0
    adv = group_advantages(rewards, G)
    policy = tc.TempMetaPolicy(config=tc.TampoConfig(meta_advantage="batch_baseline"))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = grpo_update(
        model, opt, prompt_ids, rollout, adv, 1.0, temperature_policy=policy, rewards=rewards
    )
    assert not adv.any() and np.abs(stats.observed.batch_advantage).max() > 0.0
