"""The two-method protocol every per-step temperature source implements.

``tampo_core.TempMetaPolicy`` satisfies it, and so do the fixed/scheduled/controller
baselines in ``benchmarks/baselines.py`` (they subclass it): a training loop written against
this protocol swaps one for another without other changes.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class TemperaturePolicy(Protocol):
    """``sample()`` once per step before generation; ``observe(...)`` once per step after the
    loss forward, with logits [B, L, V] aligned to ``tokens`` [B, L] and advantages [B].

    Implementations subclass it explicitly; one that needs no feedback inherits ``observe``,
    whose body does nothing."""

    def sample(self) -> float: ...

    def observe(
        self,
        logits_or_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        *,
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        source_temperature: float = 1.0,
    ) -> Any: ...
