"""Policy-side hook: the ``[B, K]`` likelihoods from the experience-making forward's logits.

``PolicyModelActor.forward`` runs the policy ``Actor`` once per micro-batch under ``no_grad`` at
the start of each step (the log-probs of pi_old). The hook replaces that ``Actor``'s ``forward``
on the instance: under ``no_grad`` with an ``action_mask`` it asks the original for its output as
well, computes the K per-temperature mean log-likelihoods of the action tokens from the tempered
fp32 logits (``source_temperature`` = the sampling T), checks the column at T against the
log-probs the forward returned, stashes the ``[B, K]`` matrix with its ``[B]`` action-token
counts under the batch's content key and returns what the caller asked for. Every other call
(the PPO training forward under grad) passes through untouched. The model runs once per call
either way.
"""

from __future__ import annotations

from typing import Any

import torch

from tampo_core.adapters.openrlhf import _seam
from tampo_core.adapters.openrlhf.action_loglik import action_loglik, sequence_key
from tampo_core.loglik import TemperatureLoglik

HOOK_ATTRIBUTE = "_tampo_loglik_hook"
"""Attribute of the ``PolicyModelActor`` process object that holds its hook."""

SELF_CHECK_ATOL = 1e-3
"""Largest allowed gap (nats per token, mean over the sample) between the hook's column at the
sampling T and OpenRLHF's own masked-mean action log-prob. Both come from the same fp32 logits, so
a gap means the output logits are not the ones the log-probs came from (e.g. a division of a copy)
or the token/position/packing alignment is off. Samples whose OpenRLHF log-prob is itself
non-finite (NaN/inf logits) are left to the meta-policy, which refuses them as ``observe`` does.
That ``Actor.forward`` divides by ``Actor.temperature`` at all is guarded by the seam's contract
check, not here."""


class PolicyLoglikHook:
    """Wraps one policy ``Actor``'s ``forward``; holds the stash of ``[B, K]`` results."""

    def __init__(self, actor: Any, temperatures: tuple[float, ...], chunk_size: int | None) -> None:
        self._actor = actor
        self._temperatures = tuple(float(t) for t in temperatures)
        self._chunk_size = chunk_size
        self._stash: dict[str, TemperatureLoglik] = {}
        self._original = _seam.swap_actor_forward(actor, self)

    @property
    def actor(self) -> Any:
        """The wrapped ``Actor``."""
        return self._actor

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The K candidate temperatures."""
        return self._temperatures

    def __call__(
        self,
        sequences: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_output: bool = False,
        **kwargs: Any,
    ) -> Any:
        if torch.is_grad_enabled() or action_mask is None or kwargs.get("return_logprobs"):
            return self._original(
                sequences, action_mask, attention_mask, return_output=return_output, **kwargs
            )
        if kwargs.get("ring_attn_group") is not None:
            raise RuntimeError("the TAMPO policy hook does not support ring attention")
        action_log_probs, output, logits = _seam.forward_with_logits(
            self._original, sequences, action_mask, attention_mask, **kwargs
        )
        source, packed = _seam.actor_layout(self._actor)
        result = action_loglik(
            logits,
            sequences,
            action_mask,
            attention_mask,
            packed=packed,
            temperatures=self._temperatures,
            source_temperature=source,
            chunk_size=self._chunk_size,
        )
        self._self_check(result, action_log_probs, action_mask, source)
        self._stash[sequence_key(sequences)] = TemperatureLoglik(
            result.loglik.cpu(), result.num_tokens.cpu()
        )
        return (action_log_probs, output) if return_output else action_log_probs

    def _self_check(
        self,
        result: TemperatureLoglik,
        action_log_probs: torch.Tensor,
        action_mask: torch.Tensor,
        source: float,
    ) -> None:
        if source not in self._temperatures:
            raise ValueError(
                f"Actor.temperature = {source} is not one of the candidate temperatures "
                f"{self._temperatures}: the trainer must set the sampled T before the forward"
            )
        mask = action_mask.bool()
        summed = torch.where(mask, action_log_probs.float(), 0.0).sum(dim=1)
        counts = result.num_tokens.to(summed.device)
        reference = summed / counts.clamp(min=1)
        checked = (counts > 0) & torch.isfinite(reference)
        column = result.loglik[:, self._temperatures.index(source)].to(summed.device)
        gap = (column - reference)[checked].abs().max().item() if checked.any() else 0.0
        if not gap <= SELF_CHECK_ATOL:
            raise RuntimeError(
                f"TAMPO self-check failed: the likelihood at the sampling T = {source} differs "
                f"from OpenRLHF's action_log_probs by {gap:.3g} nats/token (tolerance "
                f"{SELF_CHECK_ATOL}); Actor.forward's logits are not what the adapter assumes"
            )

    def pop(self) -> dict[str, TemperatureLoglik]:
        """Return and clear the stash: content key of each micro-batch -> its CPU
        ``TemperatureLoglik`` (float32 ``[B, K]``, int64 ``[B]`` action-token counts)."""
        stash, self._stash = self._stash, {}
        return stash


def install_policy_hook(
    process: Any, temperatures: tuple[float, ...], chunk_size: int | None
) -> tuple[float, ...]:
    """Install the hook on a ``PolicyModelActor`` process's ``Actor`` (idempotent while that
    process holds the same ``Actor``; a re-initialised ``Actor`` gets a new hook).

    Runs inside the policy process (through ``_seam.run_on_group``).

    Returns:
        The hook's candidate temperatures.

    Raises:
        ValueError: a hook with other temperatures is already installed.
    """
    hook = getattr(process, HOOK_ATTRIBUTE, None)
    actor = _seam.policy_actor(process)
    if hook is None or hook.actor is not actor:
        hook = PolicyLoglikHook(actor, temperatures, chunk_size)
        setattr(process, HOOK_ATTRIBUTE, hook)
    elif hook.temperatures != tuple(float(t) for t in temperatures):
        raise ValueError(
            f"a TAMPO hook with temperatures {hook.temperatures} is already installed, "
            f"got {tuple(temperatures)}"
        )
    return hook.temperatures


def pop_policy_loglik(process: Any) -> dict[str, TemperatureLoglik]:
    """Return and clear the hook's stash in a ``PolicyModelActor`` process.

    Raises:
        RuntimeError: no hook is installed there.
    """
    hook = getattr(process, HOOK_ATTRIBUTE, None)
    if hook is None:
        raise RuntimeError("no TAMPO hook is installed on this policy actor")
    return hook.pop()
