"""Multi-temperature sequence log-likelihood straight from hidden states and the LM head.

Never builds the [N, V] logits: packed chunks of valid hidden states are projected through
vocabulary blocks of the LM head in fp32, and all K temperatures share one running max in an
online log-sum-exp. Each target logit is picked from the block that holds it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from tampo_core.loglik.budget import rows_within_budget
from tampo_core.loglik.exp_sums import EXP_FLOOR, ExpSums, finite_shift, uses_power_sums
from tampo_core.loglik.result import TemperatureLoglik, finish_mean_loglik
from tampo_core.loglik.tokens import PackedTokens, pack_valid_tokens
from tampo_core.loglik.workers import chunk_workers, run_chunks
from tampo_core.validation import (
    check_float_tensor,
    check_optional_int,
    check_positive,
    check_temperatures,
    expected,
)

CPU_CHUNK_ROWS = 64
CPU_VOCAB_BLOCK = 2048
CUDA_CHUNK_ROWS = 1024
CUDA_VOCAB_BLOCK = 32_768
"""Preferred sizes; the vocabulary block is then capped by the 64 MiB chunk budget (14,336
columns at 1024 rows, H = 4096, bf16). On an H200 (``benchmarks/kernel_gpu.py``) fewer,
larger (row chunk, vocab block) pairs were faster: per-pair launch overhead dominates."""


def default_sizes(
    device: torch.device,
    vocab: int,
    hidden: int,
    dtypes: tuple[torch.dtype, torch.dtype],
    rows: int | None,
) -> tuple[int, int]:
    """(rows per chunk, vocabulary block) used for None arguments, within the 64 MiB budget.

    ``dtypes``: (hidden dtype, LM head dtype).

    Fixed per row: the gathered hidden row, plus its fp32 copy unless the CUDA fp32-output GEMM
    takes bf16/fp16 directly. Per vocabulary column: fp32 ``[rows]`` block logits, a scratch
    copy for the clamped (CPU) ``ExpSums`` strategy, and, when a low-precision weight is
    upcast for an fp32 GEMM, one fp32 weight row.
    """
    per_row, column_bytes = _buffer_bytes(device, hidden, dtypes)
    if rows is None:
        preferred = CPU_CHUNK_ROWS if device.type == "cpu" else CUDA_CHUNK_ROWS
        rows = rows_within_budget(preferred, per_row + column_bytes(1) * min(vocab, 1024))
    preferred_block = CPU_VOCAB_BLOCK if device.type == "cpu" else CUDA_VOCAB_BLOCK
    block = rows_within_budget(preferred_block, column_bytes(rows), fixed_bytes=rows * per_row)
    return rows, min(block, vocab)


def chunk_bytes(
    device: torch.device,
    hidden: int,
    dtypes: tuple[torch.dtype, torch.dtype],
    rows: int,
    block: int,
) -> int:
    """Buffer bytes of one (row chunk, vocabulary block) pair, as ``default_sizes`` counts."""
    per_row, column_bytes = _buffer_bytes(device, hidden, dtypes)
    return rows * per_row + block * column_bytes(rows)


def _buffer_bytes(
    device: torch.device, hidden: int, dtypes: tuple[torch.dtype, torch.dtype]
) -> tuple[int, Callable[[int], int]]:
    """Bytes per chunk row, and per vocabulary column as a function of the chunk's rows."""
    hidden_dtype, weight_dtype = dtypes
    itemsize = torch.empty((), dtype=hidden_dtype).element_size()
    low_precision_mm = _fp32_mm_from_low_precision(device, hidden_dtype, weight_dtype)
    per_row = hidden * (itemsize + (0 if low_precision_mm else 4))
    fp32_columns = 1 if uses_power_sums(device) else 2
    upcast_weight = weight_dtype != torch.float32 and not low_precision_mm

    def column_bytes(rows: int) -> int:
        return 4 * fp32_columns * rows + (4 * hidden if upcast_weight else 0)

    return per_row, column_bytes


