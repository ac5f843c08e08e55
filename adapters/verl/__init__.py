"""TAMPO for verl's Ray PPO/GRPO trainer (from a checkout: ``pip install ".[verl]"``).

- ``python -m tampo_core.adapters.verl.main tampo.top_p=0.7 <verl Hydra overrides>`` runs
  verl's own ``main_ppo`` with the TAMPO task runner, trainer and workers (``main``);
- ``TampoRayPPOTrainer`` is the trainer (``trainer``), ``TampoOptions`` its options.

Importing this package does not import verl; ``TampoRayPPOTrainer``, ``BoundTampoTrainer`` and
``TampoTaskRunner`` load it on first access. Supported: verl >= 0.9, < 0.10, the synchronous
``RayPPOTrainer`` (``trainer.use_v1=false``) with the FSDP engine and the GRPO, Dr. GRPO, RLOO
and REINFORCE++ estimators; the rest is refused with its reason (``_seam.unsupported_features``).
"""

from __future__ import annotations

from typing import Any

from tampo_core.adapters.verl.options import TampoOptions, parse_tampo_overrides

__all__ = [
    "BoundTampoTrainer",
    "TampoOptions",
    "TampoRayPPOTrainer",
    "TampoTaskRunner",
    "parse_tampo_overrides",
]

_LAZY = {
    "TampoRayPPOTrainer": "trainer",
    "BoundTampoTrainer": "trainer",
    "TampoTaskRunner": "task_runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        from tampo_core.adapters.verl import _seam

        _seam.check_verl_version()
        module = importlib.import_module(f"tampo_core.adapters.verl.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
