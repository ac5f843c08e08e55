"""TAMPO for OpenRLHF's Ray-based PPO/GRPO (from a checkout: ``pip install ".[openrlhf]"`` on a
CUDA machine; the CPU test environment: ``scripts/ci/install-openrlhf.sh``).

- ``python -m tampo_core.adapters.openrlhf.launch --tampo.top_p 0.7 <train_ppo_ray args>``
  runs OpenRLHF's own CLI with the TAMPO trainer (``launch``);
- ``TampoPPOTrainer`` is the Ray actor class (``trainer``), ``TampoOptions`` its options.

Importing this package does not import OpenRLHF; ``TampoPPOTrainer`` and ``BoundTampoTrainer``
load it on first access (``_seam`` checks the OpenRLHF version when imported). Supported:
openrlhf >= 0.11.1, < 0.12, synchronous PPO/GRPO (async mode, ring attention and DeepSpeed
AutoTP are refused).
"""

from __future__ import annotations

from typing import Any

from tampo_core.adapters.openrlhf.options import TampoOptions, parse_tampo_args

__all__ = ["BoundTampoTrainer", "TampoOptions", "TampoPPOTrainer", "parse_tampo_args"]

_LAZY = {"TampoPPOTrainer", "BoundTampoTrainer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from tampo_core.adapters.openrlhf import trainer  # its _seam checks the version

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