@torch.no_grad()
def multi_temperature_loglik_from_hidden(
    hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    tokens: torch.Tensor,
    temperatures: Sequence[float] | torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    logit_scale: float = 1.0,
    chunk_size: int | None = None,
    vocab_block: int | None = None,
) -> TemperatureLoglik:
    """Same result as ``multi_temperature_loglik`` on ``z = (hidden @ W.T + bias) * logit_scale``.

    Args:
        hidden: [B, L, H] float32/bfloat16/float16; position t scores ``tokens[:, t]``.
        lm_head_weight: [V, H] float32/bfloat16/float16, same device.
        tokens: [B, L] int64 (or int32), ids in [0, V) where ``mask`` is set.
        temperatures: K temperatures in [1e-4, 1e4].
        mask: [B, L] bool or 0/1 integer; None means all valid.
        bias: [V] float or None.
        logit_scale: finite > 0 multiplier of the projected logits (``1 / T_source``).
        chunk_size: valid-token rows per chunk (None: device default within 64 MiB buffers).
        vocab_block: vocabulary columns per block (None: device default; >= V means one block).

    Returns:
        ``TemperatureLoglik`` (``loglik`` float32 [B, K], detached; ``num_tokens`` int64 [B]):
        count 0 and a NaN row for sequences without valid tokens, -inf for a -inf target
        logit. Logits are fp32 GEMM outputs of the input values (on CUDA, cuBLAS bf16 GEMM
        accuracy: 8e-5 nats vs float64 measured at H = 4096 on an H200).
    """
    check_float_tensor("hidden", hidden, 3, "[B, L, H]")
    check_float_tensor("lm_head_weight", lm_head_weight, 2, "[V, H]")
    batch, length, width = hidden.shape
    vocab = lm_head_weight.shape[0]
    if lm_head_weight.shape[1] != width:
        raise ValueError(
            expected("lm_head_weight", f"shape [V, H] with H = {width}", list(lm_head_weight.shape))
        )
    if vocab < 1:
        raise ValueError(expected("lm_head_weight", "V >= 1 rows", vocab))
    if lm_head_weight.device != hidden.device:
        raise ValueError(
            expected("lm_head_weight", f"device {hidden.device}", lm_head_weight.device)
        )
    if bias is not None:
        check_float_tensor("bias", bias, 1, "[V]")
        if bias.shape[0] != vocab or bias.device != hidden.device:
            raise ValueError(
                expected(
                    "bias",
                    f"shape [V] = [{vocab}] on {hidden.device}",
                    f"{list(bias.shape)} on {bias.device}",
                )
            )
    temps = check_temperatures("temperatures", temperatures)
    scale = check_positive("logit_scale", logit_scale)
    rows = check_optional_int("chunk_size", chunk_size)
    block = check_optional_int("vocab_block", vocab_block)
    packed = pack_valid_tokens(tokens, mask, batch, length, vocab, hidden.device, "hidden")
    default_rows, default_block = default_sizes(
        hidden.device, vocab, width, (hidden.dtype, lm_head_weight.dtype), rows
    )
    rows = min(default_rows, max(packed.num_tokens, 1))
    block = min(block or default_block, vocab)
    betas = [1.0 / t for t in temps]
    projection = _Projection(lm_head_weight, bias, scale, hidden.dtype)
    buffers = chunk_bytes(hidden.device, width, (hidden.dtype, lm_head_weight.dtype), rows, block)
    target, shift, log_sums = _chunked_online_stats(
        hidden, packed, projection, betas, (rows, block, buffers)
    )
    return finish_mean_loglik(target, shift, log_sums, betas, packed)


def _fp32_mm_from_low_precision(
    device: torch.device, hidden_dtype: torch.dtype, weight_dtype: torch.dtype
) -> bool:
    """Whether ``torch.mm(..., out_dtype=float32)`` is used: CUDA, both operands bf16 or both
    fp16. Otherwise both are upcast and multiplied in fp32."""
    return (
        device.type == "cuda"
        and hidden_dtype == weight_dtype != torch.float32
        and _cuda_mm_out_dtype_supported()
    )


@functools.cache
def _cuda_mm_out_dtype_supported() -> bool:
    """Whether this torch build has the CUDA ``torch.mm(..., out_dtype=...)`` overload."""
    probe = torch.zeros(1, 1, dtype=torch.bfloat16, device="cuda")
    try:
        torch.mm(probe, probe, out_dtype=torch.float32)
    except (TypeError, RuntimeError, NotImplementedError):
        return False
    return True


