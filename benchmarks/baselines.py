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

from tampo_core import PAPER_TEMPERATURES


class OpenLoop:
    """Base of the baselines that ignore feedback: ``observe`` does nothing."""

    def observe(
        self,
        logits_or_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        *,
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        source_temperature: float = 1.0,
    ) -> None:
        return None


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
    the first ``init_steps`` steps' H (unless ``target_entropy`` is given). No annealing of H*.
    """

    def __init__(
        self,
        vocab_size: int,
        t_init: float = 1.0,
        t_min: float = 0.6,
        t_max: float = 1.5,
        init_steps: int = 1,
        target_entropy: float | None = None,
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
        if self.target is None:
            self.initial.append(h)
            if len(self.initial) == self.init_steps:
                self.target = sum(self.initial) / len(self.initial)
            return
        ratio = math.log(self.target / max(h, 1e-8))
        new = self.temperature * (1.0 + self.temperature * ratio / self.norm)
        self.temperature = min(max(new, self.t_min), self.t_max)
