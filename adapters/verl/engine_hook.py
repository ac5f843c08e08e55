"""Policy-engine hook: the ``[B, K]`` likelihoods from the old-log-prob forward's logits.

``_compute_old_log_prob`` runs the policy engine once over every sample under ``no_grad`` at the
start of each step (the log-probs of pi_old). The driver marks that batch with the candidate
temperatures (``_seam.request_loglik``); the hook, which replaces the engine's
``prepare_model_outputs`` on the instance, then computes the K mean likelihoods of the response
tokens from the unscaled logits of that same forward, checks the column at each sample's
temperature against verl's own log-probs, and adds ``[K]`` likelihoods and a ``[1]`` token count
per sample to the model output, which verl gathers back to the driver with the log-probs. Every
other call (reference, training under grad) passes through untouched. The model runs once per
forward either way.
"""

from __future__ import annotations

from typing import Any

import torch

from tampo_core.adapters.verl import _seam
from tampo_core.adapters.verl.response_loglik import response_loglik, response_mean_log_probs

HOOK_ATTRIBUTE = "_tampo_loglik_hook"
"""Attribute of the worker that holds its engine's hook."""

SELF_CHECK_ATOL = {torch.float32: 1e-3, torch.float64: 1e-3}
"""Largest allowed gap (nats per token, mean over the response) between the hook's column at a
sample's temperature and verl's masked-mean log-prob, by logits dtype. Both come from the same
logits; fp32 agrees to rounding. verl divides bf16/fp16 logits by T in that dtype before its
log-softmax, so those get ``SELF_CHECK_ATOL_LOW_PRECISION``."""

SELF_CHECK_ATOL_LOW_PRECISION = 0.1
"""Self-check tolerance for bf16/fp16 logits (verl's division by T rounds in that dtype)."""

TEMPERATURE_MATCH_RTOL = 1e-6
"""Relative tolerance when matching the engine's temperature to a candidate (float32 rounding
of a per-sample temperature tensor is below 6e-8 relative)."""


class EngineLoglikHook:
    """Wraps one engine's ``prepare_model_outputs``; stateless between calls."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._original = _seam.engine_prepare_outputs(engine)
        _seam.replace_prepare_outputs(engine, self)

    @property
    def engine(self) -> Any:
        """The wrapped engine."""
        return self._engine

    def __call__(
        self,
        output: Any,
        output_args: dict[str, Any],
        micro_batch: Any,
        logits_processor_func: Any,
    ) -> dict[str, Any]:
        request = _seam.loglik_request(micro_batch)
        if request is None or torch.is_grad_enabled():
            return self._original(output, output_args, micro_batch, logits_processor_func)
        refused = _seam.engine_refusals(self._engine, micro_batch)
        if refused:
            raise RuntimeError("the TAMPO likelihood hook cannot run with " + "; ".join(refused))
        temperatures, chunk_size = request
        layout = _seam.micro_batch_layout(micro_batch)
        logits = _seam.raw_logits(output)
        packed = _seam.uses_remove_padding(micro_batch)
        # Before the original: its log-softmax may reuse the logits' storage.
        loglik = response_loglik(
            logits.squeeze(0) if packed else logits,
            layout,
            packed=packed,
            temperatures=temperatures,
            chunk_size=chunk_size,
        )
        model_output = self._original(output, output_args, micro_batch, logits_processor_func)
        self._self_check(loglik.loglik, model_output, layout, temperatures, logits.dtype)
        model_output[_seam.LOGLIK_KEY] = _seam.nested_rows(loglik.loglik.cpu())
        model_output[_seam.NUM_TOKENS_KEY] = _seam.nested_rows(loglik.num_tokens.cpu()[:, None])
        return model_output

    @staticmethod
    def _self_check(
        loglik: torch.Tensor,
        model_output: dict[str, Any],
        layout: dict[str, torch.Tensor],
        temperatures: tuple[float, ...],
        dtype: torch.dtype,
    ) -> None:
        batch = loglik.shape[0]
        temperature = layout["temperature"]
        per_sample = (
            temperature.detach().cpu().double().flatten().tolist()
            if isinstance(temperature, torch.Tensor)
            else [float(temperature)] * batch
        )
        columns = torch.tensor([_candidate_index(t, temperatures) for t in per_sample])
        reference, has_tokens = response_mean_log_probs(
            _seam.per_token_log_probs(model_output), layout
        )
        at_t = loglik.cpu().gather(1, columns[:, None]).squeeze(1)
        gaps = (at_t - reference)[has_tokens].abs()
        gap = gaps.max().item() if gaps.numel() else 0.0
        tolerance = SELF_CHECK_ATOL.get(dtype, SELF_CHECK_ATOL_LOW_PRECISION)
        if not gap <= tolerance:
            raise RuntimeError(
                f"TAMPO self-check failed: the likelihood at the sampling temperature differs "
                f"from verl's log_probs by {gap:.3g} nats/token (tolerance {tolerance}); the "
                "engine's logits or token alignment are not what the adapter assumes"
            )


def _candidate_index(temperature: float, temperatures: tuple[float, ...]) -> int:
    """Index of the candidate equal to ``temperature`` up to float32 rounding (a per-sample
    temperature tensor is float32 in the engine)."""
    for index, candidate in enumerate(temperatures):
        if abs(temperature - candidate) <= TEMPERATURE_MATCH_RTOL * candidate:
            return index
    raise ValueError(
        f"the engine's temperature {temperature} is not one of the candidate temperatures "
        f"{temperatures}: the trainer must set the sampled T before the forward"
    )


def install_engine_hook(worker: Any) -> bool:
    """Install the hook on an ``ActorRolloutRefWorker``'s policy engine (idempotent while the
    worker holds the same engine).

    Returns:
        Whether the worker has a policy engine (a reference-only worker has none).
    """
    engine = _seam.policy_engine(worker)
    if engine is None:
        return False
    hook = getattr(worker, HOOK_ATTRIBUTE, None)
    if hook is None or hook.engine is not engine:
        setattr(worker, HOOK_ATTRIBUTE, EngineLoglikHook(engine))
    return True
