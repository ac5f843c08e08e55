"""``TampoRayPPOTrainer``: verl's synchronous PPO/GRPO trainer with TAMPO temperatures.

Per step, on the driver (which owns the meta-policy):

1. ``_get_gen_batch`` (training batches only) draws ``T = meta_policy.sample()``, writes it as
   the batch's log-prob temperature and as ``rollout.temperature`` (which ``_update_actor``
   copies into the training batch), and gives every generation request ``T`` as its sampling
   temperature (the TAMPO agent loop puts it into that request's sampling parameters);
2. ``_compute_old_log_prob`` runs at ``T`` and asks the policy engine for the ``[B, K]``
   likelihoods of that same forward (``engine_hook``; zero extra forward passes), which come back
   with the log-probs; ``_compute_ref_log_prob`` and the PPO update run at ``T`` too, so ratio,
   KL and entropy are all at the sampling temperature;
3. ``_update_actor`` reads verl's advantages, feeds them with the likelihoods and token counts
   (and, for ``meta_advantage="batch_baseline"``, the trajectory rewards) to ``observe_loglik``
   (once per step, on the driver) and adds the ``tampo/*`` metrics to the step's metrics, which
   verl's ``Tracking`` logs;
4. ``_save_checkpoint`` writes the meta-policy state into the ``global_step_<n>`` folder and
   ``_load_checkpoint`` restores it, so a resumed run continues the temperature sequence.

What the adapter cannot honour is refused at construction (``_seam.unsupported_features``).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np

from tampo_core import TampoConfig, TempMetaPolicy
from tampo_core.adapters.verl import _seam
from tampo_core.adapters.verl.join import batch_observation
from tampo_core.adapters.verl.options import TampoOptions

_seam.check_verl_version()

logger = logging.getLogger(__name__)


class TampoRayPPOTrainer(_seam.trainer_base_class()):  # type: ignore[misc]
    """``RayPPOTrainer`` with a TAMPO meta-policy (see the module docstring)."""

    def __init__(self, *args: Any, tampo: TampoOptions | TampoConfig, **kwargs: Any) -> None:
        _seam.check_contract()
        options = tampo if isinstance(tampo, TampoOptions) else TampoOptions(config=tampo)
        super().__init__(*args, **kwargs)
        refused = _seam.unsupported_features(self.config)
        if refused:
            raise ValueError("TAMPO cannot run with: " + "; ".join(refused))
        _seam.use_tampo_agent_loop(self.config)
        self.tampo_options = options
        self.meta_policy = TempMetaPolicy(config=options.config)
        self._tampo_temperature: float | None = None
        self._tampo_captured: tuple[Any, Any, list[str]] | None = None
        self._tampo_pending: tuple[Any, Any] | None = None

    def init_workers(self) -> None:
        super().init_workers()
        _seam.wrap_compute_log_prob(self, self._capture)

    def _get_gen_batch(self, batch: Any) -> Any:
        if not _seam.training_batch(batch):
            return super()._get_gen_batch(batch)
        temperature = self.meta_policy.sample()
        self._tampo_temperature = temperature
        _seam.set_batch_temperature(batch, temperature)
        _seam.set_config_temperature(self.config, temperature)
        gen_batch = super()._get_gen_batch(batch)
        _seam.set_rollout_temperatures(gen_batch, np.full(len(gen_batch), temperature))
        return gen_batch

    def _step_temperature(self) -> float:
        if self._tampo_temperature is None:
            raise RuntimeError("no TAMPO temperature was drawn for this step")
        return self._tampo_temperature

    def _compute_old_log_prob(self, batch: Any) -> Any:
        _seam.set_batch_temperature(batch, self._step_temperature())
        _seam.request_loglik(batch, self.meta_policy.temperatures, self.tampo_options.chunk_size)
        self._tampo_pending = None
        try:
            result = super()._compute_old_log_prob(batch)
        finally:
            _seam.clear_loglik_request(batch)
        if self._tampo_pending is None:
            raise RuntimeError(
                "the policy engine returned no TAMPO likelihoods: the workers are not "
                "TampoActorRolloutRefWorker (run through tampo_core.adapters.verl.main)"
            )
        loglik, num_tokens = self._tampo_pending
        keys = _seam.row_keys(_seam.batch_input_ids(batch))
        self._tampo_captured = (loglik, num_tokens, keys)
        return result

    def _capture(self, output: Any) -> None:
        found = _seam.pop_loglik(output)
        if found is not None:
            self._tampo_pending = found

    def _compute_ref_log_prob(self, batch: Any) -> Any:
        _seam.set_batch_temperature(batch, self._step_temperature())
        return super()._compute_ref_log_prob(batch)

    def _update_actor(self, batch: Any) -> Any:
        _seam.set_config_temperature(self.config, self._step_temperature())
        if self._tampo_captured is None:
            raise RuntimeError("no TAMPO likelihoods were captured for this step's batch")
        loglik, advantages, num_tokens = batch_observation(batch, self._tampo_captured)
        self._tampo_captured = None
        rewards = (
            _seam.trajectory_rewards(batch)
            if self.meta_policy.config.meta_advantage == "batch_baseline"
            else None
        )
        self.meta_policy.observe_loglik(
            loglik, advantages, num_tokens=num_tokens, sync=False, rewards=rewards
        )
        actor_output = super()._update_actor(batch)
        metrics = self.meta_policy.metrics(detail=self.tampo_options.detailed_metrics)
        _seam.add_step_metrics(actor_output, metrics)
        return actor_output

    def _save_checkpoint(self) -> None:
        super()._save_checkpoint()
        folder = _seam.checkpoint_folder(self.config, self.global_steps, saving=True)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, _seam.CHECKPOINT_FILE), "w") as handle:
            json.dump(self.meta_policy.state_dict(), handle)

    def _load_checkpoint(self) -> Any:
        result = super()._load_checkpoint()
        if self.global_steps > 0:
            folder = _seam.checkpoint_folder(self.config, self.global_steps, saving=False)
            path = os.path.join(folder, _seam.CHECKPOINT_FILE)
            if os.path.exists(path):
                with open(path) as handle:
                    self.meta_policy.load_state_dict(json.load(handle))
            else:
                logger.warning(
                    "resuming at global step %s from %s without TAMPO state: the meta-policy "
                    "starts afresh",
                    self.global_steps,
                    folder,
                )
        return result

    def tampo_state(self) -> dict:
        """The meta-policy's ``state_dict``."""
        return self.meta_policy.state_dict()


class BoundTampoTrainer:
    """``TampoRayPPOTrainer`` with its options bound: what ``TaskRunner.run`` constructs in
    place of ``RayPPOTrainer`` (it passes only verl's arguments)."""

    def __init__(self, options: TampoOptions) -> None:
        self.options = options

    def __call__(self, *args: Any, **kwargs: Any) -> TampoRayPPOTrainer:
        return TampoRayPPOTrainer(*args, tampo=self.options, **kwargs)
