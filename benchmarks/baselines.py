"""Temperature baselines with TempMetaPolicy's protocol: ``sample() -> float``, ``observe(...)``.

Each draws one temperature per training step. ``observe`` takes the loss pass's logits
[B, L, V] aligned to ``tokens`` [B, L] (as ``TempMetaPolicy.observe``); only the entropy
controller reads them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from tampo_core import PAPER_TEMPERATURES, TemperaturePolicy
from tampo_core.validation import (
    check_int,
    check_optional_int,
    check_positive,
    check_temperature,
    expected,
)


class OpenLoop(TemperaturePolicy):
    """Base of the baselines that ignore feedback: they inherit the protocol's ``observe``,
    which does nothing."""


class FixedTemperature(OpenLoop):
    """Always ``temperature``: plain GRPO."""

    def __init__(self, temperature: float) -> None:
        if not 0.0 < temperature < math.inf:
            raise ValueError(f"temperature must be in (0, inf); got {temperature}")
        self.temperature = float(temperature)

    def sample(self) -> float:
        return self.temperature


class LinearSchedule(OpenLoop):
    """``T_s = start + (end - start) * s / (total_steps - 1)`` for step s = 0..total_steps - 1
    (the paper's 0.9 -> 1.5 heuristic); held at ``end`` afterwards."""

    def __init__(self, start: float, end: float, total_steps: int) -> None:
        if total_steps < 1 or min(start, end) <= 0.0:
            raise ValueError(
                f"need total_steps >= 1 and positive temperatures; got "
                f"{total_steps}, {start}, {end}"
            )
        self.start, self.end, self.total_steps = float(start), float(end), total_steps
        self.step = 0

    def sample(self) -> float:
        frac = min(self.step / max(self.total_steps - 1, 1), 1.0)
        self.step += 1
        return self.start + (self.end - self.start) * frac


class CosineSchedule(OpenLoop):
    """``T_s = end + (start - end) * (1 + cos(pi * s / (total_steps - 1))) / 2`` for step
    s = 0..total_steps - 1 (prime-rl-style), held at ``end`` afterwards."""

    def __init__(self, start: float, end: float, total_steps: int) -> None:
        check_temperature("start", start)
        check_temperature("end", end)
        check_int("total_steps", total_steps, minimum=1)
        self.start, self.end, self.total_steps = float(start), float(end), total_steps
        self.step = 0

    def sample(self) -> float:
        frac = min(self.step / max(self.total_steps - 1, 1), 1.0)
        self.step += 1
        return self.end + (self.start - self.end) * (1.0 + math.cos(math.pi * frac)) / 2.0


def group_diversity(tokens: torch.Tensor, mask: torch.Tensor | None, group_size: int) -> float:
    """Mean over groups of (distinct completions / group_size); tokens int64 [B, L] in groups
    of ``group_size`` consecutive rows, mask bool [B, L] (None: all valid)."""
    if tokens.shape[0] % group_size:
        raise ValueError(
            f"tokens: expected a multiple of group_size={group_size} rows, got {tokens.shape[0]}"
        )
    valid = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask.bool()
    rows = [
        tuple(t for t, keep in zip(ids, m, strict=True) if keep)
        for ids, m in zip(tokens.tolist(), valid.tolist(), strict=True)
    ]
    groups = [rows[i : i + group_size] for i in range(0, len(rows), group_size)]
    return float(np.mean([len(set(g)) / group_size for g in groups]))


class StagedSchedule(TemperaturePolicy):
    """POLARIS-style staged temperature: start at ``t_init``; the first step's rollout diversity
    (distinct completions per group) is the reference; whenever a step's diversity falls below
    it and at least ``min_stage_steps`` steps have passed since the last raise, raise T by
    ``raise_by`` (at most ``t_max``). Piecewise constant, never lowered."""

    def __init__(
        self,
        group_size: int,
        t_init: float = 0.9,
        raise_by: float = 0.1,
        t_max: float = 1.5,
        min_stage_steps: int = 10,
    ) -> None:
        check_int("group_size", group_size, minimum=1)
        check_temperature("t_init", t_init)
        check_positive("raise_by", raise_by)
        check_int("min_stage_steps", min_stage_steps, minimum=1)
        if t_max < t_init:
            raise ValueError(expected("t_max", f">= t_init = {t_init}", t_max))
        self.group_size, self.raise_by, self.t_max = group_size, raise_by, t_max
        self.min_stage_steps = min_stage_steps
        self.temperature = float(t_init)
        self.reference: float | None = None
        self.last_diversity: float | None = None
        self.steps_in_stage = 0

    def sample(self) -> float:
        return self.temperature

    def observe(
        self,
        logits_or_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        *,
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        source_temperature: float = 1.0,
    ) -> None:
        d = group_diversity(tokens, mask, self.group_size)
        self.last_diversity = d
        self.steps_in_stage += 1
        if self.reference is None:
            self.reference = d
        elif d < self.reference and self.steps_in_stage >= self.min_stage_steps:
            self.temperature = min(round(self.temperature + self.raise_by, 6), self.t_max)
            self.steps_in_stage = 0


class UniformRandom(OpenLoop):
    """A fresh uniform draw from the candidate grid every step ("any variation helps")."""

    def __init__(self, temperatures: Sequence[float] = PAPER_TEMPERATURES, seed: int = 0) -> None:
        if not temperatures or min(temperatures) <= 0.0:
            raise ValueError(f"need a non-empty grid of positive temperatures; got {temperatures}")
        self.temperatures = tuple(float(t) for t in temperatures)
        self.rng = np.random.default_rng(seed)

    def sample(self) -> float:
        return self.temperatures[int(self.rng.integers(len(self.temperatures)))]


def mean_token_entropy(
    logits: torch.Tensor, mask: torch.Tensor | None, temperature: float
) -> float:
    """Masked mean entropy (nats) of softmax(logits / T) over positions; logits [B, L, V]."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    ent = -(logp.exp() * logp).sum(-1)
    if mask is None:
        return float(ent.mean())
    m = mask.float()
    return float((ent * m).sum() / m.sum().clamp_min(1.0))


class EntropyTargetController:
    """E3-style closed-form controller of the sampling temperature toward a target entropy.

    ``T <- T * (1 + T * ln(H* / H) / (ln V + ln ln V))``, clipped to ``[t_min, t_max]``, where
    H is the mean token entropy of this step's rollouts under softmax(z / T) and H* the mean of
    the first ``init_steps`` steps' H (unless ``target_entropy`` is given).

    With ``anneal_steps`` = S (the run's length), H* is annealed over the last 40% of the S
    steps: ``H*_s = H*_0 * (0.9 + 0.1 * (1 + cos(pi * progress)) / 2)``, progress rising from 0
    at step 0.6 S to 1 at step S (E3's optional target annealing, down to 0.9 H*_0).
    """

    def __init__(
        self,
        vocab_size: int,
        t_init: float = 1.0,
        t_min: float = 0.6,
        t_max: float = 1.5,
        init_steps: int = 1,
        target_entropy: float | None = None,
        anneal_steps: int | None = None,
    ) -> None:
        if vocab_size < 3:
            raise ValueError(f"vocab_size must be >= 3 (ln ln V > 0); got {vocab_size}")
        if not 0.0 < t_min <= t_init <= t_max:
            raise ValueError(f"need 0 < t_min <= t_init <= t_max; got {t_min}, {t_init}, {t_max}")
        self.norm = math.log(vocab_size) + math.log(math.log(vocab_size))
        self.temperature = float(t_init)
        self.t_min, self.t_max = t_min, t_max
        self.init_steps = init_steps
        self.target = target_entropy
        self.initial: list[float] = []
        self.last_entropy: float | None = None
        self.anneal_steps = check_optional_int("anneal_steps", anneal_steps)
        self.steps = 0

    def current_target(self) -> float | None:
        """H* for the next update (annealed when ``anneal_steps`` is set)."""
        if self.target is None or self.anneal_steps is None:
            return self.target
        start = 0.6 * self.anneal_steps
        progress = min(max((self.steps - start) / (self.anneal_steps - start), 0.0), 1.0)
        return self.target * (0.9 + 0.1 * (1.0 + math.cos(math.pi * progress)) / 2.0)

    def sample(self) -> float:
        return self.temperature

    def observe(
        self,
        logits_or_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        *,
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        source_temperature: float = 1.0,
    ) -> None:
        if not bool(torch.isfinite(logits_or_logprobs).all()):
            raise ValueError("logits contain NaN or inf")
        raw = logits_or_logprobs.float() * source_temperature
        h = mean_token_entropy(raw, mask, self.temperature)
        self.last_entropy = h
        target = self.current_target()
        self.steps += 1
        if target is None:
            self.initial.append(h)
            if len(self.initial) == self.init_steps:
                self.target = sum(self.initial) / len(self.initial)
            return
        ratio = math.log(target / max(h, 1e-8))
        new = self.temperature * (1.0 + self.temperature * ratio / self.norm)
        self.temperature = min(max(new, self.t_min), self.t_max)
