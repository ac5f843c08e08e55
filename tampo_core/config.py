"""Validated configuration of the temperature meta-policy."""

from __future__ import annotations

import itertools

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tampo_core.validation import check_temperatures, expected

PAPER_TEMPERATURES: tuple[float, ...] = tuple(round(0.6 + 0.1 * k, 1) for k in range(10))
"""The paper's candidate grid 0.6, 0.7, ..., 1.5 (K = 10)."""


class TampoConfig(BaseModel):
    """Hyper-parameters of TAMPO's temperature meta-policy (defaults are the paper's).

    Attributes:
        temperatures: the K >= 2 candidate temperatures, strictly increasing, each in
            [1e-4, 1e4] (``tampo_core.validation.check_temperature``).
        ema_alpha: EMA coefficient of the temperature advantages, in (0, 1].
        top_p: nucleus mass used when drawing a temperature, in [0, 1]; 0 is greedy.
        warmup_steps: number of ``observe`` calls during which ``sample`` is uniform over the
            candidates (the EMA is still updated). The paper has a warmup of unstated length.
        seed: seed of the policy's own random generator (never the global RNG).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperatures: tuple[float, ...] = PAPER_TEMPERATURES
    ema_alpha: float = Field(default=0.05, gt=0.0, le=1.0, allow_inf_nan=False)
    top_p: float = Field(default=0.7, ge=0.0, le=1.0, allow_inf_nan=False)
    warmup_steps: int = Field(default=10, ge=0, strict=True)
    seed: int = Field(default=0, ge=0, strict=True)

    @field_validator("temperatures", mode="before")
    @classmethod
    def _temperatures_are_a_grid(cls, value: object) -> tuple[float, ...]:
        try:
            temps = check_temperatures("temperatures", value)
        except TypeError as error:  # pydantic reports ValueErrors only
            raise ValueError(str(error)) from None
        if len(temps) < 2:
            raise ValueError(expected("temperatures", "K >= 2 candidates", f"K = {len(temps)}"))
        for lo, hi in itertools.pairwise(temps):
            if not hi > lo:
                rule = "strictly increasing values"
                raise ValueError(expected("temperatures", rule, f"{hi} after {lo} in {temps}"))
        return temps

    @property
    def num_temperatures(self) -> int:
        """K, the number of candidate temperatures."""
        return len(self.temperatures)
