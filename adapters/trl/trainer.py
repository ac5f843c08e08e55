"""TampoGRPOTrainer: TRL's GRPOTrainer with TAMPO's learned sampling temperature."""

from __future__ import annotations

import json
import logging
import os
import warnings
from typing import Any, Literal

import torch
from trl import GRPOTrainer

from tampo_core import TampoConfig, TempMetaPolicy
from tampo_core.adapters.trl import _seam
from tampo_core.adapters.trl.extra_forward import loglik_by_extra_forward
from tampo_core.adapters.trl.generation_round import GenerationRound
from tampo_core.adapters.trl.grpo_args import (
    LIKELIHOOD_SOURCES,
    LOSS_TEMPERATURES,
    PER_ROW_REASON,
    check_grpo_args,
    refuse_per_row_temperature,
)
from tampo_core.adapters.trl.hidden_capture import HiddenStateLoglik
from tampo_core.adapters.trl.likelihoods import (
    TokenLoglik,
    cat_loglik,
    cat_token_loglik,
    mean_over_mask,
)
from tampo_core.loglik import TemperatureLoglik
from tampo_core.validation import check_choice, check_instance, check_temperature, expected

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
    scoring pass TRL already makes (the old-log-prob pass when TRL runs one, so they describe
    the weights that generated the round; otherwise the round's training forwards), are
    averaged under TRL's loss mask (completion x tool mask), gathered with their token counts
    and the advantages across processes, and the same update runs on every rank; completions
    without a valid token are skipped and counted, a non-finite likelihood is a ValueError.
    While a round generates, ``trainer.args.temperature`` (and ``trainer.temperature``) hold its
    T, for user ``rollout_func``s. Step logs carry ``tampo/temperature``, the T of the round
    the last step trained on, and ``tampo/temperature_window_mean`` over the logging window.

    Refused: ``RLOOTrainer`` / ``AsyncGRPOTrainer`` mixed in, contextual (per-prompt) policies
    and per-row temperatures (one T per generate call and a scalar in the fused head),
    ``TampoConfig.meta_advantage="batch_baseline"`` (TRL hands over advantages, not rewards),
    ``do_sample=False`` / beam search, and the hidden-state path on sharded heads (FSDP,
    ZeRO-3) or soft-capped logits (use ``likelihood_source="extra_forward"``).

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
        _seam.check_trainer_class(type(self))
        tampo = TampoConfig() if tampo is None else tampo
        if not isinstance(tampo, TampoConfig) and hasattr(tampo, "sample"):
            raise TypeError(
                f"tampo: expected a TampoConfig (the trainer builds its own TempMetaPolicy; "
                f"policy objects such as a contextual per-prompt policy are refused: "
                f"{PER_ROW_REASON}), got {type(tampo).__name__}"
            )
        check_instance("tampo", tampo, TampoConfig)
        if tampo.meta_advantage != "given":
            raise ValueError(
                expected(
                    "TampoConfig.meta_advantage",
                    "'given' with TampoGRPOTrainer (TRL hands the adapter each completion's "
                    "advantage, not its reward)",
                    repr(tampo.meta_advantage),
                )
            )
        self._loss_temperature_mode = check_choice(
            "loss_temperature", loss_temperature, LOSS_TEMPERATURES
        )
        self._likelihood_source = check_choice(
            "likelihood_source", likelihood_source, LIKELIHOOD_SOURCES
        )
        if eval_temperature is not None:
            refuse_per_row_temperature("eval_temperature", eval_temperature)
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
                    expected(
                        "likelihood_source",
                        "'extra_forward' for a model with final-logit soft-capping (the "
                        "hidden-state path cannot reproduce it)",
                        f"'hidden_states' with final_logit_softcapping={softcap}",
                    )
                )
            sharded = _seam.sharded_lm_head(self)
            if sharded is not None:
                raise ValueError(
                    expected(
                        "likelihood_source",
                        "'extra_forward' when the LM head is sharded (the hidden-state path needs "
                        "the whole head weight on each rank)",
                        f"'hidden_states' while {sharded}",
                    )
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
        if self.rollout_func is not None:
            logger.warning(
                "TAMPO with rollout_func: it must sample at the round's temperature, which "
                "TampoGRPOTrainer puts in trainer.args.temperature and trainer.temperature "
                "during each generation round."
            )
        self._round: GenerationRound | None = None
        self._capture_armed = False
        self._captured: list[TokenLoglik] = []

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
            with _seam.rollout_temperature(self, temperature):
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
        # TRL averages its metric buffer over the logging window: the window mean of the drawn
        # temperatures; ``log`` adds the last drawn value under tampo/temperature.
        _seam.log_metric(self, "train", "tampo/temperature_window_mean", temperature)

        from_generation = self._capture is not None and _seam.old_logps_pass_runs(self)
        self._captured = []
        self._capture_armed = from_generation
        try:
            with _seam.rollout_temperature(self, temperature):
                output = super()._generate_and_score_completions(inputs)
        finally:
            self._capture_armed = False
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
        elif from_generation:
            # the old-log-prob pass ran with the weights that generated the round
            if "old_per_token_logps" not in output or len(self._captured) != 1:
                raise RuntimeError(
                    "TRL did not run the old-log-prob pass the TAMPO adapter expected "
                    f"(captured {len(self._captured)} scoring calls); TRL internals changed, "
                    f"supported: trl{_seam.SUPPORTED_TRL_PIN}"
                )
            loglik = mean_over_mask(self._captured[0], _seam.loss_mask(output))
            self._update_policy(loglik, output["advantages"])
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
        if not self._capture_armed or self._capture is None or model is self.ref_model:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, **kwargs
            )
        self._capture_armed = False  # one scoring call per request (not a PEFT reference pass)
        with self._capture.recording(logits_to_keep) as chunks:
            result = super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, **kwargs
            )
        self._captured.append(cat_token_loglik(chunks))
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
        self._captured = []
        self._capture_armed = capture
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self._capture_armed = False
        current.slices_consumed += 1
        if capture:
            if len(self._captured) != 1:
                raise RuntimeError(
                    f"TRL's training forward ran {len(self._captured)} policy scoring calls, "
                    f"expected 1; TRL internals changed, supported: trl{_seam.SUPPORTED_TRL_PIN}"
                )
            current.loglik.append(mean_over_mask(self._captured[0], _seam.loss_mask(inputs)))
            current.advantages.append(inputs["advantages"].detach())
            self._captured = []
            current.slices_to_capture -= 1
            if current.slices_to_capture == 0:
                self._update_policy(cat_loglik(current.loglik), torch.cat(current.advantages))
        return loss

    # -- meta-policy update ----------------------------------------------------------------

    def _update_policy(self, loglik: TemperatureLoglik, advantages: torch.Tensor) -> None:
        """Gather the ``[b, K]`` likelihoods, their ``[b]`` token counts and ``[b]`` advantages
        of every process and run the same update on every rank."""
        device = self.accelerator.device
        gather = self.accelerator.gather
        likelihoods = gather(loglik.loglik.to(device, torch.float32).contiguous())
        counts = gather(loglik.num_tokens.to(device, torch.int64).contiguous()).cpu().numpy()
        gathered_adv = gather(advantages.detach().to(device, torch.float32).contiguous())
        current = self._round
        if not counts.any():
            warnings.warn(
                "TAMPO: no completion of this round has a valid token (all masked); the "
                "meta-policy skips the round",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            self.tampo_policy.observe_loglik(
                likelihoods.to("cpu", torch.float64).numpy(),
                gathered_adv.to("cpu", torch.float64).numpy(),
                num_tokens=counts,
                sync=False,
            )
        if current is not None:
            current.updated = True
            current.loglik, current.advantages = [], []

    # -- logging and checkpoints -------------------------------------------------------------

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Training step logs (those with a ``loss``) get the meta-policy's metrics and
        ``tampo/temperature``, the T of the round the last step trained on (exactly a drawn
        value; TRL averages ``tampo/temperature_window_mean`` over the rounds of the window)."""
        if self.model.training and "loss" in logs:
            logs.update(self.tampo_policy.metrics(detail=True))
            if self._round is not None:
                logs["tampo/temperature"] = self._round.temperature
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
