"""Group-relative advantage estimators against their textbook definitions."""

from __future__ import annotations

import pytest
import torch

from tampo_core.adapters.torch_loop import ESTIMATORS, group_advantages

REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 3.0, 1.0, 2.0, 0.0])
G = 4


def _loop_reference(rewards: list[float], g: int, estimator: str) -> list[float]:
    out = []
    for j in range(0, len(rewards), g):
        grp = rewards[j : j + g]
        mean = sum(grp) / g
        std = (sum((r - mean) ** 2 for r in grp) / (g - 1)) ** 0.5
        for i, r in enumerate(grp):
            if estimator == "grpo":
                out.append((r - mean) / (std + 1e-6))
            elif estimator == "dr_grpo":
                out.append(r - mean)
            elif estimator == "rloo":
                others = grp[:i] + grp[i + 1 :]
                out.append(r - sum(others) / (g - 1))
            else:
                out.append(r - mean)
    if estimator == "reinforce_pp":
        m = sum(out) / len(out)
        sd = (sum((a - m) ** 2 for a in out) / (len(out) - 1)) ** 0.5
        out = [a / (sd + 1e-6) for a in out]
    return out


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_matches_the_definition(estimator: str) -> None:
    got = group_advantages(REWARDS, G, estimator)
    want = torch.tensor(_loop_reference(REWARDS.tolist(), G, estimator))
    assert got.dtype == torch.float32 and got.shape == REWARDS.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_each_group_is_centred_and_equal_reward_groups_give_zero(estimator: str) -> None:
    adv = group_advantages(REWARDS, G, estimator).view(-1, G)
    torch.testing.assert_close(adv.sum(1), torch.zeros(3), atol=1e-5, rtol=0)
    assert torch.equal(adv[1], torch.zeros(G))


def test_rloo_is_grpo_centring_scaled_by_g_over_g_minus_1() -> None:
    centred = group_advantages(REWARDS, G, "dr_grpo")
    torch.testing.assert_close(group_advantages(REWARDS, G, "rloo"), centred * G / (G - 1))


@pytest.mark.parametrize(
    ("rewards", "g", "estimator", "match"),
    [
        (REWARDS, 5, "grpo", "divide N=12"),
        (REWARDS, 1, "grpo", "group_size"),
        (REWARDS.view(3, 4), 4, "grpo", "1-D"),
        (torch.tensor([1.0, float("nan")]), 2, "grpo", "NaN"),
        (REWARDS, 4, "ppo", "estimator"),
    ],
)
def test_bad_input_raises(rewards: torch.Tensor, g: int, estimator: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        group_advantages(rewards, g, estimator)  # type: ignore[arg-type]
