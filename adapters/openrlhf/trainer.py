"""``TampoPPOTrainer``: OpenRLHF's single-controller PPO/GRPO trainer with TAMPO temperatures.

Per step, inside the trainer Ray actor (which owns the meta-policy):

1. ``generate_samples`` draws ``T = meta_policy.sample()``, generates at ``T`` (vLLM's
   ``SamplingParams`` is rebuilt from the call's kwargs; a guard in each engine keeps every turn
   of a multi-turn agent at ``T``) and tags every sample with ``T``;
2. ``train_step`` reads ``T`` from the tags and sets ``Actor.temperature = T`` on every policy
   and reference actor, so the old/new log-probs, KL, entropy and PPO ratio are all at ``T``;
3. the experience-making forward's logits give each policy actor the ``[B, K]`` likelihoods and
   action-token counts (``policy_hook``; zero extra forward passes), which come back to the
   trainer after the advantages are computed and update the meta-policy with the signal
   ``advantages`` chooses (``meta_update``: a batch that cannot update it is skipped, logged and
   counted);
4. the meta-policy metrics join OpenRLHF's step status (W&B / TensorBoard), the TAMPO options
   are recorded in OpenRLHF's args (and so in the W&B config), and the meta-policy and adapter
   state ride in the checkpoint ``client_states`` and are restored on resume.

Async PPO (``PPOTrainerAsync``) and ring attention / AutoTP are refused with a clear error.
"""

from __future__ import annotations

import logging
from typing import Any

from tampo_core import TampoConfig, TempMetaPolicy

# The version gate (in _seam) before anything of OpenRLHF's or Ray's is imported (Ray is only
# imported through _seam), so without OpenRLHF the error names the extra to install.
from tampo_core.adapters.openrlhf import _seam
from tampo_core.adapters.openrlhf.advantages import (
    advantage_signal,
    meta_advantages,
    outcome_rewards,
)
from tampo_core.adapters.openrlhf.join import join_loglik
from tampo_core.adapters.openrlhf.meta_update import MetaUpdater
from tampo_core.adapters.openrlhf.options import TampoOptions
from tampo_core.adapters.openrlhf.policy_hook import install_policy_hook, pop_policy_loglik

logger = logging.getLogger(__name__)


class _TampoPPOTrainer(_seam.trainer_base_class()):  # type: ignore[misc]
    """Plain class behind the ``TampoPPOTrainer`` Ray actor (see the module docstring)."""

    def __init__(self, *args: Any, tampo: TampoOptions | TampoConfig, **kwargs: Any) -> None:
        _seam.check_trainer_contract()
        options = tampo if isinstance(tampo, TampoOptions) else TampoOptions(config=tampo)
        openrlhf_args = _seam.record_options(args, kwargs, options.flat())
        refused = _seam.unsupported_features(openrlhf_args)
        if refused:
            raise ValueError("TAMPO cannot run with: " + "; ".join(refused))
        super().__init__(*args, **kwargs)
        self.tampo_options = options
        self.meta_policy = TempMetaPolicy(config=options.config)
        self.meta_updater = MetaUpdater(self.meta_policy)
        self._advantage_settings = _seam.advantage_settings(openrlhf_args)
        self._advantage_signal = advantage_signal(self._advantage_settings)
        log = logger.info if self._advantage_signal.outcome_group else logger.warning
        log("TAMPO: the meta-policy weights %s", self._advantage_signal.description)
        _seam.wrap_generation(self, self.meta_policy.sample, self.meta_updater.pending)
        _seam.wrap_experience_making(self, self._observe)

    def fit(self, global_step: int = 0) -> None:
        policy_group, _ = _seam.model_groups(self)
        _seam.run_on_group(
            policy_group,
            install_policy_hook,
            self.meta_policy.temperatures,
            self.tampo_options.chunk_size,
        )
        _seam.run_on_engines(self, _seam.guard_engine_temperature)
        return super().fit(global_step)

    def train_step(self, rollout_samples: list[Any], global_step: int) -> tuple[dict, int]:
        temperature = _seam.batch_temperature(rollout_samples)
        _seam.set_model_temperature(*_seam.model_groups(self), temperature)
        status, next_step = super().train_step(rollout_samples, global_step)
        status.update(self.meta_updater.metrics(detail=self.tampo_options.detailed_metrics))
        status["tampo/temperature"] = temperature
        status["tampo/agent_temperature_overrides"] = float(
            sum(_seam.run_on_engines(self, _seam.engine_overrides))
        )
        return status, next_step

    def _observe(self, experiences: list[Any]) -> None:
        policy_group, _ = _seam.model_groups(self)
        loglik_by_key: dict = {}
        for stash in _seam.run_on_group(policy_group, pop_policy_loglik):
            loglik_by_key.update(stash)
        loglik = join_loglik(experiences, loglik_by_key, len(self.meta_policy.temperatures))
        advantages = meta_advantages(experiences, self._advantage_signal, self._advantage_settings)
        rewards = None
        if self.meta_policy.config.meta_advantage == "batch_baseline":
            rewards = outcome_rewards(experiences)
        self.meta_updater.update(loglik, advantages, rewards)

    def save_logs_and_checkpoints(
        self, global_step: int, logs_dict: dict | None = None, client_states: dict | None = None
    ) -> None:
        client_states = {} if client_states is None else client_states
        client_states.update(checkpoint_entries(self.meta_updater))
        super().save_logs_and_checkpoints(global_step, logs_dict, client_states)

    def init_checkpoint_states(self) -> dict:
        states = super().init_checkpoint_states()
        if not restore_checkpoint_entries(states, self.meta_updater) and states.get("global_step"):
            logger.warning(
                "resuming at global step %s from a checkpoint without TAMPO state: the "
                "meta-policy starts afresh",
                states["global_step"],
            )
        return states

    def tampo_state(self) -> dict:
        """The meta-policy's and the adapter's state (for inspection from the driver)."""
        return checkpoint_entries(self.meta_updater)


def checkpoint_entries(updater: MetaUpdater) -> dict:
    """What the trainer adds to OpenRLHF's checkpoint ``client_states``: the meta-policy's
    ``state_dict`` and the adapter's (pending draw, skip counters), both JSON-ready."""
    return {
        _seam.CHECKPOINT_STATE_KEY: updater.meta_policy.state_dict(),
        _seam.ADAPTER_STATE_KEY: updater.state_dict(),
    }


def restore_checkpoint_entries(states: dict, updater: MetaUpdater) -> bool:
    """Restore :func:`checkpoint_entries` from loaded ``client_states``; False when they hold
    no TAMPO state (a checkpoint of a run without TAMPO)."""
    state = states.get(_seam.CHECKPOINT_STATE_KEY)
    if state is None:
        return False
    updater.meta_policy.load_state_dict(state)
    adapter_state = states.get(_seam.ADAPTER_STATE_KEY)
    if adapter_state is not None:
        updater.load_state_dict(adapter_state)
    return True


TampoPPOTrainer = _seam.ray_actor_class(_TampoPPOTrainer)
"""Ray actor class: ``TampoPPOTrainer.remote(<PPOTrainer's arguments>, tampo=options)``."""


class BoundTampoTrainer:
    """``TampoPPOTrainer`` with its options bound, a drop-in for ``PPOTrainer`` in
    ``openrlhf.cli.train_ppo_ray.train`` (which only calls ``.remote(...)``)."""

    def __init__(self, options: TampoOptions) -> None:
        self.options = options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Create the trainer actor with OpenRLHF's arguments plus the bound options."""
        return TampoPPOTrainer.remote(*args, tampo=self.options, **kwargs)
