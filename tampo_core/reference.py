"""A slow reference of TAMPO written line by line from the paper's equations.

Pure Python floats and loops, no vectorisation: the property tests hold the fast code to it.
It shares no code with the fast path (only the config). ``reference_multi_temperature_loglik``
is the float64 torch transcription of the likelihood the kernel tests compare against.
The options beyond the paper (``TampoConfig.likelihood``, ``sparsemax_scale``, ``warmup``,
``meta_advantage``) are written out here too, from their equations.
"""

from __future__ import annotations

import math

from tampo_core.config import TampoConfig
from tampo_core.loglik.reference import reference_multi_temperature_loglik

__all__ = [
    "ReferenceTampo",
    "reference_batch_advantage",
    "reference_loglik",
    "reference_meta_advantages",
    "reference_minmax_policy",
    "reference_multi_temperature_loglik",
    "reference_nucleus",
    "reference_sparsemax",
    "reference_sparsemax_inputs",
]


def reference_sparsemax(values: list[float]) -> list[float]:
    """Sparsemax of one vector: sort descending, find the support k(z), threshold tau(z)."""
    ordered = sorted(values, reverse=True)
    support, running = 0, 0.0
    for k, value in enumerate(ordered, start=1):
        running += value
        if 1.0 + k * value > running:
            support = k
    tau = (sum(ordered[:support]) - 1.0) / support
    return [max(value - tau, 0.0) for value in values]


def reference_batch_advantage(loglik: list[list[float]], advantages: list[float]) -> list[float]:
    """Eq. 9 and the batch mean: A_B^(k) = (1/N) sum_i sparsemax(l_i)_k * A_i."""
    num_temperatures = len(loglik[0])
    totals = [0.0] * num_temperatures
    for row, advantage in zip(loglik, advantages, strict=True):
        weights = reference_sparsemax(row)
        for k in range(num_temperatures):
            totals[k] += weights[k] * advantage
    return [total / len(loglik) for total in totals]


def reference_minmax_policy(ema: list[float]) -> list[float]:
    """Eq. 12 then normalisation; uniform when every entry is (numerically) equal."""
    low, high = min(ema), max(ema)
    if high - low < 1e-12:
        return [1.0 / len(ema)] * len(ema)
    scaled = [(value - low) / (high - low) for value in ema]
    return [value / sum(scaled) for value in scaled]


def reference_nucleus(probs: list[float], top_p: float) -> list[int]:
    """Indices kept by top-p: descending order (ties: lower index first), shortest prefix whose
    mass reaches top_p, at least one."""
    order = sorted(range(len(probs)), key=lambda k: (-probs[k], k))
    kept, mass = [], 0.0
    for k in order:
        kept.append(k)
        mass += probs[k]
        if mass >= top_p - 1e-12:
            break
    return kept


def reference_loglik(
    logits: list[list[list[float]]],
    tokens: list[list[int]],
    mask: list[list[bool]],
    temperatures: tuple[float, ...],
) -> list[list[float]]:
    """l_T(tau_i) = (1/|tau_i|) sum_t log softmax(z_t / T)[o_t] over valid tokens (NaN if none)."""
    result = []
    for row_logits, row_tokens, row_mask in zip(logits, tokens, mask, strict=True):
        row = []
        for temperature in temperatures:
            total, count = 0.0, 0
            for z, token, valid in zip(row_logits, row_tokens, row_mask, strict=True):
                if not valid:
                    continue
                scaled = [value / temperature for value in z]
                peak = max(scaled)
                log_norm = peak + math.log(sum(math.exp(value - peak) for value in scaled))
                total += scaled[token] - log_norm
                count += 1
            row.append(total / count if count else math.nan)
        result.append(row)
    return result


def reference_sparsemax_inputs(
    loglik: list[list[float]], num_tokens: list[int] | None, config: TampoConfig
) -> list[list[float]]:
    """s_ik = c * l_ik ("mean", the paper at c = 1) or c * n_i * l_ik ("sum")."""
    rows = []
    for i, row in enumerate(loglik):
        factor = config.sparsemax_scale
        if config.likelihood == "sum":
            if num_tokens is None:
                raise ValueError("likelihood='sum' needs the token counts")
            factor *= num_tokens[i]
        rows.append([factor * value for value in row])
    return rows


def reference_meta_advantages(
    advantages: list[float], rewards: list[float] | None, config: TampoConfig
) -> list[float]:
    """The given advantages, or (r_i - mean r) / (population std r + 1e-6) over the batch."""
    if config.meta_advantage == "given":
        return list(advantages)
    if rewards is None:
        raise ValueError("meta_advantage='batch_baseline' needs the rewards")
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))
    return [(r - mean) / (std + 1e-6) for r in rewards]


class ReferenceTampo:
    """The meta-policy as the paper states it: EMA from 0, min-max, normalise (and the
    options, from their equations)."""

    def __init__(self, config: TampoConfig) -> None:
        self.config = config
        self.ema = [0.0] * len(config.temperatures)
        self.num_updates = 0

    def update(
        self,
        loglik: list[list[float]],
        advantages: list[float],
        num_tokens: list[int] | None = None,
        rewards: list[float] | None = None,
    ) -> None:
        """Eq. 11 with the batch advantage of :func:`reference_batch_advantage` (every row is
        a counted trajectory; the options transform its two inputs first)."""
        batch = reference_batch_advantage(
            reference_sparsemax_inputs(loglik, num_tokens, self.config),
            reference_meta_advantages(advantages, rewards, self.config),
        )
        alpha = self.config.ema_alpha
        self.ema = [
            (1.0 - alpha) * old + alpha * new for old, new in zip(self.ema, batch, strict=True)
        ]
        self.num_updates += 1

    def probs(self) -> list[float]:
        """pi_s(T_k)."""
        return reference_minmax_policy(self.ema)

    def nucleus(self) -> list[int]:
        """The temperatures (indices) that sampling may return after warm-up."""
        return reference_nucleus(self.probs(), self.config.top_p)

    def sample_support(self) -> list[int]:
        """The indices the next draw may return: every candidate (uniform warm-up), the fixed
        warm-up temperature, or the nucleus once ``warmup_steps`` updates are done."""
        if self.num_updates >= self.config.warmup_steps:
            return self.nucleus()
        if self.config.warmup == "fixed":
            return [list(self.config.temperatures).index(self.config.warmup_temperature)]
        return list(range(len(self.config.temperatures)))
