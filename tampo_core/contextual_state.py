"""The state of one bucket of ``ContextualTempMetaPolicy`` and its JSON form.

A bucket's saved entry is ``{"ema", "num_updates", "last_stats"}``, exactly those fields of a
``TempMetaPolicy.state_dict()``, written and checked by the same schema
(``tampo_core.state.dump_state`` / ``parse_state``: bounds, lengths, histogram totals), so
a bucket state round-trips bit for bit and a malformed one is refused with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tampo_core.config import TampoConfig
from tampo_core.state import STATE_VERSION, dump_state, parse_state
from tampo_core.stats import ObserveStats

BUCKET_FIELDS = ("ema", "num_updates", "last_stats")


@dataclass
class BucketState:
    """One TAMPO state: the EMA of the temperature advantages, its update count, last stats.

    Attributes:
        ema: float64 ``[K]``, starts at 0 (pi uniform), as ``TempMetaPolicy``.
        num_updates: updates that had at least one counted trajectory of this bucket.
        last_stats: the last such update's statistics, or None before any.
    """

    ema: np.ndarray
    num_updates: int = 0
    last_stats: ObserveStats | None = None

    @classmethod
    def fresh(cls, num_temperatures: int) -> BucketState:
        """The state before any update."""
        return cls(np.zeros(num_temperatures, dtype=np.float64))


def bucket_state_to_json(config: TampoConfig, state: BucketState) -> dict[str, Any]:
    """``{"ema", "num_updates", "last_stats"}`` in plain JSON types."""
    rng = np.random.Generator(np.random.PCG64(0))
    full = dump_state(config, state.ema, state.num_updates, None, state.last_stats, rng)
    return {name: full[name] for name in BUCKET_FIELDS}


def rng_to_json(config: TampoConfig, rng: np.random.Generator) -> dict[str, Any]:
    """The generator's PCG64 state as ``TempMetaPolicy.state_dict()["rng"]`` writes it."""
    num_temperatures = config.num_temperatures
    return dump_state(config, np.zeros(num_temperatures), 0, None, None, rng)["rng"]


def bucket_state_from_json(
    config: TampoConfig, raw: dict[str, Any], rng: dict[str, Any]
) -> tuple[BucketState, np.random.Generator]:
    """Inverse of :func:`bucket_state_to_json` (and of :func:`rng_to_json` for ``rng``).

    Raises:
        ValueError, TypeError: a malformed entry (messages of ``tampo_core.state``).
    """
    if not isinstance(raw, dict) or set(raw) != set(BUCKET_FIELDS):
        raise ValueError(f"a bucket state must hold exactly {BUCKET_FIELDS}, got {raw!r}")
    restored = parse_state(
        {
            "version": STATE_VERSION,
            "config": config.model_dump(mode="json"),
            **raw,
            "last_temperature": None,
            "rng": rng,
        },
        config,
    )
    state = BucketState(restored.ema, restored.num_updates, restored.last_stats)
    return state, restored.rng
