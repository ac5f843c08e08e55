"""Group-relative advantage estimators for critic-free RL.

Rewards are laid out group by group: the ``group_size`` completions of prompt ``j`` sit at
rows ``j * group_size ... (j + 1) * group_size - 1``. TAMPO only needs one scalar advantage per
trajectory, so any of these (or the user's own) can feed ``TempMetaPolicy.observe``.
"""

from __future__ import annotations

from typing import Literal

import torch

from tampo_core.validation import check_choice, check_finite_array, check_int, expected

Estimator = Literal["grpo", "dr_grpo", "rloo", "reinforce_pp"]
ESTIMATORS: tuple[Estimator, ...] = ("grpo", "dr_grpo", "rloo", "reinforce_pp")


def group_advantages(
    rewards: torch.Tensor, group_size: int, estimator: Estimator = "grpo", eps: float = 1e-6
) -> torch.Tensor:
    """float32 [N] advantages from rewards [N] (any float dtype), N a multiple of group_size.

    - ``grpo``: ``(r - mean_g) / (std_g + eps)``, std with Bessel's correction (as TRL).
    - ``dr_grpo``: ``r - mean_g`` (Dr. GRPO drops the std division).
    - ``rloo``: ``r - mean of the other G - 1 rewards`` = ``G / (G - 1) * (r - mean_g)``.
    - ``reinforce_pp``: REINFORCE++-baseline (OpenRLHF ``reinforce_baseline``): ``r - mean_g``,
      then divided by the std of that over the whole batch (+ eps).
    """
    check_choice("estimator", estimator, ESTIMATORS)
    if rewards.dim() != 1:
        raise ValueError(expected("rewards", "a 1-D tensor [N]", f"shape {list(rewards.shape)}"))
    check_int("group_size", group_size, minimum=2)
    if rewards.numel() % group_size:
        rule = f"an int >= 2 to divide N={rewards.numel()} into groups"
        raise ValueError(expected("group_size", rule, group_size))
    check_finite_array("rewards", rewards.detach().double().cpu().numpy())
    r = rewards.float().view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if estimator == "grpo":
        out = centred / (r.std(dim=1, keepdim=True) + eps)
    elif estimator == "dr_grpo":
        out = centred
    elif estimator == "rloo":
        out = centred * (group_size / (group_size - 1))
    else:
        out = centred / (centred.std() + eps)
    return out.reshape(-1)
