"""Which temperature ``sample`` returns during warm-up (``TampoConfig.warmup``)."""

from __future__ import annotations

import numpy as np

from tampo_core.config import TampoConfig


def warmup_index(config: TampoConfig, rng: np.random.Generator) -> int:
    """The candidate index drawn during warm-up.

    ``"uniform"``: ``T ~ U{T_1..T_K}`` (one ``rng.integers(K)`` draw, as before the option
    existed). ``"fixed"``: the index of ``config.warmup_temperature``, with no draw.
    """
    if config.warmup == "fixed":
        return config.temperatures.index(config.warmup_temperature)
    return int(rng.integers(config.num_temperatures))
