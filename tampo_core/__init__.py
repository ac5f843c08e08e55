"""tampo-core: TAMPO's adaptive sampling temperature for GRPO-style LLM RL.

Two methods carry it: :meth:`TempMetaPolicy.sample` before each rollout batch and
:meth:`TempMetaPolicy.observe` after its advantages are known. The maths lives in pure
functions (``sparsemax``, ``temperature_advantage_sums``, ``minmax_distribution``,
``nucleus_*``, the ``tampo_core.loglik`` kernels); ``TempMetaPolicy`` holds only the state.
"""

import importlib.metadata

from tampo_core.adaptive_grid import AdaptiveGridTempMetaPolicy
from tampo_core.advantages import (
    TemperatureAdvantageSums,
    ema_update,
    minmax_distribution,
    temperature_advantage_sums,
)
from tampo_core.config import PAPER_TEMPERATURES, TampoConfig
from tampo_core.contextual import ContextualObserveStats, ContextualTempMetaPolicy
from tampo_core.difficulty import DifficultyBucketer
from tampo_core.loglik import (
    TemperatureLoglik,
    multi_temperature_loglik,
    multi_temperature_loglik_from_hidden,
)
from tampo_core.meta_policy import TempMetaPolicy
from tampo_core.metrics import temperature_label
from tampo_core.nucleus import nucleus_distribution, nucleus_sample, nucleus_support
from tampo_core.protocol import TemperaturePolicy
from tampo_core.sparsemax import sparsemax
from tampo_core.stats import ObserveStats

__version__ = importlib.metadata.version("tampo-core")

__all__ = [
    "PAPER_TEMPERATURES",
    "AdaptiveGridTempMetaPolicy",
    "ContextualObserveStats",
    "ContextualTempMetaPolicy",
    "DifficultyBucketer",
    "ObserveStats",
    "TampoConfig",
    "TempMetaPolicy",
    "TemperatureAdvantageSums",
    "TemperatureLoglik",
    "TemperaturePolicy",
    "__version__",
    "ema_update",
    "minmax_distribution",
    "multi_temperature_loglik",
    "multi_temperature_loglik_from_hidden",
    "nucleus_distribution",
    "nucleus_sample",
    "nucleus_support",
    "sparsemax",
    "temperature_advantage_sums",
    "temperature_label",
]
