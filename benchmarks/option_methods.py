"""Benchmark method names for TAMPO's options beyond the paper (issue 12), ready to register.

Every name is the paper's TAMPO (top_p 0.7, alpha 0.05, the grid 0.6..1.5) with the run's
warm-up length and seed, changed in one option:

- ``tampo-sum``: ``likelihood="sum"`` (sparsemax of the trajectory's total log-likelihood);
- ``tampo-x10`` / ``tampo-x100``: ``sparsemax_scale`` 10 / 100;
- ``tampo-batchbase``: ``meta_advantage="batch_baseline"`` (needs the rewards in ``observe``);
- ``tampo-fixedwarm``: ``warmup="fixed"`` at T = 1.0 instead of the uniform warm-up;
- ``tampo-bucketed``: per-prompt temperatures, ``ContextualTempMetaPolicy`` over two online
  difficulty buckets (running pass rate <= 0.5 or above; back-off to the pooled distribution
  for the warm-up length);
- ``tampo-bucketed-q3``: the same with three quantile buckets;
- ``tampo-grid``: ``AdaptiveGridTempMetaPolicy`` (patience 10 updates, range [0.3, 2.0], K <= 16).

A training loop (``benchmarks/suite_run.py``) needs three changes for these rows, all through
the helpers below: the step's temperature from :func:`step_temperature` (a float, or a ``[B]``
tensor for the bucketed methods, which then need each prompt's key), ``rewards=`` passed to
``grpo_update`` when :func:`needs_rewards`, and ``float(t.mean())`` where a float is logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tampo_core import PAPER_TEMPERATURES, TampoConfig, TempMetaPolicy
from tampo_core.adapters.torch_loop.temperature import group_temperatures
from tampo_core.adaptive_grid import AdaptiveGridTempMetaPolicy
from tampo_core.contextual import ContextualObserveStats, ContextualTempMetaPolicy
from tampo_core.difficulty import DifficultyBucketer
from tampo_core.labels import Label
from tampo_core.validation import expected

PAPER_TAMPO: dict[str, Any] = {"temperatures": PAPER_TEMPERATURES, "top_p": 0.7, "ema_alpha": 0.05}
OPTION_CONFIGS: dict[str, dict[str, Any]] = {
    "tampo-sum": {"likelihood": "sum"},
    "tampo-x10": {"sparsemax_scale": 10.0},
    "tampo-x100": {"sparsemax_scale": 100.0},
    "tampo-batchbase": {"meta_advantage": "batch_baseline"},
    "tampo-fixedwarm": {"warmup": "fixed", "warmup_temperature": 1.0},
}
"""Single-temperature option methods: the ``TampoConfig`` fields each one changes."""
BUCKETED: dict[str, dict[str, Any]] = {
    "tampo-bucketed": {"num_buckets": 2, "mode": "fixed"},
    "tampo-bucketed-q3": {"num_buckets": 3, "mode": "quantile"},
}
"""Per-prompt option methods: the ``DifficultyBucketer`` settings of each."""
ADAPTIVE_GRID: dict[str, dict[str, Any]] = {
    "tampo-grid": {
        "grid_patience": 10,
        "min_temperature": 0.3,
        "max_temperature": 2.0,
        "max_candidates": 16,
    },
}
"""Adaptive-grid option methods: the ``AdaptiveGridTempMetaPolicy`` settings of each."""
OPTION_METHODS: tuple[str, ...] = (*OPTION_CONFIGS, *BUCKETED, *ADAPTIVE_GRID)


class BucketedTampo:
    """``ContextualTempMetaPolicy`` fed by a ``DifficultyBucketer``, as one per-step object.

    ``sample_rows`` buckets each prompt by its running pass rate, draws one temperature per
    group and remembers each row's bucket; ``observe`` updates every bucket from the rows it
    drew, then folds the rewards (in [0, 1]) into the pass rates.
    """

    def __init__(self, policy: ContextualTempMetaPolicy, bucketer: DifficultyBucketer) -> None:
        self.policy = policy
        self.bucketer = bucketer
        self._row_keys: list[Label] = []
        self._row_buckets: list[int] = []

    def sample_rows(self, prompt_keys: Sequence[Label], group_size: int) -> torch.Tensor:
        """float32 ``[len(prompt_keys) * group_size]``: each group's temperature on its rows."""
        groups = self.bucketer.buckets(prompt_keys)
        temperatures = group_temperatures(self.policy.sample(groups), group_size)
        self._row_keys = [key for key in prompt_keys for _ in range(group_size)]
        self._row_buckets = [bucket for bucket in groups for _ in range(group_size)]
        return temperatures

    def observe(
        self,
        logits_or_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        *,
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        source_temperature: float = 1.0,
        rewards: torch.Tensor,
    ) -> ContextualObserveStats:
        """Update the buckets the last ``sample_rows`` drew for, then the pass rates."""
        if len(self._row_buckets) != tokens.shape[0]:
            rule = f"a sample_rows call for these {tokens.shape[0]} rows first"
            raise ValueError(expected("observe", rule, f"{len(self._row_buckets)} sampled rows"))
        policy_rewards = rewards if self.policy.config.meta_advantage != "given" else None
        stats = self.policy.observe(
            logits_or_logprobs,
            advantages,
            tokens=tokens,
            mask=mask,
            source_temperature=source_temperature,
            buckets=self._row_buckets,
            rewards=policy_rewards,
        )
        self.bucketer.update(self._row_keys, rewards.detach().double().clamp(0.0, 1.0).numpy())
        return stats


