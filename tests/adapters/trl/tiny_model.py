"""A tiny local GRPO setup for the TRL adapter tests (no hub): tokenizer, model, config, trainer.

Imported as ``tests.adapters.trl.tiny_model`` by the tests (which skip first when TRL is absent)
and by the torchrun worker of ``test_distributed``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch
import trl
from datasets import Dataset
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

WORDS = ("<pad>", "<eos>", "<unk>", "yes", "no", "one", "two", "three", "four", "plus", "is")
PROMPTS = ("one plus two is", "two plus two is", "three plus one is", "one plus one is")


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over ``WORDS`` (pad 0, eos 1)."""
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def save_tiny_model(directory: Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2 (hidden 32, tied embeddings) saved with its tokenizer; returns the path.

    A saved path is what ``beta > 0`` needs (TRL rebuilds the reference model from it).
    """
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(WORDS),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


REWARDED = ("yes", "two", "four")


def yes_reward(completions: list[str], **_: Any) -> list[float]:
    """Fraction of words in ``REWARDED`` per completion (varies with sampling)."""
    return [sum(w in REWARDED for w in c.split()) / max(len(c.split()), 1) for c in completions]


def grpo_config(output_dir: Path, **overrides: Any) -> trl.GRPOConfig:
    """A CPU GRPOConfig of a few steps; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "output_dir": str(output_dir),
        "use_cpu": True,
        "bf16": False,
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 6,
        "max_steps": 3,
        "learning_rate": 1e-2,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "seed": 0,
        "disable_tqdm": True,
    }
    fields.update(overrides)
    return trl.GRPOConfig(**fields)


def make_trainer(
    trainer_cls: type,
    model_dir: Path,
    output_dir: Path,
    config: dict[str, Any] | None = None,
    **trainer_kwargs: Any,
) -> Any:
    """``trainer_cls`` on the tiny model with ``grpo_config(output_dir, **config)``."""
    from transformers import AutoModelForCausalLM

    dataset = Dataset.from_dict({"prompt": list(PROMPTS) * 4})
    return trainer_cls(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        reward_funcs=yes_reward,
        args=grpo_config(output_dir, **(config or {})),
        train_dataset=dataset,
        processing_class=build_tokenizer(),
        **trainer_kwargs,
    )


def scoring_pass_counter(model: torch.nn.Module) -> list[int]:
    """Count backbone passes run without a KV cache (scoring, not generation); returns the
    one-element counter list the hook increments."""
    counter = [0]

    def hook(module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if kwargs.get("use_cache") is False:
            counter[0] += 1

    model.base_model.register_forward_hook(hook, with_kwargs=True)
    return counter
