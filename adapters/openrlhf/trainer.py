"""``TampoPPOTrainer``: OpenRLHF's single-controller PPO/GRPO trainer with TAMPO temperatures.

Per step, inside the trainer Ray actor (which owns the meta-policy):

1. ``generate_samples`` draws ``T = meta_policy.sample()``, generates at ``T`` (vLLM's
   ``SamplingParams`` is rebuilt from the call's kwargs) and tags every sample with ``T``;
2. ``train_step`` reads ``T`` from the tags and sets ``Actor.temperature = T`` on every policy
   and reference actor, so the old/new log-probs, KL, entropy and PPO ratio are all at ``T``;
3. the experience-making forward's logits give each policy actor the ``[B, K]`` likelihoods
   (``policy_hook``; zero extra forward passes), which come back to the trainer after the
   advantages are computed and update the meta-policy (``observe_loglik``);
4. the meta-policy metrics join OpenRLHF's step status (W&B / TensorBoard), and its state rides
   in the checkpoint ``client_states`` and is restored on resume.

Async PPO (``PPOTrainerAsync``) and ring attention / AutoTP are refused with a clear error.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from tampo_core import TampoConfig, TempMetaPolicy
from tampo_core.adapters.openrlhf import _seam
from tampo_core.adapters.openrlhf.join import join_loglik
from tampo_core.adapters.openrlhf.options import TampoOptions
from tampo_core.adapters.openrlhf.policy_hook import install_policy_hook, pop_policy_loglik

_seam.check_openrlhf_version()

logger = logging.getLogger(__name__)


class _TampoPPOTrainer(_seam.trainer_base_class()):  # type: ignore[misc]
    """Plain class behind the ``TampoPPOTrainer`` Ray actor (see the module docstring)."""

    def __init__(self, *args: Any, tampo: TampoOptions | TampoConfig, **kwargs: Any) -> None:
        _seam.check_trainer_contract()
        options = tampo if isinstance(tampo, TampoOptions) else TampoOptions(config=tampo)
        super().__init__(*args, **kwargs)
        refused = _seam.unsupported_features(_seam.trainer_args(self))
        if refused:
            raise ValueError("TAMPO cannot run with: " + "; ".join(refused))
        self.tampo_options = options
        self.meta_policy = TempMetaPolicy(config=options.config)
        _seam.wrap_generation(self, self.meta_policy.sample)
        _seam.wrap_experience_making(self, self._observe)

    def fit(self, global_step: int = 0) -> None:
        policy_group, _ = _seam.model_groups(self)
        _seam.run_on_group(
            policy_group,
            install_policy_hook,
            self.meta_policy.temperatures,
            self.tampo_options.chunk_size,
        )
        return super().fit(global_step)

    def train_step(self, rollout_samples: list[Any], global_step: int) -> tuple[dict, int]:
        temperature = _seam.batch_temperature(rollout_samples)
        _seam.set_model_temperature(*_seam.model_groups(self), temperature)
        status, next_step = super().train_step(rollout_samples, global_step)
        status.update(self.meta_policy.metrics())
        return status, next_step

    def _observe(self, experiences: list[Any]) -> None:
        policy_group, _ = _seam.model_groups(self)
        loglik_by_key: dict = {}
        for stash in _seam.run_on_group(policy_group, pop_policy_loglik):
            loglik_by_key.update(stash)
        loglik, advantages = join_loglik(
            experiences, loglik_by_key, len(self.meta_policy.temperatures)
        )
        self.meta_policy.observe_loglik(loglik, advantages, sync=False)

    def save_logs_and_checkpoints(
        self, global_step: int, logs_dict: dict | None = None, client_states: dict | None = None
    ) -> None:
        client_states = {} if client_states is None else client_states
        client_states[_seam.CHECKPOINT_STATE_KEY] = self.meta_policy.state_dict()
        super().save_logs_and_checkpoints(global_step, logs_dict, client_states)

    def init_checkpoint_states(self) -> dict:
        states = super().init_checkpoint_states()
        state = states.get(_seam.CHECKPOINT_STATE_KEY)
        if state is not None:
            self.meta_policy.load_state_dict(state)
        elif states.get("global_step", 0) > 0:
            logger.warning(
                "resuming at global step %s from a checkpoint without TAMPO state: the "
                "meta-policy starts afresh",
                states["global_step"],
            )
        return states

    def tampo_state(self) -> dict:
        """The meta-policy's ``state_dict`` (for inspection from the driver)."""
        return self.meta_policy.state_dict()


TampoPPOTrainer = ray.remote(_TampoPPOTrainer)
"""Ray actor class: ``TampoPPOTrainer.remote(<PPOTrainer's arguments>, tampo=options)``."""


class BoundTampoTrainer:
    """``TampoPPOTrainer`` with its options bound, a drop-in for ``PPOTrainer`` in
    ``openrlhf.cli.train_ppo_ray.train`` (which only calls ``.remote(...)``)."""

    def __init__(self, options: TampoOptions) -> None:
        self.options = options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Create the trainer actor with OpenRLHF's arguments plus the bound options."""
        return TampoPPOTrainer.remote(*args, tampo=self.options, **kwargs)
