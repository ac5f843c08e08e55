"""What the meta-policy sees from OpenRLHF's real estimators, and the join with likelihoods.

OpenRLHF's own ``compute_advantages_and_returns`` runs on hand-built experiences; the
meta-policy's signal (``advantages.meta_advantages``) is compared with its first-token advantage
and with the group advantage of the outcome reward computed here from the definition."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip(
    "openrlhf", reason="openrlhf is not installed (scripts/ci/install-openrlhf.sh installs it)"
)

from openrlhf.trainer.ppo_utils.experience import Experience
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController

from tampo_core.adapters.openrlhf import _seam
from tampo_core.adapters.openrlhf.action_loglik import sequence_key
from tampo_core.adapters.openrlhf.advantages import (
    advantage_signal,
    first_token_advantages,
    meta_advantages,
)
from tampo_core.adapters.openrlhf.join import join_loglik
from tampo_core.loglik import TemperatureLoglik
from tests.adapters.openrlhf.testkit import cli_args, ppo_argv

N_SAMPLES, PROMPTS, ACTIONS = 4, 2, 6
GROUP_ESTIMATORS = ("group_norm", "dr_grpo", "rloo", "reinforce_baseline", "flash_reinforce")
REWARDS = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.25, 1.0, 0.0])


@pytest.fixture(scope="module")
def args_by_estimator() -> dict:
    return {
        estimator: cli_args(ppo_argv(estimator, **{"--rollout.micro_batch_size": "4"}))
        for estimator in GROUP_ESTIMATORS
    }


def _experiences(rewards: torch.Tensor, kl: torch.Tensor | None = None) -> list[Experience]:
    """Two micro-batches of four samples, ragged action masks, original order interleaved."""
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([6, 3, 5, 1, 4, 6, 2, 5])
    order = [[0, 5, 2, 7], [4, 1, 6, 3]]
    experiences = []
    for indices in order:
        action_mask = torch.arange(ACTIONS)[None, :] < lengths[indices][:, None]
        experiences.append(
            Experience(
                sequences=torch.randint(3, 64, (4, ACTIONS + 3), generator=generator),
                attention_mask=torch.ones(4, ACTIONS + 3, dtype=torch.long),
                action_mask=action_mask,
                rewards=rewards[indices].clone(),
                kl=torch.zeros(4, ACTIONS) if kl is None else kl[indices] * action_mask,
                index=list(indices),
                info={},
            )
        )
    return experiences


def _advantages(args, experiences, kl_coef: float = 0.0) -> torch.Tensor:
    maker = RemoteExperienceMaker(
        None, None, None, None, FixedKLController(kl_coef), SimpleNamespace(args=args), None
    )
    experiences = maker.compute_advantages_and_returns(experiences)
    got = torch.empty(PROMPTS * N_SAMPLES)
    for experience in experiences:
        got[experience.index] = first_token_advantages(
            experience.advantages, experience.action_mask
        )
    return got


def _meta(args, experiences) -> torch.Tensor:
    """The meta-policy's signal, after OpenRLHF computed the batch, in original sample order."""
    settings = _seam.advantage_settings(args)
    values = meta_advantages(experiences, advantage_signal(settings), settings)
    indices = [i for experience in experiences for i in experience.index]
    got = torch.empty(PROMPTS * N_SAMPLES)
    got[indices] = values
    return got


def _expected(estimator: str, rewards: torch.Tensor) -> torch.Tensor:
    grouped = rewards.view(PROMPTS, N_SAMPLES)
    mean = grouped.mean(-1, keepdim=True)
    if estimator == "group_norm":
        return ((grouped - mean) / (grouped.std(-1, keepdim=True) + 1e-9)).flatten()
    if estimator == "dr_grpo":
        return (grouped - mean).flatten()
    if estimator == "rloo":
        return (grouped - (grouped.sum(-1, keepdim=True) - grouped) / (N_SAMPLES - 1)).flatten()
    if estimator == "flash_reinforce":
        return (grouped - grouped.mean()).flatten()
    raise AssertionError(estimator)


@pytest.mark.parametrize("estimator", ["group_norm", "dr_grpo", "rloo", "flash_reinforce"])
def test_group_estimators_give_the_shaped_reward(args_by_estimator, estimator):
    rewards = REWARDS.clone()
    got = _advantages(args_by_estimator[estimator], _experiences(rewards))
    torch.testing.assert_close(got, _expected(estimator, rewards))


@pytest.mark.parametrize("estimator", ["group_norm", "dr_grpo", "rloo", "flash_reinforce"])
def test_meta_signal_is_openrlhf_first_token_advantage_without_kl(args_by_estimator, estimator):
    args = args_by_estimator[estimator]
    experiences = _experiences(REWARDS.clone())
    first_token = _advantages(args, experiences)
    assert torch.equal(_meta(args, experiences), first_token), "bit for bit"


