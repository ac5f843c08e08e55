"""Every option method builds and runs GRPO steps through the torch-loop helpers."""

from __future__ import annotations

import pytest
import torch

from benchmarks import option_support
from benchmarks.option_methods import (
    OPTION_METHODS,
    BucketedTampo,
    make_option_policy,
    needs_rewards,
    step_temperature,
    support_size,
)
from benchmarks.suite import SFT
from benchmarks.testbeds import TASKS
from benchmarks.testbeds.sft import build_model
from tampo_core import TempMetaPolicy
from tampo_core.adapters.torch_loop import group_advantages, grpo_update, sample_completions
from tampo_core.adaptive_grid import AdaptiveGridTempMetaPolicy
from tests.adapters.torch_loop.models import cached_lm

G = 4


@pytest.mark.parametrize("method", OPTION_METHODS)
def test_option_method_runs_steps_end_to_end(method: str) -> None:
    policy = make_option_policy(method, warmup_steps=1, seed=0)
    assert isinstance(policy, (TempMetaPolicy, BucketedTampo, AdaptiveGridTempMetaPolicy))
    model = cached_lm(0, 12).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    for step in range(3):
        keys = [step, step + 1, 7]
        prompt_ids = torch.randint(2, 12, (3, 4), generator=gen).repeat_interleave(G, dim=0)
        temperature = step_temperature(policy, keys, G)
        rollout = sample_completions(
            model, prompt_ids, temperature=temperature, max_new_tokens=5, eos_token_id=1
        )
        rewards = (rollout.completion_ids[:, 0] % 2).float()
        adv = group_advantages(rewards, G)
        stats = grpo_update(
            model,
            opt,
            prompt_ids,
            rollout,
            adv,
            temperature,
            temperature_policy=policy,
            rewards=rewards if needs_rewards(policy) else None,
        )
        assert 1.0 <= support_size(stats.observed) <= 10.0
    if isinstance(policy, BucketedTampo):
        assert policy.policy.num_updates() == 3
        assert [key for key, _ in policy.bucketer.state_dict()["rates"]] == [0, 1, 7, 2, 3]
        assert isinstance(temperature, torch.Tensor) and temperature.shape == (3 * G,)


def test_unknown_option_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method: expected one of"):
        make_option_policy("tampo-x1000", warmup_steps=0, seed=0)


def test_support_probe_rows_on_an_untrained_model(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "addition"
    untrained = build_model(TASKS[name](), SFT[name]).eval()
    monkeypatch.setattr(option_support, "_cached_sft", lambda _: untrained)
    rows = {row["method"]: row for row in option_support.probe(name, seed=0)}
    assert set(rows) == {"tampo", "tampo-sum", "tampo-x10", "tampo-x100", "tampo-batchbase"}
    for row in rows.values():
        assert 1.0 <= row["support_size"] <= 10.0 and 0.0 <= row["invisible_fraction"] <= 1.0
    assert rows["tampo-x100"]["support_size"] <= rows["tampo-x10"]["support_size"]
    assert rows["tampo-x10"]["support_size"] <= rows["tampo"]["support_size"]
    assert rows["tampo-batchbase"]["support_size"] == rows["tampo"]["support_size"]
