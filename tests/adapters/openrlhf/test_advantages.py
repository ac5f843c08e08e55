"""Per-trajectory advantages from OpenRLHF's real estimators, and the join with likelihoods."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip(
    "openrlhf", reason="openrlhf is not installed (scripts/ci/install-openrlhf.sh installs it)"
)

from tests.adapters.openrlhf.testkit import activate_standins, cli_args, ppo_argv

activate_standins()

from openrlhf.trainer.ppo_utils.experience import Experience  # noqa: E402
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker  # noqa: E402
from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController  # noqa: E402

from tampo_core.adapters.openrlhf.action_loglik import sequence_key  # noqa: E402
from tampo_core.adapters.openrlhf.join import join_loglik, trajectory_advantages  # noqa: E402

N_SAMPLES, PROMPTS, ACTIONS = 4, 2, 6


@pytest.fixture(scope="module")
def args_by_estimator() -> dict:
    return {
        estimator: cli_args(ppo_argv(estimator, **{"--rollout.micro_batch_size": "4"}))
        for estimator in ("group_norm", "dr_grpo", "rloo", "reinforce_baseline")
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
        got[experience.index] = trajectory_advantages(experience.advantages, experience.action_mask)
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
    raise AssertionError(estimator)


@pytest.mark.parametrize("estimator", ["group_norm", "dr_grpo", "rloo"])
def test_group_estimators_give_the_shaped_reward(args_by_estimator, estimator):
    rewards = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.25, 1.0, 0.0])
    got = _advantages(args_by_estimator[estimator], _experiences(rewards))
    torch.testing.assert_close(got, _expected(estimator, rewards))


def test_reinforce_baseline_is_token_whitened(args_by_estimator):
    rewards = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.25, 1.0, 0.0])
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
    rewards = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.25, 1.0, 0.0])
    kl = torch.rand(PROMPTS * N_SAMPLES, ACTIONS, generator=torch.Generator().manual_seed(2))
    experiences = _experiences(rewards, kl)
    kl_sum = torch.zeros(PROMPTS * N_SAMPLES)
    for experience in experiences:
        kl_sum[experience.index] = experience.kl.sum(1)
    got = _advantages(args_by_estimator["group_norm"], experiences, kl_coef=0.1)
    torch.testing.assert_close(got, _expected("group_norm", rewards) - 0.1 * kl_sum)


def test_trajectory_advantage_of_a_sample_without_actions_is_zero():
    advantages = torch.tensor([[0.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    mask = torch.tensor([[0, 1, 1], [0, 0, 0]])
    assert trajectory_advantages(advantages, mask).tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match="same"):
        trajectory_advantages(advantages, mask[:, :2])


def test_join_matches_experiences_by_content(args_by_estimator):
    rewards = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.25, 1.0, 0.0])
    experiences = _experiences(rewards)
    args = args_by_estimator["group_norm"]
    maker = RemoteExperienceMaker(
        None, None, None, None, FixedKLController(0.0), SimpleNamespace(args=args), None
    )
    experiences = maker.compute_advantages_and_returns(experiences)
    stash = {
        sequence_key(e.sequences): torch.full((4, 3), float(i)) for i, e in enumerate(experiences)
    }
    loglik, advantages = join_loglik(list(reversed(experiences)), stash, 3)
    assert loglik[:, 0].tolist() == [1.0] * 4 + [0.0] * 4
    expected = torch.cat(
        [trajectory_advantages(e.advantages, e.action_mask) for e in reversed(experiences)]
    )
    torch.testing.assert_close(advantages, expected)
    with pytest.raises(RuntimeError, match="no per-temperature likelihoods"):
        join_loglik(experiences, {}, 3)
    with pytest.raises(RuntimeError, match="expected"):
        join_loglik(experiences, stash, 4)
