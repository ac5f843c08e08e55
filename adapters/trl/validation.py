"""Checks of a GRPOConfig and the adapter's options before any model is built."""

from __future__ import annotations

import math
import warnings
from typing import Any

LOSS_TEMPERATURES = ("sampled", "fixed")
"""``sampled``: loss, old and reference log-probs at the round's T (TRL's convention, needed for
vLLM importance sampling); ``fixed``: at ``GRPOConfig.temperature`` whatever T sampled."""

LIKELIHOOD_SOURCES = ("hidden_states", "extra_forward")
"""``hidden_states``: reuse a scoring pass TRL already runs (zero extra backbone passes);
``extra_forward``: one extra no-grad policy pass per round, for models the hook cannot serve."""

_TRUNCATING_KWARGS = ("top_p", "top_k", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else ValueError naming both."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_temperature(name: str, value: object) -> float:
    """A finite temperature > 0 as float, else ValueError/TypeError naming what came."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float > 0, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
    return float(value)


def truncation_settings(args: Any) -> dict[str, object]:
    """The sampling settings in ``args`` that make the sampler differ from softmax(z / T)."""
    found: dict[str, object] = {}
    if args.top_p != 1.0:
        found["top_p"] = args.top_p
    if args.top_k not in (0, None):
        found["top_k"] = args.top_k
    if args.min_p is not None:
        found["min_p"] = args.min_p
    if args.repetition_penalty != 1.0:
        found["repetition_penalty"] = args.repetition_penalty
    for key in (*_TRUNCATING_KWARGS, "repetition_penalty"):
        if key in (args.generation_kwargs or {}):
            found[f"generation_kwargs[{key!r}]"] = args.generation_kwargs[key]
    return found


def check_grpo_args(args: Any, loss_temperature: str) -> None:
    """Reject settings that would override or contradict the learned temperature; warn on
    truncated sampling.

    Raises:
        ValueError: ``temperature`` in ``generation_kwargs`` (it silently wins over the sampled T
            in vLLM and HF generate), or ``loss_temperature="fixed"`` with vLLM importance
            sampling (vLLM log-probs are at the sampled T, the loss would be at another).
    """
    if "temperature" in (args.generation_kwargs or {}):
        raise ValueError(
            "GRPOConfig.generation_kwargs must not set 'temperature' with TampoGRPOTrainer: the "
            "meta-policy chooses it each generation round, and a generation_kwargs value would "
            f"silently override it (got temperature={args.generation_kwargs['temperature']!r}). "
            "Set the candidates with TampoConfig(temperatures=...) instead."
        )
    if loss_temperature == "fixed" and args.use_vllm and args.vllm_importance_sampling_correction:
        raise ValueError(
            "loss_temperature='fixed' with use_vllm=True and vllm_importance_sampling_correction"
            "=True compares vLLM log-probs at the sampled T with training log-probs at "
            f"GRPOConfig.temperature={args.temperature}: expected loss_temperature='sampled' or "
            "vllm_importance_sampling_correction=False"
        )
    truncation = truncation_settings(args)
    if truncation:
        warnings.warn(
            f"TAMPO with truncated sampling ({truncation}): completions are no longer drawn from "
            "softmax(z / T), so the meta-policy's likelihoods and TRL's log-probs describe a "
            "different distribution than the sampler's. Prefer top_p=1, top_k=0, min_p=None, "
            "repetition_penalty=1.",
            UserWarning,
            stacklevel=3,
        )
