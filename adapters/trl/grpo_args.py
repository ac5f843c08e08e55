"""What ``TampoGRPOTrainer`` accepts: its option choices, and the GRPOConfig settings it refuses
(they would override or contradict the learned temperature) or warns about (the sampler is no
longer softmax(z / T))."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from tampo_core.validation import expected

LOSS_TEMPERATURES = ("sampled", "fixed")
"""``sampled``: loss, old and reference log-probs at the round's T (TRL's convention, needed for
vLLM importance sampling); ``fixed``: at ``GRPOConfig.temperature`` whatever T sampled."""

LIKELIHOOD_SOURCES = ("hidden_states", "extra_forward")
"""``hidden_states``: reuse a scoring pass TRL already runs (zero extra backbone passes);
``extra_forward``: one extra no-grad policy pass per round, for models the hook cannot serve."""

DISTORTING_GENERATION_KWARGS = (
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
    "epsilon_cutoff",
    "eta_cutoff",
    "repetition_penalty",
    "min_new_tokens",
    "min_length",
    "min_tokens",
    "no_repeat_ngram_size",
    "bad_words_ids",
    "bad_words",
    "suppress_tokens",
    "begin_suppress_tokens",
    "sequence_bias",
    "presence_penalty",
    "frequency_penalty",
)
"""``generation_kwargs`` (HF ``generate`` and vLLM ``SamplingParams`` names) that truncate,
penalise or forbid tokens, so completions are no longer drawn from softmax(z / T). The
``min_*`` ones block EOS until a length is reached."""

PER_ROW_REASON = (
    "TRL's HF-generate path takes one temperature per generate call and its fused LM head "
    "closes over one scalar temperature, so every row of a round is sampled and scored at the "
    "same T; per-prompt (contextual) temperatures are not supported by the TRL adapter"
)


def refuse_per_row_temperature(name: str, value: object) -> None:
    """Raise ValueError if ``value`` holds several temperatures (a tensor, array or sequence)."""
    several = (isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim > 0) or isinstance(
        value, (list, tuple)
    )
    if several:
        raise ValueError(expected(name, f"one float ({PER_ROW_REASON})", f"{value!r}"))


def distorting_settings(args: Any) -> dict[str, object]:
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
    generation_kwargs = args.generation_kwargs or {}
    for key in DISTORTING_GENERATION_KWARGS:
        if key in generation_kwargs:
            found[f"generation_kwargs[{key!r}]"] = generation_kwargs[key]
    return found


def check_grpo_args(args: Any, loss_temperature: str) -> None:
    """Reject settings that would override or contradict the learned temperature; warn when
    the sampler is not softmax(z / T).

    Raises:
        ValueError: ``temperature`` in ``generation_kwargs`` (it silently wins over the sampled T
            in vLLM and HF generate); ``do_sample=False`` or ``num_beams > 1`` there (no
            temperature is sampled at all); a non-scalar ``GRPOConfig.temperature``;
            ``loss_temperature="fixed"`` with vLLM importance sampling (vLLM log-probs are at
            the sampled T, the loss would be at another).
    """
    refuse_per_row_temperature("GRPOConfig.temperature", args.temperature)
    generation_kwargs = args.generation_kwargs or {}
    if "temperature" in generation_kwargs:
        raise ValueError(
            expected(
                "GRPOConfig.generation_kwargs['temperature']",
                "no value with TampoGRPOTrainer (the meta-policy chooses T each generation round "
                "and a value here would silently override it; set the candidates with "
                "TampoConfig(temperatures=...))",
                repr(generation_kwargs["temperature"]),
            )
        )
    if generation_kwargs.get("do_sample", True) is False:
        raise ValueError(
            expected(
                "GRPOConfig.generation_kwargs['do_sample']",
                "True or unset with TampoGRPOTrainer (greedy decoding ignores the temperature "
                "the meta-policy learns)",
                "False",
            )
        )
    if generation_kwargs.get("num_beams", 1) != 1:
        raise ValueError(
            expected(
                "GRPOConfig.generation_kwargs['num_beams']",
                "1 or unset with TampoGRPOTrainer (beam search does not sample softmax(z / T))",
                repr(generation_kwargs["num_beams"]),
            )
        )
    if loss_temperature == "fixed" and args.use_vllm and args.vllm_importance_sampling_correction:
        raise ValueError(
            expected(
                "loss_temperature",
                "'sampled' with use_vllm=True and vllm_importance_sampling_correction=True "
                "(vLLM log-probs are at the sampled T, the loss would be at "
                f"GRPOConfig.temperature={args.temperature}), or "
                "vllm_importance_sampling_correction=False",
                "'fixed'",
            )
        )
    distorting = distorting_settings(args)
    if distorting:
        warnings.warn(
            f"TAMPO with truncated or constrained sampling ({distorting}): completions are no "
            "longer drawn from softmax(z / T), so the meta-policy's likelihoods and TRL's "
            "log-probs describe a different distribution than the sampler's. Prefer top_p=1, "
            "top_k=0, min_p=None, repetition_penalty=1 and no min_new_tokens / token bans.",
            UserWarning,
            stacklevel=3,
        )
