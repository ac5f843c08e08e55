"""Book-keeping of one GRPO generation round: its temperature and the pending policy update."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from tampo_core.loglik import TemperatureLoglik


@dataclass
class GenerationRound:
    """One call of ``_generate_and_score_completions`` in training and the micro-batches that
    consume its buffer (``steps_per_generation x num_iterations`` of them).

    Attributes:
        temperature: the T drawn for the round.
        start_state: the meta-policy state just before the draw; a checkpoint taken inside the
            round saves it, since a resumed TRL run regenerates the round (and so redraws T).
        slices_total: micro-batches that consume the round's buffer.
        slices_to_capture: first-iteration micro-batches whose training forward still has to be
            scored (0 when the likelihoods came from the generation phase).
        slices_consumed: micro-batches consumed so far.
        loglik: per-slice likelihoods (``[b, K]`` and ``[b]`` counts) so far, local rows.
        advantages: float ``[b]`` chunks matching ``loglik``.
        updated: whether the meta-policy has learned from this round.
    """

    temperature: float
    start_state: dict[str, Any]
    slices_total: int
    slices_to_capture: int = 0
    slices_consumed: int = 0
    loglik: list[TemperatureLoglik] = field(default_factory=list)
    advantages: list[torch.Tensor] = field(default_factory=list)
    updated: bool = False

    @property
    def finished(self) -> bool:
        """All micro-batches of the round were consumed: the next one generates anew."""
        return self.slices_consumed >= self.slices_total
