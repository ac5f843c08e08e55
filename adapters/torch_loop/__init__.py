"""Plain-PyTorch adapter: sampling at T with a KV cache, group advantages, the loss at the
sampling temperature, and zero-extra-forward glue into ``TempMetaPolicy.observe``."""

from tampo_core.adapters.torch_loop.advantages import ESTIMATORS, Estimator, group_advantages
from tampo_core.adapters.torch_loop.loss import PolicyLoss, policy_loss, token_logprobs
from tampo_core.adapters.torch_loop.sampling import Rollout, sample_completions
from tampo_core.adapters.torch_loop.temperature import group_temperatures
from tampo_core.adapters.torch_loop.update import (
    UpdateStats,
    completion_logits,
    grpo_update,
    observe_loss_logits,
)
from tampo_core.protocol import TemperaturePolicy

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "PolicyLoss",
    "Rollout",
    "TemperaturePolicy",
    "UpdateStats",
    "completion_logits",
    "group_advantages",
    "group_temperatures",
    "grpo_update",
    "observe_loss_logits",
    "policy_loss",
    "sample_completions",
    "token_logprobs",
]
