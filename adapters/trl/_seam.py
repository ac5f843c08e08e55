"""Every touch of TRL's internals made by the TAMPO adapter, version-checked in one place.

TRL >= 1.15 fuses the LM head into ``model.forward`` (``trl.trainer.utils.add_fused_lm_head``) and
captures the loss temperature in that function's closure, so ``trainer.temperature`` is read
once. This module finds the closure cell and writes it, and names the ``GRPOTrainer`` methods and
attributes the adapter relies on. ``tests/adapters/trl/test_seam.py`` checks each of them
against the installed TRL and fails loudly when TRL changes underneath.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from types import CellType
from typing import Any

import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tampo_core.adapters._versions import require_version

SUPPORTED_TRL_PIN = ">=1.16,<1.17"
"""TRL versions the adapter is tested against. 1.15 is not: its fused LM head needs Triton, so
the seam tests cannot run on CPU, and no GPU run of 1.15 was made."""

SUPPORTED_TRL = SpecifierSet(SUPPORTED_TRL_PIN)

FUSED_FORWARD_CODE_NAME = "_fused_forward"
"""``__code__.co_name`` of the forward ``add_fused_lm_head`` installs (``functools.wraps`` renames
``__name__`` but not the code object)."""

FUSED_CLOSURE_VARS = ("temperature", "logit_scale", "final_logit_softcapping")
"""Free variables of ``_fused_forward`` the adapter reads; ``temperature`` is also written."""

OVERRIDDEN_METHODS: dict[str, tuple[str, ...]] = {
    "_generate_and_score_completions": ("self", "inputs"),
    "_get_per_token_logps_and_entropies": (
        "self",
        "model",
        "input_ids",
        "attention_mask",
        "logits_to_keep",
        "batch_size",
    ),
    "_compute_loss": ("self", "model", "inputs"),
    "log": ("self", "logs", "start_time"),
    "_save_checkpoint": ("self", "model", "trial"),
    "_load_optimizer_and_scheduler": ("self", "checkpoint"),
}
"""``GRPOTrainer`` methods the adapter overrides, with their leading parameters."""

OUTPUT_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages")
"""Keys of ``_generate_and_score_completions``'s output the adapter reads (plus the optional
``old_per_token_logps``, ``tool_mask`` and the multimodal inputs below)."""

ROW_INPUT_KEYS = ("token_type_ids", "mm_token_type_ids")
"""Multimodal model inputs in that output with one row per completion."""

IMAGE_INPUT_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "pixel_attention_mask",
    "spatial_shapes",
    "image_sizes",
    "image_position_ids",
)
"""Multimodal model inputs in that output indexed per image or tile (TRL slices them per
model family in ``_get_per_token_logps_and_entropies``)."""

UNSUPPORTED_TRAINERS = {
    "RLOOTrainer": "RLOOTrainer is not a GRPOTrainer: its generation round, buffering and loss "
    "methods differ from the ones this adapter overrides",
    "AsyncGRPOTrainer": "AsyncGRPOTrainer generates in background rollout workers that read "
    "args.temperature once at start, so a per-round temperature cannot reach them",
}
"""TRL trainers that also use the fused LM head but that TAMPO does not support, and why."""


def check_output_keys(output: dict[str, Any]) -> None:
    """Raise RuntimeError if ``_generate_and_score_completions`` no longer returns a key the
    adapter reads."""
    missing = [key for key in OUTPUT_KEYS if key not in output]
    if missing:
        raise RuntimeError(
            f"GRPOTrainer._generate_and_score_completions no longer returns {missing} (got "
            f"{sorted(output)}); the TAMPO adapter supports trl{SUPPORTED_TRL_PIN}"
        )


def check_trl_version(version: str | None = None) -> Version:
    """Raise ImportError unless the installed (or given) TRL version is supported."""
    return require_version("trl", SUPPORTED_TRL_PIN, "trl", version)


def check_overridden_methods(trainer_cls: type) -> None:
    """Raise RuntimeError if a method the adapter overrides is gone or changed its parameters."""
    for name, expected in OVERRIDDEN_METHODS.items():
        method = getattr(trainer_cls, name, None)
        if method is None:
            raise RuntimeError(
                f"{trainer_cls.__name__}.{name} no longer exists in this TRL; the TAMPO adapter "
                f"supports trl{SUPPORTED_TRL_PIN}"
            )
        params = tuple(inspect.signature(method).parameters)[: len(expected)]
        if params != expected:
            raise RuntimeError(
                f"{trainer_cls.__name__}.{name} changed its parameters: expected {expected}, "
                f"got {params}; the TAMPO adapter supports trl{SUPPORTED_TRL_PIN}"
            )


def check_trainer_class(trainer_cls: type) -> None:
    """Raise TypeError if ``trainer_cls`` mixes in a TRL trainer the adapter does not support."""
    for base in trainer_cls.__mro__:
        if base.__module__.startswith("trl") and base.__name__ in UNSUPPORTED_TRAINERS:
            raise TypeError(
                f"{trainer_cls.__name__}: expected a GRPOTrainer without {base.__name__}, got a "
                f"class deriving from it ({UNSUPPORTED_TRAINERS[base.__name__]}); TAMPO supports "
                "trl.GRPOTrainer only"
            )


def loss_mask(batch: dict[str, Any]) -> torch.Tensor:
    """``[B, C]`` mask of the completion tokens TRL's loss uses: completion x tool mask."""
    mask = batch["completion_mask"]
    return mask * batch["tool_mask"] if "tool_mask" in batch else mask