class _Projection:
    """fp32 logits ``(h @ W[cols].T + bias[cols]) * scale`` for blocks of columns."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        scale: float,
        hidden_dtype: torch.dtype,
    ) -> None:
        self.weight = weight
        self.bias = bias
        self.scale = scale
        self.low_precision_mm = _fp32_mm_from_low_precision(
            weight.device, hidden_dtype, weight.dtype
        )

    def operand(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden rows [c, H] in the GEMM's input dtype (fp32 unless the CUDA fp32-out GEMM)."""
        return h if self.low_precision_mm else h.float()

    def block_logits(
        self, h: torch.Tensor, start: int, stop: int, buffer: torch.Tensor | None
    ) -> torch.Tensor:
        """fp32 logits [c, stop - start] of columns [start, stop) for ``operand`` rows ``h``.

        Written into ``buffer`` (same shape); the CUDA bf16/fp16 GEMM with fp32 output takes
        ``buffer=None`` and returns a fresh tensor from the caching allocator.
        """
        w = self.weight[start:stop]
        if self.low_precision_mm:
            out = torch.mm(h, w.T, out_dtype=torch.float32)
        else:
            out = torch.mm(h, w.float().T, out=buffer)
        self._affine_(out, None if self.bias is None else self.bias[start:stop])
        return out

    def _affine_(self, logits: torch.Tensor, bias: torch.Tensor | None) -> None:
        if bias is not None:
            logits.add_(bias.float())
        if self.scale != 1.0:
            logits.mul_(self.scale)


def _chunked_online_stats(
    hidden: torch.Tensor,
    packed: PackedTokens,
    projection: _Projection,
    betas: list[float],
    sizes: tuple[int, int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Target logits [N], row max shifts [N] and ``log S_k`` [K, N] (fp32).

    ``sizes``: (rows per chunk, vocabulary block, buffer bytes of one chunk); chunks run on
    the calling thread or on ``chunk_workers`` CPU threads, each with its own buffers.

    The sums come from a vocabulary-blocked online log-sum-exp that shares one running max
    across all K; each target logit is picked from the block that holds it, so it is exactly
    one of the values the sums saw.
    """
    device = hidden.device
    n = packed.num_tokens
    vocab = projection.weight.shape[0]
    target = torch.empty(n, dtype=torch.float32, device=device)
    shift = torch.empty(n, dtype=torch.float32, device=device)
    sums = torch.empty(len(betas), n, dtype=torch.float32, device=device)
    beta = torch.tensor(betas, dtype=torch.float32, device=device).unsqueeze(1)
    rows, block, buffer_bytes = sizes
    num_chunks = -(-n // rows)
    workers = chunk_workers(device, num_chunks, n * vocab, buffer_bytes)

    def make_worker() -> Callable[[int], None]:
        # The CUDA bf16/fp16 GEMM allocates its fp32 output itself.
        buf = None if projection.low_precision_mm else torch.empty(rows * block, device=device)
        exp_sums = ExpSums(betas, uses_power_sums(device), rows * block, device)
        block_sums = torch.empty(len(betas), rows, dtype=torch.float32, device=device)

        def work(chunk: int) -> None:
            start = chunk * rows
            stop = min(start + rows, n)
            c = stop - start
            h = projection.operand(hidden[packed.batch[start:stop], packed.pos[start:stop]])
            targets = packed.targets[start:stop]
            run_max = torch.full((c,), -torch.inf, dtype=torch.float32, device=device)
            run_sums = sums[:, start:stop].zero_()
            for col in range(0, vocab, block):
                width = min(block, vocab - col)
                out = None if buf is None else buf[: c * width].view(c, width)
                x = projection.block_logits(h, col, col + width, out)
                local = targets - col
                picked = x.gather(1, local.clamp(0, width - 1).unsqueeze(1)).squeeze(1)
                inside = (local >= 0) & (local < width)
                target[start:stop] = torch.where(inside, picked, target[start:stop])
                new_max = torch.maximum(run_max, x.amax(dim=1))
                new_shift = finite_shift(new_max)
                x.sub_(new_shift.unsqueeze(1))
                exp_sums(x, block_sums[:, :c])
                # Old sums are relative to the old max: rescale by exp(beta (M_old - M_new));
                # a -inf old max (nothing seen yet) gives a factor of ~0, never -inf - -inf.
                factor = (beta * (run_max - new_shift).unsqueeze(0)).clamp_(min=EXP_FLOOR).exp_()
                run_sums.mul_(factor).add_(block_sums[:, :c])
                run_max = new_max
                del x  # free before the next block's GEMM allocates
            del h
            shift[start:stop] = finite_shift(run_max)

        return work

    run_chunks(num_chunks, workers, make_worker)
    return target, shift, sums.log_()
