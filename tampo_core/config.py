"""Validated configuration of the temperature meta-policy."""

from __future__ import annotations

import itertools
import math

from pydantic import BaseModel, ConfigDict, Field, field_validator

PAPER_TEMPERATURES: tuple[float, ...] = tuple(round(0.6 + 0.1 * k, 1) for k in range(10))
"""The paper's candidate grid 0.6, 0.7, ..., 1.5 (K = 10)."""


class TampoConfig(BaseModel):
    """Hyper-parameters of TAMPO's temperature meta-policy (defaults are the paper's).

    Attributes:
        temperatures: the K >= 2 candidate temperatures, finite, > 0, strictly increasing.
        ema_alpha: EMA coefficient of the temperature advantages, in (0, 1].
        top_p: nucleus mass used when drawing a temperature, in [0, 1]; 0 is greedy.
        warmup_steps: number of ``observe`` calls during which ``sample`` is uniform over the
            candidates (the EMA is still updated). The paper has a warmup of unstated length.
        seed: seed of the policy's own random generator (never the global RNG).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperatures: tuple[float, ...] = PAPER_TEMPERATURES
    ema_alpha: float = Field(default=0.05, gt=0.0, le=1.0)
    top_p: float = Field(default=0.7, ge=0.0, le=1.0)
    warmup_steps: int = Field(default=10, ge=0, strict=True)
    seed: int = Field(default=0, ge=0, strict=True)

    @field_validator("temperatures", mode="before")
    @classmethod
    def _temperatures_are_a_sequence(cls, value: object) -> object:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ValueError(
                f"temperatures must be a sequence of floats, got {type(value).__name__} {value!r}"
            )
        return tuple(value)  # type: ignore[call-overload]

    @field_validator("temperatures")
    @classmethod
    def _temperatures_are_a_grid(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) < 2:
            raise ValueError(f"temperatures must hold K >= 2 candidates, got K = {len(value)}")
        bad = [t for t in value if not math.isfinite(t) or t <= 0.0]
        if bad:
            raise ValueError(f"temperatures must be finite and > 0, got {bad} in {value}")
        for lo, hi in itertools.pairwise(value):
            if not hi > lo:
                raise ValueError(
                    f"temperatures must be strictly increasing, got {hi} after {lo} in {value}"
                )
        return value

    @field_validator("ema_alpha", "top_p")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be finite, got {value}")
        return value

    @property
    def num_temperatures(self) -> int:
        """K, the number of candidate temperatures."""
        return len(self.temperatures)
