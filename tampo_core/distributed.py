"""Cross-rank reduction of the meta-policy's per-batch sums (torch.distributed, optional)."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def distributed_ready() -> bool:
    """True when a default ``torch.distributed`` process group exists."""
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(values: np.ndarray) -> np.ndarray:
    """Sum a float64 vector over all ranks of the default process group.

    The tensor goes to the current CUDA device for NCCL and stays on the CPU otherwise.

    Args:
        values: float64 ``[M]``, identical length on every rank.

    Returns:
        float64 ``[M]``, the elementwise sum, identical on every rank.
    """
    device = torch.device("cpu")
    if "nccl" in str(dist.get_backend()).lower():
        device = torch.device("cuda", torch.cuda.current_device())
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).to(device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy().astype(np.float64)
