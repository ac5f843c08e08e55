"""Validated configuration of the temperature meta-policy."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tampo_core.validation import check_positive, check_temperatures, expected, pydantic_rule

PAPER_TEMPERATURES: tuple[float, ...] = tuple(round(0.6 + 0.1 * k, 1) for k in range(10))
"""The paper's candidate grid 0.6, 0.7, ..., 1.5 (K = 10)."""


class TampoConfig(BaseModel):
    """Hyper-parameters of TAMPO's temperature meta-policy (defaults are the paper's).

    Attributes:
        temperatures: the K >= 2 candidate temperatures, strictly increasing, each in
            [1e-4, 1e4] (``tampo_core.validation.check_temperature``).
        ema_alpha: EMA coefficient of the temperature advantages, in (0, 1].
        top_p: nucleus mass used when drawing a temperature, in [0, 1]; 0 is greedy.
        warmup_steps: number of ``observe`` calls during which ``sample`` follows the warm-up
            rule instead of the meta-policy (the EMA is still updated); 0 = no warm-up. The
            paper has a warmup of unstated length.
        seed: seed of the policy's own random generator (never the global RNG).
        likelihood: (option; each option's default is the paper's method, bit for bit) what
            sparsemax sees per trajectory. ``"mean"`` (paper): the per-token mean
            ``l_ik = (1/n_i) sum_t log pi_{T_k}(o_t)``; ``"sum"``: the trajectory's total
            log-likelihood ``n_i * l_ik`` (needs the token counts ``n_i``).
        sparsemax_scale: (option) ``c > 0``; the sparsemax input is ``c * l_ik`` (or
            ``c * n_i * l_ik``): ``w_i = sparsemax(c * s_i)``. ``c > 1`` or ``"sum"`` shrink
            the support (sparsemax is not scale-invariant; min-max is), which is how they leave
            the affine regime.
        warmup: (option) ``"uniform"`` (our reading of the paper): uniform over the
            candidates during warm-up; ``"fixed"``: always ``warmup_temperature``.
        warmup_temperature: the warm-up temperature with ``warmup="fixed"``; it must be one of
            ``temperatures`` (it is drawn like any candidate); None otherwise.
        meta_advantage: (option) the trajectory advantage the meta-policy weights.
            ``"given"`` (paper): the advantages passed to ``observe`` (group-relative: an
            all-equal group gives 0). ``"batch_baseline"``: ``(r_i - mean_B r) / (std_B r +
            1e-6)`` from the rewards, mean and population std over the counted trajectories of
            the whole batch (all ranks); the policy gradient keeps its own advantages.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperatures: tuple[float, ...] = PAPER_TEMPERATURES
    ema_alpha: float = Field(default=0.05, gt=0.0, le=1.0, allow_inf_nan=False)
    top_p: float = Field(default=0.7, ge=0.0, le=1.0, allow_inf_nan=False)
    warmup_steps: int = Field(default=10, ge=0, strict=True)
    seed: int = Field(default=0, ge=0, strict=True)
    likelihood: Literal["mean", "sum"] = "mean"
    sparsemax_scale: Annotated[float, pydantic_rule(check_positive, "sparsemax_scale")] = 1.0
    warmup: Literal["uniform", "fixed"] = "uniform"
    warmup_temperature: float | None = None
    meta_advantage: Literal["given", "batch_baseline"] = "given"

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

    @model_validator(mode="after")
    def _warmup_temperature_is_a_candidate(self) -> TampoConfig:
        value = self.warmup_temperature
        if self.warmup == "fixed" and value not in self.temperatures:
            rule = f"one of the candidate temperatures {self.temperatures} with warmup='fixed'"
            raise ValueError(expected("warmup_temperature", rule, value))
        if self.warmup == "uniform" and value is not None:
            raise ValueError(expected("warmup_temperature", "None with warmup='uniform'", value))
        return self

    @property
    def num_temperatures(self) -> int:
        """K, the number of candidate temperatures."""
        return len(self.temperatures)
