"""``TampoActorRolloutRefWorker``: verl's actor/rollout/reference worker with the likelihood hook.

The only change to ``ActorRolloutRefWorker``: after ``init_model`` builds the policy engine, the
engine's ``prepare_model_outputs`` is wrapped (``engine_hook``), so the old-log-prob forward the
driver marks also returns the ``[B, K]`` likelihoods.
"""

from __future__ import annotations

from tampo_core.adapters.verl import _seam
from tampo_core.adapters.verl.engine_hook import install_engine_hook

_seam.check_verl_version()


class TampoActorRolloutRefWorker(_seam.worker_base_class()):  # type: ignore[misc]
    """``ActorRolloutRefWorker`` whose policy engine computes the TAMPO likelihoods on request."""

    @_seam.register_one_to_all()
    def init_model(self) -> None:
        super().init_model()
        install_engine_hook(self)
