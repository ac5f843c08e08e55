"""Cross-rank synchronisation of the meta-policy's updates (torch.distributed, optional).

The guarantee, as torch.distributed collectives and torchmetrics' synced state give it: every
rank runs the same collectives in the same order whatever its own input, so a bad batch on one
rank can neither leave the others waiting inside a collective nor pair their collective with a
later one. Per synchronised update:

1. Once per policy, at its first synchronised update, :func:`check_same_config` gathers every
   rank's config (``all_gather_object`` exchanges sizes first, so a different K is an error
   here rather than a crash inside the backend) and raises on every rank, naming the fields
   that differ, seed included.
2. :func:`synchronise`: one float64 all-reduce of this rank's batch sums (zeros when its
   checks failed) followed by two slots per rank, its status code (:class:`RankStatus`) and
   its update counter. Every rank reads the same sum, so every rank either returns it or raises
   the same error: naming the failing ranks and their messages (gathered in a second
   collective that only runs on that path, on every rank alike), or the differing counters.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from tampo_core.validation import expected


class RankStatus(enum.IntEnum):
    """What one rank reports in the packed all-reduce; a slot holding 0 (or any other value)
    means that rank was not in this update's collective at all."""

    OK = 1
    VALUE_ERROR = 2
    TYPE_ERROR = 3
    OTHER_ERROR = 4


_RAISED_AS: dict[RankStatus, type[Exception]] = {
    RankStatus.VALUE_ERROR: ValueError,
    RankStatus.TYPE_ERROR: TypeError,
    RankStatus.OTHER_ERROR: RuntimeError,
}
"""The exception every rank raises for a failure of the lowest failing rank's kind."""


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


def check_same_config(config_dump: dict[str, Any]) -> None:
    """Raise on every rank unless every rank holds the same config.

    Args:
        config_dump: this rank's ``TampoConfig.model_dump(mode="json")``.

    Raises:
        ValueError: on every rank alike, naming each differing field and its value per rank.
    """
    dumps: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(dumps, config_dump)
    names = sorted({name for dump in dumps for name in dump})
    differing = [name for name in names if len({repr(d.get(name)) for d in dumps}) > 1]
    if differing:
        detail = "; ".join(
            f"{name}: " + ", ".join(f"rank {r} {d.get(name)!r}" for r, d in enumerate(dumps))
            for name in differing
        )
        raise ValueError(
            expected(
                "config",
                "the same TampoConfig on every rank (seed included)",
                f"{len(differing)} differing field(s): {detail}",
            )
        )


def status_of(error: BaseException | None) -> RankStatus:
    """The status code this rank reports for its local outcome."""
    if error is None:
        return RankStatus.OK
    if isinstance(error, ValueError):
        return RankStatus.VALUE_ERROR
    if isinstance(error, TypeError):
        return RankStatus.TYPE_ERROR
    return RankStatus.OTHER_ERROR


def synchronise(payload: np.ndarray, error: Exception | None, num_updates: int) -> np.ndarray:
    """One update's all-reduce: the sums when every rank is valid, else the same error on all.

    Args:
        payload: float64 ``[M]``, this rank's additive sums (same M on every rank, which
            :func:`check_same_config` guarantees); ignored (zeros are sent) when ``error``.
        error: the exception this rank's local checks raised, or None.
        num_updates: this rank's update counter before this update.

    Returns:
        float64 ``[M]``, the sum of every rank's payload, identical on every rank.

    Raises:
        RuntimeError: some rank was not in this collective, or the ranks' update counters
            differ (a rank updated alone, e.g. with ``sync=False``).
        ValueError, TypeError, RuntimeError: some rank's checks failed (the kind of the lowest
            failing rank's error); the message names every failing rank and its message, the
            same on every rank. The failing rank chains its own error as the cause.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    block = np.zeros((world, 2))
    block[rank] = (status_of(error), num_updates)
    sent = np.zeros_like(payload) if error is not None else payload
    total = all_reduce_sum(np.concatenate([sent, block.reshape(-1)]))
    summed, block = total[: payload.shape[0]], total[payload.shape[0] :].reshape(world, 2)
    statuses, counters = block[:, 0], block[:, 1]
    known = np.isin(statuses, [int(s) for s in RankStatus])
    if not known.all():
        absent = np.flatnonzero(~known).tolist()
        raise RuntimeError(
            expected(
                "observe",
                "every rank in the same synchronised update",
                f"no valid status from rank(s) {absent} of {world} (they ran another collective"
                ", e.g. an observe with sync=False followed by other communication)",
            )
        )
    if len(set(counters.tolist())) > 1:
        per_rank = ", ".join(f"rank {r}: {int(c)}" for r, c in enumerate(counters))
        raise RuntimeError(
            expected(
                "observe",
                "the same number of past updates on every rank",
                f"{per_rank} (a rank updated alone, e.g. with sync=False on that rank only, or "
                "missed an update); the ranks' states have diverged: restore them from one "
                "checkpoint",
            )
        )
    failed = np.flatnonzero(statuses != RankStatus.OK).tolist()
    if not failed:
        return summed
    messages: list[Any] = [None] * world
    local = None if error is None else f"{type(error).__name__}: {error}"
    dist.all_gather_object(messages, local)
    reasons = "; ".join(f"rank {r}: {messages[r]}" for r in failed)
    kind = _RAISED_AS[RankStatus(int(statuses[failed[0]]))]
    message = expected(
        "observe",
        "a valid batch on every rank",
        f"{len(failed)} of {world} rank(s) failing, {reasons}; no rank's state changed",
    )
    if error is not None:
        raise kind(message) from error
    raise kind(message)