def make_option_policy(
    method: str, *, warmup_steps: int, seed: int
) -> TempMetaPolicy | BucketedTampo | AdaptiveGridTempMetaPolicy:
    """The temperature source named ``method`` (one of :data:`OPTION_METHODS`)."""
    if method in ADAPTIVE_GRID:
        config = TampoConfig(**PAPER_TAMPO, warmup_steps=warmup_steps, seed=seed)
        return AdaptiveGridTempMetaPolicy(config, **ADAPTIVE_GRID[method])
    if method in OPTION_CONFIGS:
        config = TampoConfig(
            **PAPER_TAMPO, warmup_steps=warmup_steps, seed=seed, **OPTION_CONFIGS[method]
        )
        return TempMetaPolicy(config=config)
    if method in BUCKETED:
        bucketer = DifficultyBucketer(**BUCKETED[method])
        config = TampoConfig(**PAPER_TAMPO, warmup_steps=warmup_steps, seed=seed)
        policy = ContextualTempMetaPolicy(
            bucketer.labels, config=config, min_bucket_updates=warmup_steps
        )
        return BucketedTampo(policy, bucketer)
    raise ValueError(expected("method", f"one of {OPTION_METHODS}", repr(method)))


def step_temperature(
    policy: Any, prompt_keys: Sequence[Label], group_size: int
) -> float | torch.Tensor:
    """This step's sampling temperature: ``policy.sample()``, or the per-row ``[B]`` tensor of a
    :class:`BucketedTampo` (``prompt_keys``: one stable key per prompt, e.g. its pool index)."""
    if isinstance(policy, BucketedTampo):
        return policy.sample_rows(prompt_keys, group_size)
    return policy.sample()


def needs_rewards(policy: Any) -> bool:
    """True when ``observe`` needs ``rewards=`` (batch baseline, difficulty buckets)."""
    if isinstance(policy, BucketedTampo):
        return True
    return isinstance(policy, TempMetaPolicy) and policy.config.meta_advantage != "given"


def support_size(observed: Any) -> float:
    """The mean sparsemax support of one update (pooled for the bucketed methods)."""
    stats = observed.pooled if isinstance(observed, ContextualObserveStats) else observed
    return float(stats.support_size)
