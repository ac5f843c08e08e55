"""The trainer's meta-policy update per rollout batch, and the adapter state it checkpoints.

A batch that cannot update the meta-policy does not end the run: with no trajectory that has an
action token, or with a non-finite advantage (e.g. a NaN reward) on a trajectory that has one,
the update is skipped, the log says why, training goes on and the skip is counted in the
metrics. A non-finite likelihood of a trajectory with tokens (NaN/inf logits) is still an error,
the same ``ValueError`` as ``TempMetaPolicy.observe``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from tampo_core import TempMetaPolicy
from tampo_core.loglik import TemperatureLoglik
from tampo_core.stats import ObserveStats
from tampo_core.validation import check_int, check_temperature, expected

logger = logging.getLogger(__name__)

SKIP_REASONS = ("no_valid_trajectory", "non_finite_advantages")
"""Why a batch's meta-update can be skipped (metric suffixes of ``tampo/skipped_updates/``)."""


class MetaUpdater:
    """Feeds each batch to the meta-policy; holds the temperatures drawn but not yet used and
    the skip counters (both saved with OpenRLHF checkpoints).

    Attributes:
        meta_policy: the ``TempMetaPolicy`` being updated.
        pending: temperatures drawn by a ``generate_samples`` call that returned no samples,
            to be used by the next call (``_seam.wrap_generation`` pops and pushes it).
    """

    def __init__(self, meta_policy: TempMetaPolicy) -> None:
        self.meta_policy = meta_policy
        self.pending: list[float] = []
        self._skipped = dict.fromkeys(SKIP_REASONS, 0)
        self._skipped_last = False

    def update(
        self,
        loglik: TemperatureLoglik,
        advantages: torch.Tensor,
        rewards: torch.Tensor | None = None,
    ) -> ObserveStats | None:
        """Update the meta-policy from one batch, or skip it (logged and counted).

        Args:
            loglik: float32 ``[N, K]`` likelihoods with int64 ``[N]`` action-token counts.
            advantages: float ``[N]`` per-trajectory advantages (any value where the count is 0).
            rewards: float ``[N]`` outcome rewards, for ``meta_advantage="batch_baseline"``
                (None otherwise); a non-finite one skips the batch like an advantage.

        Returns:
            The update's statistics, or None when the batch was skipped.

        Raises:
            ValueError: a trajectory with tokens has a non-finite likelihood (state unchanged).
        """
        valid = loglik.num_tokens > 0
        finite = torch.isfinite(advantages)
        if rewards is not None:
            finite &= torch.isfinite(rewards)
        bad = valid & ~finite
        reason = None
        if not bool(valid.any()):
            reason = "no_valid_trajectory"
            detail = f"none of its {valid.numel()} trajectories has an action token"
        elif bool(bad.any()):
            reason = "non_finite_advantages"
            first = int(bad.nonzero()[0])
            detail = (
                f"{int(bad.sum())} of its {int(valid.sum())} trajectories with tokens have a "
                f"non-finite advantage or reward (first: trajectory {first}, advantage "
                f"{float(advantages[first])}; e.g. a NaN reward)"
            )
        self._skipped_last = reason is not None
        if reason is not None:
            self._skipped[reason] += 1
            logger.warning(
                "TAMPO: skipped the meta-policy update of this batch: %s. The meta-policy keeps "
                "its state and training goes on (tampo/skipped_updates/%s = %d).",
                detail,
                reason,
                self._skipped[reason],
            )
            return None
        advantages = torch.where(valid, advantages, torch.zeros_like(advantages))
        if rewards is not None:
            rewards = torch.where(valid, rewards, torch.zeros_like(rewards))
        return self.meta_policy.observe_loglik(loglik, advantages, sync=False, rewards=rewards)

    def metrics(self, detail: bool = False) -> dict[str, float]:
        """The meta-policy's metrics (``TempMetaPolicy.metrics(detail)``) plus
        ``tampo/skipped_updates/<reason>`` (cumulative) and ``tampo/skipped_update`` (1.0 when
        the last batch was skipped)."""
        out = self.meta_policy.metrics(detail=detail)
        for reason, count in self._skipped.items():
            out[f"tampo/skipped_updates/{reason}"] = float(count)
        out["tampo/skipped_update"] = float(self._skipped_last)
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready adapter state: pending temperatures and skip counters."""
        return {"pending_temperatures": list(self.pending), "skipped_updates": dict(self._skipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the meta-policy is restored separately).

        Raises:
            ValueError, TypeError: a malformed state; nothing is changed.
        """
        if not isinstance(state, dict) or set(state) != {"pending_temperatures", "skipped_updates"}:
            rule = "a dict with keys pending_temperatures and skipped_updates"
            raise ValueError(expected("tampo adapter state", rule, repr(state)))
        pending = [
            check_temperature(f"pending_temperatures[{i}]", t)
            for i, t in enumerate(state["pending_temperatures"])
        ]
        unknown = [t for t in pending if t not in self.meta_policy.temperatures]
        if unknown:
            rule = f"candidate temperatures {self.meta_policy.temperatures}"
            raise ValueError(expected("pending_temperatures", rule, unknown))
        skipped = state["skipped_updates"]
        if not isinstance(skipped, dict) or set(skipped) != set(SKIP_REASONS):
            raise ValueError(expected("skipped_updates", f"counts for {SKIP_REASONS}", skipped))
        counts = {r: check_int(f"skipped_updates.{r}", skipped[r]) for r in SKIP_REASONS}
        self.pending[:] = pending
        self._skipped = counts
