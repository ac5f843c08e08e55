"""grpo_update feeds TempMetaPolicy from the loss pass: zero extra forward passes."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

import tampo_core as tc
from tampo_core.adapters.torch_loop import (
    Rollout,
    TemperaturePolicy,
    completion_logits,
    group_advantages,
    grpo_update,
    sample_completions,
)
from tests.adapters.torch_loop.models import CachedLM, cached_lm

G = 4


class SpyPolicy:
    """Records what observe receives."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def sample(self) -> float:
        return 1.0

    def observe(
        self,
        logits_or_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        *,
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        source_temperature: float = 1.0,
    ) -> None:
        self.seen.append(
            {
                "logits": logits_or_logprobs,
                "adv": advantages,
                "tokens": tokens,
                "mask": mask,
                "t_src": source_temperature,
            }
        )


def _setup(seed: int = 0) -> tuple[CachedLM, torch.Tensor, Rollout, torch.Tensor]:
    model = cached_lm(seed, vocab=12).train()
    prompts = torch.randint(2, 12, (3, 5), generator=torch.Generator().manual_seed(1))
    prompt_ids = prompts.repeat_interleave(G, dim=0)
    rollout = sample_completions(
        model,
        prompt_ids,
        temperature=1.3,
        max_new_tokens=6,
        eos_token_id=1,
        generator=torch.Generator().manual_seed(2),
    )
    rewards = (rollout.completion_ids[:, 0] % 2).float()
    rewards[0] = 1.0 - rewards[1]  # at least one group with reward variance
    adv = group_advantages(rewards, G)
    return model, prompt_ids, rollout, adv


def _count_forwards(model: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def test_update_with_tampo_makes_exactly_the_forwards_of_plain_grpo() -> None:
    counts = []
    for policy in (None, tc.TempMetaPolicy(warmup_steps=0, seed=0)):
        model, prompt_ids, rollout, adv = _setup()
        calls = _count_forwards(model)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        grpo_update(model, opt, prompt_ids, rollout, adv, 1.3, temperature_policy=policy)
        counts.append(len(calls))
        if policy is not None:
            assert policy.num_updates == 1
    assert counts == [1, 1]


def test_observe_gets_the_pre_update_raw_logits_of_the_loss_pass() -> None:
    model, prompt_ids, rollout, adv = _setup()
    before = copy.deepcopy(model)
    spy = SpyPolicy()
    assert isinstance(spy, TemperaturePolicy)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    grpo_update(model, opt, prompt_ids, rollout, adv, 1.3, temperature_policy=spy)
    (seen,) = spy.seen
    with torch.no_grad():
        want = completion_logits(before, prompt_ids, rollout.completion_ids)
        after = completion_logits(model, prompt_ids, rollout.completion_ids)
    assert not seen["logits"].requires_grad and seen["t_src"] == 1.0
    torch.testing.assert_close(seen["logits"], want)
    assert (after - want).abs().max() > 1e-4  # the optimiser did move the model
    assert torch.equal(seen["tokens"], rollout.completion_ids)
    assert torch.equal(seen["mask"], rollout.completion_mask)
    assert torch.equal(seen["adv"], adv)


def test_tampo_state_equals_a_direct_observe_on_the_same_logits() -> None:
    model, prompt_ids, rollout, adv = _setup()
    with torch.no_grad():
        logits = completion_logits(copy.deepcopy(model), prompt_ids, rollout.completion_ids)
    direct = tc.TempMetaPolicy(warmup_steps=0, seed=0)
    direct.observe(logits, adv, tokens=rollout.completion_ids, mask=rollout.completion_mask)
    glued = tc.TempMetaPolicy(warmup_steps=0, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = grpo_update(model, opt, prompt_ids, rollout, adv, 1.3, temperature_policy=glued)
    np.testing.assert_allclose(glued.ema, direct.ema, rtol=1e-6, atol=1e-9)
    assert np.abs(glued.ema).max() > 0.0
    assert isinstance(stats.observed, tc.ObserveStats)


def test_non_finite_loss_raises_before_touching_model_or_policy() -> None:
    model, prompt_ids, rollout, adv = _setup()
    before = copy.deepcopy(model.state_dict())
    policy = tc.TempMetaPolicy(warmup_steps=0, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    bad = adv.clone()
    bad[0] = float("inf")
    with pytest.raises(ValueError, match="policy loss is"):
        grpo_update(model, opt, prompt_ids, rollout, bad, 1.3, temperature_policy=policy)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])
    assert policy.num_updates == 0 and not opt.state
