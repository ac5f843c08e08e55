"""Fused multi-temperature sequence log-likelihood from logits, in plain PyTorch (no Triton).

For K temperatures at once it reads each valid token's logit row once, upcasts it to fp32 in a
small reusable buffer, shares the row max and the target logit across all K and spends one
exp-sum per temperature (``ExpSums``: clamped exps on CPU, power sums on GPU; see
``exp_sums`` for the algebra).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from tampo_core.loglik.budget import rows_within_budget
from tampo_core.loglik.exp_sums import ExpSums, finite_shift, uses_power_sums
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

CPU_CHUNK_BYTES = 4 * 2**20
"""CPU chunk working set of one worker thread: small enough to stay in a core's L2/L3 slice
(2 rows at V = 152k; ``benchmarks/kernel_cpu.py`` measured 1-8 rows there within noise)."""

CUDA_CHUNK_ROWS = 1024
"""Preferred rows per chunk on CUDA, capped by the chunk budget (73 rows at V = 152k, bf16).
``benchmarks/kernel_gpu.py`` sweeps 16-1024 rows: time falls monotonically with the chunk
(H200, V = 152k, N = 16k, K = 10: 160 ms at 32 rows, 124 ms at 73, 93 ms at 1024 with
+891 MiB), so the default fills the budget; pass ``chunk_size`` to trade memory for speed."""


def default_chunk_rows(device: torch.device, vocab: int, dtype: torch.dtype) -> int:
    """Rows per chunk used when ``chunk_size`` is None, within the 64 MiB chunk budget.

    Per row the kernel holds the gathered row in the input dtype and one fp32 row of ``V``
    values, plus an fp32 scratch row for the clamped (CPU) ``ExpSums`` strategy.
    """
    fp32_rows = 1 if uses_power_sums(device) else 2
    per_row = (4 * fp32_rows + torch.empty((), dtype=dtype).element_size()) * vocab
    if device.type == "cpu":
        return rows_within_budget(max(1, CPU_CHUNK_BYTES // per_row), per_row)
    return rows_within_budget(CUDA_CHUNK_ROWS, per_row)


@torch.no_grad()
def multi_temperature_loglik(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    temperatures: Sequence[float] | torch.Tensor,
    mask: torch.Tensor | None = None,
    source_temperature: float = 1.0,
    chunk_size: int | None = None,
) -> TemperatureLoglik:
    """Mean tempered log-likelihood of each sequence at each of K temperatures.

    ``out[b, k] = mean_{t: mask[b, t]} log_softmax(z[b, t] / T_k)[tokens[b, t]]`` with
    ``z = logits * source_temperature`` (the raw logits when ``logits`` were already divided by
    ``source_temperature``).

    Args:
        logits: [B, L, V] float32/bfloat16/float16; position t scores ``tokens[:, t]`` (the
            caller aligns/shifts). Any strides; never copied as a whole, never modified.
        tokens: [B, L] int64 (or int32); ids must lie in [0, V) where ``mask`` is set.
        temperatures: K temperatures in [1e-4, 1e4] (sequence of floats or a 1-D tensor).
        mask: [B, L] bool or 0/1 integer; None means every position is valid.
        source_temperature: finite > 0 (a Python or numpy number, or a 0-d tensor).
        chunk_size: valid-token rows per fp32 chunk; None picks a device default within a
            64 MiB buffer budget (``default_chunk_rows``). Results do not depend on it beyond
            fp32 rounding.

    Returns:
        ``TemperatureLoglik``: ``loglik`` float32 [B, K] on ``logits.device``, detached, and
        ``num_tokens`` int64 [B]. A sequence with no valid token (also ``L = 0``) has count 0
        and a NaN row; a valid token whose target logit is -inf gives -inf; NaN or +inf logits
        in a valid row give NaN for that sequence.
    """
    check_float_tensor("logits", logits, 3, "[B, L, V]")
    batch, length, vocab = logits.shape
    if vocab < 1:
        raise ValueError(expected("logits", "a vocabulary size V >= 1", vocab))
    temps = check_temperatures("temperatures", temperatures)
    scale = check_positive("source_temperature", source_temperature)
    rows = check_optional_int("chunk_size", chunk_size)
    packed = pack_valid_tokens(tokens, mask, batch, length, vocab, logits.device)
    if rows is None:
        rows = default_chunk_rows(logits.device, vocab, logits.dtype)
    betas = [scale / t for t in temps]
    rows = min(rows, max(packed.num_tokens, 1))
    shift, log_sums = _chunked_row_stats(logits, packed, betas, rows)
    target = logits[packed.batch, packed.pos, packed.targets].float()
    return finish_mean_loglik(target, shift, log_sums, betas, packed)


def _chunked_row_stats(
    logits: torch.Tensor,
    packed: PackedTokens,
    betas: list[float],
    rows: int,
    power: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row max shift [N] and ``log S_k`` [K, N] (fp32) of every valid token's logit row.

    ``power``: the ``ExpSums`` strategy, None for the device's (the GPU benchmark sweeps both).

    Chunks of ``rows`` rows run on the calling thread, or on CPU (large calls) on
    ``chunk_workers`` threads, each with its own chunk buffers (see ``workers``). Neither
    host synchronisation nor host-to-device copies happen in the loop, so on CUDA it can be
    captured in a CUDA graph.
    """
    device = logits.device
    vocab = logits.shape[2]
    n = packed.num_tokens
    shift = torch.empty(n, dtype=torch.float32, device=device)
    sums = torch.empty(len(betas), n, dtype=torch.float32, device=device)
    table = _row_table(logits, packed) if n else None
    num_chunks = -(-n // rows)
    power = uses_power_sums(device) if power is None else power
    fp32_rows = 1 if power else 2  # as in default_chunk_rows
    chunk_bytes = rows * vocab * (4 * fp32_rows + logits.element_size())
    workers = chunk_workers(device, num_chunks, n * vocab, chunk_bytes)

    def make_worker() -> Callable[[int], None]:
        buf = torch.empty(rows * vocab, dtype=torch.float32, device=device)
        row_max = torch.empty(rows, dtype=torch.float32, device=device)
        exp_sums = ExpSums(betas, power, rows * vocab, device)

        def work(chunk: int) -> None:
            start = chunk * rows
            stop = min(start + rows, n)
            x = buf[: (stop - start) * vocab].view(stop - start, vocab)
            if table is None:
                x.copy_(logits[packed.batch[start:stop], packed.pos[start:stop]])
            else:
                x.copy_(torch.index_select(table[0], 0, table[1][start:stop]))
            torch.amax(x, dim=1, out=row_max[: stop - start])
            shift[start:stop] = finite_shift(row_max[: stop - start])
            x.sub_(shift[start:stop].unsqueeze(1))
            exp_sums(x, sums[:, start:stop])

        return work

    run_chunks(num_chunks, workers, make_worker)
    return shift, sums.log_()


def _row_table(
    logits: torch.Tensor, packed: PackedTokens
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A [R, V] view of the logits' storage and each valid token's row in it, or None.

    Exists when the vocabulary axis is contiguous and the batch and position strides are
    multiples of V (contiguous logits, slices along L): a chunk is then gathered with one
    index, which is cheaper than indexing two axes.
    """
    batch, length, vocab = logits.shape
    stride_b, stride_t, stride_v = logits.stride()
    if stride_v != 1 or stride_b % vocab or stride_t % vocab:
        return None
    step_b, step_t = stride_b // vocab, stride_t // vocab
    num_rows = (batch - 1) * step_b + (length - 1) * step_t + 1
    table = logits.as_strided((num_rows, vocab), (vocab, 1))
    return table, packed.batch * step_b + packed.pos * step_t
