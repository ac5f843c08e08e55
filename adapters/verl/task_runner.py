"""``TampoTaskRunner``: verl's (v0) ``TaskRunner`` that builds the TAMPO trainer and workers.

``main_ppo.main`` creates its task runner as a Ray actor and calls ``run(config)`` there; this
subclass, inside that actor, makes ``run`` construct ``TampoRayPPOTrainer`` (with the bound
options) where it constructs ``RayPPOTrainer``, and registers ``TampoActorRolloutRefWorker`` for
the actor/rollout/reference role.
"""

from __future__ import annotations

from typing import Any

from tampo_core.adapters.verl import _seam
from tampo_core.adapters.verl.options import TampoOptions

_seam.check_verl_version()  # before ray: without verl, name the extra to install

import ray  # noqa: E402


class _TampoTaskRunner(_seam.task_runner_base_class()):  # type: ignore[misc]
    """Plain class behind the ``TampoTaskRunner`` Ray actor."""

    def __init__(self, options: TampoOptions) -> None:
        super().__init__()
        self.tampo_options = options

    def add_actor_rollout_worker(self, config: Any) -> tuple[type, type]:
        from tampo_core.adapters.verl.worker import TampoActorRolloutRefWorker

        _, group_class = super().add_actor_rollout_worker(config)
        _seam.replace_actor_worker(self, TampoActorRolloutRefWorker)
        return TampoActorRolloutRefWorker, group_class

    def run(self, config: Any) -> None:
        from tampo_core.adapters.verl.trainer import BoundTampoTrainer

        _seam.check_launcher_contract()
        _seam.install_trainer(BoundTampoTrainer(self.tampo_options))
        super().run(config)


TampoTaskRunner = ray.remote(_TampoTaskRunner)
"""Ray actor class: ``TampoTaskRunner.remote(options)``."""


class BoundTampoTaskRunner:
    """``TampoTaskRunner`` with its options bound, a drop-in for ``TaskRunner`` in
    ``main_ppo.main`` / ``run_ppo`` (which call ``.remote()`` or ``.options(...).remote()``)."""

    def __init__(self, tampo_options: TampoOptions, actor_options: dict | None = None) -> None:
        self.tampo_options = tampo_options
        self.actor_options = actor_options or {}

    def options(self, **actor_options: Any) -> BoundTampoTaskRunner:
        """Ray's ``.options(...)``, keeping the bound TAMPO options."""
        return BoundTampoTaskRunner(self.tampo_options, {**self.actor_options, **actor_options})

    def remote(self) -> Any:
        """Create the task-runner actor with the bound options."""
        runner = TampoTaskRunner
        if self.actor_options:
            runner = runner.options(**self.actor_options)
        return runner.remote(self.tampo_options)
