"""Per-temperature likelihoods from the hidden states of a scoring pass TRL already runs.

A forward hook on the policy backbone sees ``last_hidden_state`` of every chunk TRL scores with
the fused LM head; each attended completion position is projected through the LM head weight at
the K candidate temperatures (``multi_temperature_loglik_from_hidden``) under no grad. No
backbone pass is added. The loss mask is applied by the caller (``mean_over_mask``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from tampo_core.adapters.trl._seam import backbone
from tampo_core.adapters.trl.likelihoods import TokenLoglik, token_loglik_from_hidden


class HiddenStateLoglik:
    """Records per-position likelihoods ``[B, C, K]`` while TRL scores completions.

    Args:
        model: the causal LM TRL patched with its fused head (unwrapped, PEFT base model).
        temperatures: the K candidate temperatures.
        logit_scale: the multiplier TRL's fused head applies to the raw logits.
    """

    def __init__(
        self, model: torch.nn.Module, temperatures: tuple[float, ...], logit_scale: float
    ) -> None:
        self._model = model
        self._temperatures = temperatures
        self._logit_scale = logit_scale

    @contextmanager
    def recording(self, logits_to_keep: int) -> Iterator[list[TokenLoglik]]:
        """Hook the backbone for the duration of one ``_get_per_token_logps_and_entropies`` call.

        Args:
            logits_to_keep: C, the number of completion positions TRL scores (the last C tokens
                of each row); the completion part of the attention mask says which are real.

        Yields:
            The list the hook fills, in row order, with one ``TokenLoglik`` per scored chunk.
        """
        chunks: list[TokenLoglik] = []

        def hook(
            module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
        ) -> None:
            hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
            input_ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
            head = self._model.get_output_embeddings()
            device = head.weight.device  # a device_map may end the backbone elsewhere
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                chunks.append(
                    token_loglik_from_hidden(
                        hidden[:, -logits_to_keep - 1 : -1].detach().to(device),
                        head.weight.detach(),
                        input_ids[:, -logits_to_keep:].to(device),
                        kwargs["attention_mask"][:, -logits_to_keep:].to(device),
                        self._temperatures,
                        None if head.bias is None else head.bias.detach(),
                        self._logit_scale,
                    )
                )

        handle = backbone(self._model).register_forward_hook(hook, with_kwargs=True)
        try:
            yield chunks
        finally:
            handle.remove()
