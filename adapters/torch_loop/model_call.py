"""The one seam between the torch loop and a user's causal LM.

Supported models: any ``nn.Module`` whose ``forward(input_ids, ...)`` returns either a logits
tensor [B, L, V] or an object with ``.logits`` (and ``.past_key_values`` or ``.cache`` when
called with ``use_cache=True``), as Hugging Face ``*ForCausalLM`` models do. The cache goes back
in through ``past_key_values=`` (transformers < 5.2x, most custom models) or ``cache=``
(transformers 5.2x renamed it), whichever ``forward`` declares; a PEFT-wrapped model's
``**kwargs`` forward uses its base model's name. Keyword arguments are passed only when
``forward`` declares them (or takes ``**kwargs``), so plain modules work unchanged on the
no-cache path.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSignature:
    """Which optional keyword arguments ``model.forward`` accepts; ``cache_kwarg`` names the
    KV-cache argument (None: the model has no cache)."""

    cache_kwarg: str | None
    attention_mask: bool
    position_ids: bool

    @classmethod
    def of(cls, model: nn.Module) -> ModelSignature:
        """Read ``model.forward``'s parameters. A wrapper whose ``forward`` takes ``**kwargs``
        and has ``get_base_model()`` (PEFT's ``PeftModel``) forwards them to the base model,
        so its cache argument is the base model's."""
        params = inspect.signature(model.forward).parameters
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        cache_kwarg = next((k for k in ("past_key_values", "cache") if k in params), None)
        get_base = getattr(model, "get_base_model", None)
        if cache_kwarg is None and var_kw and callable(get_base):
            base = get_base()
            if isinstance(base, nn.Module) and base is not model:
                cache_kwarg = cls.of(base).cache_kwarg
        return cls(
            cache_kwarg=cache_kwarg if "use_cache" in params or var_kw else None,
            attention_mask="attention_mask" in params or var_kw,
            position_ids="position_ids" in params or var_kw,
        )


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """int64 [B, L] position of each token counting only unmasked ones (0 for left padding)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def call_model(
    model: nn.Module,
    sig: ModelSignature,
    input_ids: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    past_key_values: Any = None,
    use_cache: bool = False,
) -> tuple[torch.Tensor, Any]:
    """Run ``model`` once; returns (logits [B, L, V], past_key_values or None).

    ``attention_mask`` covers cached plus new tokens ([B, S + L]); ``position_ids`` the new
    tokens only ([B, L]).
    """
    kwargs: dict[str, Any] = {}
    if use_cache:
        if sig.cache_kwarg is None:
            raise ValueError(
                f"{type(model).__name__}.forward takes no past_key_values/use_cache; "
                "pass use_cache=False for the no-cache path"
            )
        kwargs.update({sig.cache_kwarg: past_key_values, "use_cache": True})
    if attention_mask is not None:
        if not sig.attention_mask:
            raise ValueError(
                f"{type(model).__name__}.forward takes no attention_mask, so padded prompts "
                "cannot be handled; give equal-length prompts and attention_mask=None"
            )
        kwargs["attention_mask"] = attention_mask
        if sig.position_ids and position_ids is not None:
            kwargs["position_ids"] = position_ids
    out = model(input_ids, **kwargs)
    logits = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise TypeError(
            f"{type(model).__name__} must return logits [B, L, V] or an object with .logits; "
            f"got {type(out).__name__}"
        )
    past = None
    if use_cache:
        past = getattr(out, "past_key_values", None)
        past = getattr(out, "cache", None) if past is None else past
    if use_cache and past is None:
        raise ValueError(f"{type(model).__name__} returned no past_key_values with use_cache=True")
    return logits, past
