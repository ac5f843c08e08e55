"""Plain-torch versions of flash-attn 2.8's padding helpers (same signatures and results)."""

import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = ["index_first_axis", "pad_input", "rearrange", "unpad_input"]


def index_first_axis(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``tensor[indices]`` along the first axis."""
    return tensor[indices]


def unpad_input(hidden_states, attention_mask, unused_mask=None):
    """(b, s, ...) -> (nnz, ...), indices, cu_seqlens, max_seqlen, seqlens."""
    seqlens = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
    max_seqlen = int(seqlens.max().item())
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    flat = rearrange(hidden_states, "b s ... -> (b s) ...")
    return index_first_axis(flat, indices), indices, cu_seqlens, max_seqlen, seqlens


def pad_input(hidden_states, indices, batch, seqlen):
    """(nnz, ...) -> (b, s, ...), zeros where nothing was unpadded."""
    output = torch.zeros(
        (batch * seqlen, *hidden_states.shape[1:]),
        dtype=hidden_states.dtype,
        device=hidden_states.device,
    )
    output[indices] = hidden_states
    return rearrange(output, "(b s) ... -> b s ...", b=batch)
