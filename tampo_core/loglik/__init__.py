"""Multi-temperature sequence log-likelihoods: the fused kernels and their float64 reference.

One concern per module: ``logits`` (from ``[B, L, V]`` logits), ``hidden`` (from hidden states
and the LM head, never building the logits), ``tokens`` (packing the valid positions),
``exp_sums`` (the K exp-sums per row), ``budget`` (chunk memory budget), ``workers`` (CPU
chunks spread over threads, robust to a busy machine), ``result`` (the ``TemperatureLoglik``
both kernels return), ``reference`` (float64, for tests) and ``memory_probe`` (op-level peak
tensor memory, for tests and benchmarks).
"""

from tampo_core.loglik.hidden import multi_temperature_loglik_from_hidden
from tampo_core.loglik.logits import multi_temperature_loglik
from tampo_core.loglik.reference import reference_multi_temperature_loglik
from tampo_core.loglik.result import TemperatureLoglik

__all__ = [
    "TemperatureLoglik",
    "multi_temperature_loglik",
    "multi_temperature_loglik_from_hidden",
    "reference_multi_temperature_loglik",
]
