"""TampoGRPOTrainer: TRL's GRPOTrainer with TAMPO's learned sampling temperature."""

from __future__ import annotations

import json
import logging
import os
import warnings
from typing import Any, Literal

import numpy as np
import torch
from trl import GRPOTrainer

from tampo_core import TampoConfig, TempMetaPolicy
from tampo_core.adapters.trl import _seam
from tampo_core.adapters.trl.extra_forward import loglik_by_extra_forward
from tampo_core.adapters.trl.generation_round import GenerationRound
from tampo_core.adapters.trl.hidden_capture import HiddenStateLoglik
from tampo_core.adapters.trl.validation import (
    LIKELIHOOD_SOURCES,
    LOSS_TEMPERATURES,
    check_choice,
    check_grpo_args,
    check_temperature,
)

logger = logging.getLogger(__name__)

STATE_FILE = "tampo_state.json"
"""Name of the meta-policy state written into each checkpoint directory."""

TEMPERATURE_KEY = "tampo_temperature"
"""Key of the CPU float64 ``[B]`` tag carrying each buffered row's T through TRL's shuffle and
split of the generation batch."""


class TampoGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose sampling temperature is drawn each generation round from TAMPO's
    meta-policy and learned from the same rollouts.

    Each round (one ``_generate_and_score_completions`` call in training) draws T identically
    on every rank and applies it to HF ``generate``, vLLM (colocate and server) and the fused
    LM-head temperature of policy, old and reference log-probs; every buffered micro-batch
    re-applies its own T, so ``steps_per_generation``/``num_iterations`` > 1 and evaluation in
    between stay consistent. The K per-temperature likelihoods come from the hidden states of a
    scoring pass TRL already makes, are gathered with the advantages across processes, and the
    same update runs on every rank.

    Args:
        model, reward_funcs, args, *trainer_args, **trainer_kwargs: as ``GRPOTrainer``.
        tampo: the meta-policy's hyper-parameters (default ``TampoConfig()``, the paper's).
        loss_temperature: ``"sampled"`` (default, TRL's convention: loss, old and ref log-probs
            at the round's T) or ``"fixed"`` (at ``args.temperature``).
        likelihood_source: ``"hidden_states"`` (default, zero extra backbone passes) or
            ``"extra_forward"`` (one extra no-grad pass per round, for models the hook cannot
            serve).
        eval_temperature: T used for evaluation (default ``args.temperature``); evaluation
            never updates the meta-policy.

    Raises:
        ImportError: unsupported TRL version.
        TypeError, ValueError: invalid options or a GRPOConfig that would override the T.
        RuntimeError: TRL's internals differ from what the adapter was tested against.
    """

    def __init__(
        self,
        model: Any,
        reward_funcs: Any = None,
        args: Any = None,
        *trainer_args: Any,
        tampo: TampoConfig | None = None,
        loss_temperature: Literal["sampled", "fixed"] = "sampled",
        likelihood_source: Literal["hidden_states", "extra_forward"] = "hidden_states",
        eval_temperature: float | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        _seam.check_trl_version()
        _seam.check_overridden_methods(GRPOTrainer)
        tampo = TampoConfig() if tampo is None else tampo
        if not isinstance(tampo, TampoConfig):
            raise TypeError(f"tampo must be a TampoConfig, got {type(tampo).__name__}")
        self._loss_temperature_mode = check_choice(
            "loss_temperature", loss_temperature, LOSS_TEMPERATURES
        )
        self._likelihood_source = check_choice(
            "likelihood_source", likelihood_source, LIKELIHOOD_SOURCES
        )
        if eval_temperature is not None:
            eval_temperature = check_temperature("eval_temperature", eval_temperature)
        if args is not None:
            check_grpo_args(args, loss_temperature)

        super().__init__(model, reward_funcs, args, *trainer_args, **trainer_kwargs)

        self.tampo_policy = TempMetaPolicy(config=tampo)
        self._fixed_temperature = check_temperature("GRPOConfig.temperature", self.args.temperature)
        self._eval_temperature = (
            self._fixed_temperature if eval_temperature is None else eval_temperature
        )
        policy_model = _seam.patched_model(self.model)
        policy_cells = _seam.fused_head_cells(policy_model)
        self._temperature_cells = [policy_cells["temperature"]]
        if self.ref_model is not None:
            ref_cells = _seam.fused_head_cells(_seam.patched_model(self.ref_model))
            self._temperature_cells.append(ref_cells["temperature"])
        self._capture: HiddenStateLoglik | None = None
        if self._likelihood_source == "hidden_states":
            softcap = policy_cells["final_logit_softcapping"].cell_contents
            if softcap is not None:
                raise ValueError(
                    f"likelihood_source='hidden_states' cannot reproduce this model's final-logit "
                    f"soft-capping (final_logit_softcapping={softcap}); expected a model without "
                    "it, or likelihood_source='extra_forward'"
                )
            sharded = _seam.sharded_lm_head(self)
            if sharded is not None:
                raise ValueError(
                    f"likelihood_source='hidden_states' needs the whole LM head weight on each "
                    f"rank, but {sharded}; expected likelihood_source='extra_forward'"
                )
            self._capture = HiddenStateLoglik(
                policy_model,
                self.tampo_policy.temperatures,
                float(policy_cells["logit_scale"].cell_contents),
            )
        else:
            logger.warning(
                "TAMPO likelihood_source='extra_forward': one extra no-grad policy forward pass "
                "per generation round computes the per-temperature likelihoods."
            )
        self._round: GenerationRound | None = None
        self._capture_request: torch.Tensor | bool | None = None
        self._captured: list[torch.Tensor] = []

    # -- temperature plumbing -------------------------------------------------------------

    def _set_loss_temperature(self, sampled: float) -> None:
        value = sampled if self._loss_temperature_mode == "sampled" else self._fixed_temperature
        for cell in self._temperature_cells:
            cell.cell_contents = value

    def _apply_temperature(self, temperature: float) -> None:
        _seam.set_sampling_temperature(self, temperature)
        self._set_loss_temperature(temperature)

    def _check_same_temperature_on_all_ranks(self, temperature: float) -> None:
        if self.accelerator.num_processes == 1:
            return
        drawn = self.accelerator.gather(
            torch.tensor([temperature], dtype=torch.float64, device=self.accelerator.device)
        )
        if not torch.all(drawn == drawn[0]):
            raise RuntimeError(
                f"TAMPO ranks drew different temperatures {drawn.tolist()}: expected one T per "
                "round on every rank (meta-policy states diverged)"
            )

    # -- generation round -------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
        if not self.model.training:
            temperature = self._eval_temperature
            self._apply_temperature(temperature)
            output = super()._generate_and_score_completions(inputs)
            _seam.check_output_keys(output)
            _seam.log_metric(self, "eval", "tampo/temperature", temperature)
        else:
            output = self._training_round(inputs)
            temperature = self._round.temperature  # type: ignore[union-attr]
        # float64 keeps the Python float exact; on CPU since some accelerators lack float64
        output[TEMPERATURE_KEY] = torch.full(
            (output["advantages"].shape[0],), temperature, dtype=torch.float64
        )
        return output

    def _training_round(self, inputs: Any) -> dict[str, Any]:
        previous = self._round
        if previous is not None and not previous.updated:
            logger.warning(
                "TAMPO: generation round at T=%s ended before its likelihoods were complete "
                "(resumed or interrupted mid-round); the meta-policy skips it",
                previous.temperature,
            )
        start_state = self.tampo_policy.state_dict()
        temperature = self.tampo_policy.sample()
        self._check_same_temperature_on_all_ranks(temperature)
        self._apply_temperature(temperature)
        self._round = GenerationRound(
            temperature, start_state, slices_total=_seam.generate_every(self)
        )
        _seam.log_metric(self, "train", "tampo/temperature", temperature)

        from_generation = self._capture is not None and _seam.old_logps_pass_runs(self)
        self._captured = []
        self._capture_request = True if from_generation else None
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._capture_request = None
        _seam.check_output_keys(output)

        if self._capture is None:
            loglik = loglik_by_extra_forward(
                self.model,
                self.accelerator,
                output,
                self.tampo_policy.temperatures,
                self.args.per_device_train_batch_size,
            )
            self._update_policy(loglik, output["advantages"])
        elif from_generation and "tool_mask" not in output:
            if "old_per_token_logps" not in output or len(self._captured) != 1:
                raise RuntimeError(
                    "TRL did not run the old-log-prob pass the TAMPO adapter expected "
                    f"(captured {len(self._captured)} scoring calls); TRL internals changed, "
                    f"supported: trl{_seam.SUPPORTED_TRL_PIN}"
                )
            self._update_policy(self._captured[0], output["advantages"])
        else:
            self._round.slices_to_capture = self.args.steps_per_generation
        self._captured = []
        return output

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        request = self._capture_request
        if request is None or self._capture is None or model is self.ref_model:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, **kwargs
            )
        self._capture_request = None  # one scoring call per request (not a PEFT reference pass)
        mask = request if isinstance(request, torch.Tensor) else None
        with self._capture.recording(logits_to_keep, mask) as chunks:
            result = super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, **kwargs
            )
        self._captured.append(torch.cat(chunks))
        return result

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        if TEMPERATURE_KEY not in inputs:
            raise KeyError(
                f"TampoGRPOTrainer batch lacks {TEMPERATURE_KEY!r}: expected batches produced by "
                "its own _generate_and_score_completions"
            )
        self._set_loss_temperature(float(inputs[TEMPERATURE_KEY][0]))
        current = self._round
        if not self.model.training or current is None:
            return super()._compute_loss(model, inputs)
        capture = current.slices_to_capture > 0 and self._capture is not None
        if capture:
            mask = inputs["completion_mask"]
            if "tool_mask" in inputs:
                mask = mask * inputs["tool_mask"]
            self._captured = []
            self._capture_request = mask
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self._capture_request = None
        current.slices_consumed += 1
        if capture:
            current.loglik.extend(self._captured)
            current.advantages.append(inputs["advantages"].detach())
            self._captured = []
            current.slices_to_capture -= 1
            if current.slices_to_capture == 0:
                self._update_policy(torch.cat(current.loglik), torch.cat(current.advantages))
        return loss

    # -- meta-policy update ----------------------------------------------------------------

    def _update_policy(self, loglik: torch.Tensor, advantages: torch.Tensor) -> None:
        """Gather ``[b, K]`` likelihoods and ``[b]`` advantages of every process and run the
        same update on every rank."""
        gathered_loglik = self.accelerator.gather(loglik.float().contiguous())
        gathered_adv = self.accelerator.gather(advantages.detach().float().contiguous())
        loglik_array = gathered_loglik.to("cpu", torch.float64).numpy()
        adv_array = gathered_adv.to("cpu", torch.float64).numpy()
        current = self._round
        if np.isnan(loglik_array).all(axis=1).all():
            warnings.warn(
                "TAMPO: no completion of this round has a valid token (all masked); the "
                "meta-policy skips the round",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            self.tampo_policy.observe_loglik(loglik_array, adv_array, sync=False)
        if current is not None:
            current.updated = True
            current.loglik, current.advantages = [], []

    # -- logging and checkpoints -------------------------------------------------------------

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training:
            distribution = self.tampo_policy.metrics()
            distribution.pop("tampo/temperature", None)  # averaged per round by TRL instead
            logs.update(distribution)
        super().log(logs, start_time)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if not self.args.should_save:
            return
        current = self._round
        mid_round = current is not None and not current.finished
        state = {
            "policy": current.start_state if mid_round else self.tampo_policy.state_dict(),
            "mid_round": mid_round,
        }
        path = os.path.join(_seam.checkpoint_dir(self, trial), STATE_FILE)
        with open(path, "w") as handle:
            json.dump(state, handle)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, STATE_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"resuming TampoGRPOTrainer from {checkpoint}, which has no {STATE_FILE}: expected "
                "a checkpoint written by TampoGRPOTrainer"
            )
        with open(path) as handle:
            state = json.load(handle)
        self.tampo_policy.load_state_dict(state["policy"])
        self._round = None