@pytest.mark.parametrize("estimator", GROUP_ESTIMATORS)
def test_meta_signal_is_the_outcome_group_advantage_whatever_the_kl(args_by_estimator, estimator):
    args = args_by_estimator[estimator]
    kl = torch.rand(PROMPTS * N_SAMPLES, ACTIONS, generator=torch.Generator().manual_seed(2))
    experiences = _experiences(REWARDS.clone(), kl)
    first_token = _advantages(args, experiences, kl_coef=0.1)
    outcome = "dr_grpo" if estimator == "reinforce_baseline" else estimator
    expected = _expected(outcome, REWARDS.clone())
    torch.testing.assert_close(_meta(args, experiences), expected)
    assert (first_token - expected).abs().max() > 1e-2, "OpenRLHF's own advantage differs"
    signal = advantage_signal(_seam.advantage_settings(args))
    assert signal.outcome_group and "KL penalty" in signal.description


def test_meta_signal_clips_the_shaped_reward_like_openrlhf():
    argv = ppo_argv("dr_grpo", **{"--rollout.micro_batch_size": "4"})
    args = cli_args([*argv, "--reward.clip_range", "-0.3", "0.3"])
    experiences = _experiences(REWARDS.clone())
    first_token = _advantages(args, experiences)
    assert first_token.abs().max() == pytest.approx(0.3)
    assert torch.equal(_meta(args, experiences), first_token)


@pytest.mark.parametrize(
    ("estimator", "flags", "words"),
    [
        ("gae", {"--critic.model_name_or_path": "critic"}, "whitened GAE"),
        ("reinforce", {"--algo.advantage.gamma": "0.9"}, "gamma = 0.9"),
    ],
)
def test_estimators_without_a_group_advantage_say_what_the_meta_policy_gets(
    estimator, flags, words
):
    args = cli_args(ppo_argv(estimator, **{"--rollout.micro_batch_size": "4", **flags}))
    signal = advantage_signal(_seam.advantage_settings(args))
    assert not signal.outcome_group
    assert words in signal.description and "KL penalty" in signal.description
    experiences = _experiences(REWARDS.clone())
    for experience in experiences:
        experience.advantages = torch.randn(4, ACTIONS)
    settings = _seam.advantage_settings(args)
    expected = torch.cat([first_token_advantages(e.advantages, e.action_mask) for e in experiences])
    assert torch.equal(meta_advantages(experiences, signal, settings), expected)


def test_reinforce_baseline_is_token_whitened(args_by_estimator):
    rewards = REWARDS.clone()
    experiences = _experiences(rewards)
    got = _advantages(args_by_estimator["reinforce_baseline"], experiences)
    centred = _expected("dr_grpo", rewards)
    tokens = torch.zeros(PROMPTS * N_SAMPLES)
    for experience in experiences:
        tokens[experience.index] = experience.action_mask.sum(1).float()
    mean = (centred * tokens).sum() / tokens.sum()
    std = (((centred - mean) ** 2 * tokens).sum() / tokens.sum()).sqrt()
    torch.testing.assert_close(got, (centred - mean) / std)


def test_kl_in_the_reward_enters_the_first_token_return(args_by_estimator):
    rewards = REWARDS.clone()
    kl = torch.rand(PROMPTS * N_SAMPLES, ACTIONS, generator=torch.Generator().manual_seed(2))
    experiences = _experiences(rewards, kl)
    kl_sum = torch.zeros(PROMPTS * N_SAMPLES)
    for experience in experiences:
        kl_sum[experience.index] = experience.kl.sum(1)
    got = _advantages(args_by_estimator["group_norm"], experiences, kl_coef=0.1)
    torch.testing.assert_close(got, _expected("group_norm", rewards) - 0.1 * kl_sum)


def test_first_token_advantage_of_a_sample_without_actions_is_zero():
    advantages = torch.tensor([[0.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    mask = torch.tensor([[0, 1, 1], [0, 0, 0]])
    assert first_token_advantages(advantages, mask).tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match="same"):
        first_token_advantages(advantages, mask[:, :2])


def test_join_matches_experiences_by_content(args_by_estimator):
    rewards = REWARDS.clone()
    experiences = _experiences(rewards)
    args = args_by_estimator["group_norm"]
    maker = RemoteExperienceMaker(
        None, None, None, None, FixedKLController(0.0), SimpleNamespace(args=args), None
    )
    experiences = maker.compute_advantages_and_returns(experiences)
    stash = {
        sequence_key(e.sequences): TemperatureLoglik(
            torch.full((4, 3), float(i)), e.action_mask.sum(1) * 0 + i
        )
        for i, e in enumerate(experiences)
    }
    joined = join_loglik(list(reversed(experiences)), stash, 3)
    assert joined.loglik[:, 0].tolist() == [1.0] * 4 + [0.0] * 4
    assert joined.num_tokens.tolist() == [1] * 4 + [0] * 4
    assert joined.num_tokens.dtype == torch.int64
    settings = _seam.advantage_settings(args)
    got = meta_advantages(list(reversed(experiences)), advantage_signal(settings), settings)
    expected = torch.cat(
        [first_token_advantages(e.advantages, e.action_mask) for e in reversed(experiences)]
    )
    torch.testing.assert_close(got, expected)
    with pytest.raises(RuntimeError, match="no per-temperature likelihoods"):
        join_loglik(experiences, {}, 3)
    with pytest.raises(RuntimeError, match="expected"):
        join_loglik(experiences, stash, 4)