def _fused_closure(model: torch.nn.Module) -> dict[str, CellType] | None:
    """The closure cells of the fused forward installed on ``model``, or None."""
    func: Any = model.__dict__.get("forward")
    for _ in range(16):  # unwrap bound methods and decorators (accelerate, functools.wraps)
        if func is None:
            return None
        code = getattr(func, "__code__", None)
        if code is not None and code.co_name == FUSED_FORWARD_CODE_NAME:
            return dict(zip(code.co_freevars, func.__closure__ or (), strict=True))
        func = getattr(func, "__func__", None) or getattr(func, "__wrapped__", None)
    return None


def fused_head_cells(model: torch.nn.Module) -> dict[str, CellType]:
    """Cells ``temperature``, ``logit_scale``, ``final_logit_softcapping`` of ``model``'s fused
    LM head. ``model`` is the unwrapped (non-PEFT, non-DDP) causal LM TRL patched.

    Raises:
        RuntimeError: no fused forward, or one without these variables (TRL changed).
    """
    cells = _fused_closure(model)
    if cells is None:
        raise RuntimeError(
            f"no TRL fused LM head ({FUSED_FORWARD_CODE_NAME}) found on {type(model).__name__}: "
            f"the TAMPO adapter supports trl{SUPPORTED_TRL_PIN}, whose GRPOTrainer installs it"
        )
    missing = [name for name in FUSED_CLOSURE_VARS if name not in cells]
    if missing:
        raise RuntimeError(
            f"TRL's fused LM head no longer closes over {missing} (has {sorted(cells)}); the "
            f"TAMPO adapter supports trl{SUPPORTED_TRL_PIN}"
        )
    return {name: cells[name] for name in FUSED_CLOSURE_VARS}


def patched_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model object ``GRPOTrainer`` patched with the fused head: the PEFT base model, after
    removing DDP/DeepSpeed wrappers (``.module``)."""
    from accelerate.utils import is_peft_model

    while isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module
    return model.get_base_model() if is_peft_model(model) else model


def backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The module the fused forward runs before the LM head (``model.base_model``, as TRL does
    on transformers >= 5); its output's ``last_hidden_state`` feeds the head."""
    return model.base_model


def sharded_lm_head(trainer: Any) -> str | None:
    """Why the LM head weight is not whole on each rank (FSDP, DeepSpeed ZeRO-3), or None."""
    if trainer.is_fsdp_enabled:
        return "FSDP shards the LM head"
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    if trainer.is_deepspeed_enabled and plugin is not None and plugin.zero_stage == 3:
        return "DeepSpeed ZeRO-3 partitions the LM head"
    return None


def set_sampling_temperature(trainer: Any, temperature: float) -> None:
    """Point every sampler TRL uses at ``temperature``: ``trainer.temperature``, the HF
    ``generation_config`` and ``generation_kwargs`` (generate and continuous batching), and
    ``VLLMGeneration.temperature`` (vLLM colocate and server)."""
    trainer.temperature = temperature
    if trainer.use_vllm:
        trainer.vllm_generation.temperature = temperature
    else:
        trainer.generation_config.temperature = temperature
        trainer.generation_kwargs["temperature"] = temperature


@contextmanager
def rollout_temperature(trainer: Any, temperature: float) -> Iterator[None]:
    """While generating, ``trainer.args.temperature`` is ``temperature`` too: user
    ``rollout_func``s receive the trainer and commonly read it. TRL itself reads
    ``args.temperature`` only in ``__init__``; the configured value is restored afterwards (it is
    what checkpoints and loggers record)."""
    configured = trainer.args.temperature
    trainer.args.temperature = temperature
    try:
        yield
    finally:
        trainer.args.temperature = configured


def generate_every(trainer: Any) -> int:
    """Micro-batches consuming one generation round: ``steps_per_generation x num_iterations``."""
    return trainer.args.steps_per_generation * trainer.num_iterations


def old_logps_pass_runs(trainer: Any) -> bool:
    """Whether ``_generate_and_score_completions`` scores the policy once more (no grad) for
    ``old_per_token_logps`` (TRL's own condition)."""
    return trainer.args.gradient_accumulation_steps % generate_every(trainer) != 0 or bool(
        trainer.use_vllm and trainer.vllm_importance_sampling_correction
    )


def log_metric(trainer: Any, mode: str, name: str, value: float) -> None:
    """Append to TRL's metric buffer, which ``GRPOTrainer.log`` averages over ``logging_steps``
    and hands to every reporting backend (W&B, TensorBoard, trackio...)."""
    metrics: dict[str, defaultdict[str, list[float]]] = trainer._metrics
    metrics[mode][name].append(value)


def checkpoint_dir(trainer: Any, trial: Any) -> str:
    """The directory ``Trainer._save_checkpoint`` just wrote (the path TRL itself uses for its
    adaptive-entropy state)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    folder = f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}"
    return os.path.join(trainer._get_output_dir(trial=trial), folder)
