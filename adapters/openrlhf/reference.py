"""By-definition reference of the policy hook's likelihoods, for the tests and the GPU check.

Slow (float64 ``[B, A, V]`` temporaries per temperature). It shares no alignment code with
``action_loglik``: packed logits go back to ``[B, S, V]`` through OpenRLHF's own unpacking, the
targets are the sequences shifted by one, and the maths is ``tampo_core.loglik.reference``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tampo_core.adapters.openrlhf import _seam
from tampo_core.loglik.reference import reference_multi_temperature_loglik


def reference_action_loglik(
    logits: torch.Tensor,
    sequences: torch.Tensor,
    attention_mask: torch.Tensor,
    action_mask: torch.Tensor,
    packed: bool,
    source: float,
    temperatures: Sequence[float],
) -> torch.Tensor:
    """Masked mean over each sample's action tokens of ``log_softmax(logits * source / T_k)``
    at the next token, float64 ``[B, K]`` (NaN for a sample without action tokens).

    Args:
        logits: ``Actor.forward``'s tempered logits, ``[B, S, V]`` or packed ``[1, nnz, V]``.
        sequences: int ``[B, S]``; position ``t`` of the logits scores ``sequences[:, t + 1]``.
        attention_mask: ``[B, S]`` 0/1.
        action_mask: ``[B, A]``, the last ``A`` positions of the shifted sequence.
        packed: whether ``logits`` are packed.
        source: the temperature the logits are divided by.
        temperatures: the K candidate temperatures.
    """
    if packed:
        logits = _seam.pad_packed(logits, attention_mask)
    actions = action_mask.shape[1]
    targets = torch.roll(sequences, shifts=-1, dims=1)[:, :-1][:, -actions:]
    return reference_multi_temperature_loglik(
        logits[:, :-1][:, -actions:],
        targets,
        temperatures,
        mask=action_mask.bool(),
        source_temperature=source,
    )
