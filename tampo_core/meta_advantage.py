"""The advantage the meta-policy weights: the given one (paper) or a batch baseline (option).

With group-relative advantages a group whose rewards are all equal gives ``A_i = 0``, so the
prompts the model cannot solve yet (or always solves) are invisible to TAMPO. The
``"batch_baseline"`` option scores every counted trajectory against the whole batch instead,

    A_i^meta = (r_i - m_B) / (s_B + BASELINE_EPS),
    m_B = (1/N) sum_j r_j,   s_B^2 = (1/N) sum_j r_j^2 - m_B^2   (counted trajectories only),

for the meta-policy only (the policy gradient keeps its own advantages). Every quantity it
needs adds up across ranks, so it travels in the one packed all-reduce of
``TemperatureAdvantageSums`` and the baseline is applied after it:

    sum_i w_ik A_i^meta = (sum_i w_ik r_i - m_B sum_i w_ik) / (s_B + BASELINE_EPS).

A synchronised batch thus gives the result of one process holding all of it.
"""

from __future__ import annotations

import numpy as np

from tampo_core.advantages import TemperatureAdvantageSums, temperature_advantage_sums
from tampo_core.config import TampoConfig
from tampo_core.validation import (
    check_bounded_array,
    check_finite_array,
    expected,
    to_float64,
)

BASELINE_EPS = 1e-6
"""Added to the batch reward std (as ``group_advantages`` adds it to the group std)."""


def check_rewards(rewards: object, num_rows: int) -> np.ndarray:
    """Rewards as float64 ``[N]``: one finite value per trajectory, ``|r| <= 1e100`` (so that
    the sums of ``r^2`` stay finite)."""
    array = to_float64("rewards", rewards)
    if array.shape != (num_rows,):
        rule = f"shape [N] = [{num_rows}] (one per trajectory)"
        raise ValueError(expected("rewards", rule, f"shape {list(array.shape)}"))
    return check_bounded_array("rewards", check_finite_array("rewards", array))


def rewards_for(config: TampoConfig, rewards: object, num_rows: int) -> np.ndarray | None:
    """The checked float64 ``[N]`` rewards ``config.meta_advantage`` needs, or None.

    Raises:
        ValueError, TypeError: rewards missing with ``"batch_baseline"``, given with
            ``"given"`` (they would be ignored), or malformed.
    """
    if config.meta_advantage == "given":
        if rewards is not None:
            rule = "None with meta_advantage='given' (the advantages are used)"
            raise ValueError(expected("rewards", rule, "rewards"))
        return None
    if rewards is None:
        rule = "[N] rewards with meta_advantage='batch_baseline'"
        raise ValueError(expected("rewards", rule, "None"))
    return check_rewards(rewards, num_rows)


def meta_advantage_sums(
    config: TampoConfig,
    scores: np.ndarray,
    advantages: np.ndarray,
    rewards: object,
    valid: np.ndarray,
) -> TemperatureAdvantageSums:
    """This batch's additive sums under ``config.meta_advantage`` (before any reduction).

    Args:
        config: the validated hyper-parameters.
        scores: float64 ``[N, K]`` sparsemax inputs (``tampo_core.sharpness.sparsemax_input``).
        advantages: float64 ``[N]`` checked advantages (weighted with ``"given"``).
        rewards: ``[N]`` rewards, required with ``"batch_baseline"`` and refused otherwise.
        valid: bool ``[N]`` counted trajectories.

    Raises:
        ValueError, TypeError: rewards missing, superfluous or malformed.
    """
    reward_array = rewards_for(config, rewards, advantages.shape[0])
    if reward_array is None:
        return temperature_advantage_sums(scores, advantages, valid)
    counted = reward_array[valid]
    return temperature_advantage_sums(scores, reward_array, valid)._replace(
        reward_sum=float(counted.sum()), reward_sq_sum=float((counted * counted).sum())
    )


def batch_meta_advantage(config: TampoConfig, sums: TemperatureAdvantageSums) -> np.ndarray:
    """float64 ``[K]``: the batch temperature advantage ``A_B^(k)`` from (reduced) sums.

    ``"given"``: ``advantage_sum / N`` (the paper). ``"batch_baseline"``: the centred and
    scaled form of the module docstring, divided by N. ``sums.count`` must be > 0.
    """
    if config.meta_advantage == "given":
        return sums.advantage_sum / sums.count
    mean = sums.reward_sum / sums.count
    variance = max(sums.reward_sq_sum / sums.count - mean * mean, 0.0)
    scale = float(np.sqrt(variance)) + BASELINE_EPS
    return (sums.advantage_sum - mean * sums.weight_sum) / scale / sums.count
