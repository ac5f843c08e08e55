"""Candidate likelihood paths that read each logit row once for all K temperatures (issue 15).

Measured by ``benchmarks/kernel_gpu.py`` next to the shipped kernel; none is used by
``tampo_core`` until it is measured faster there and exact to 1e-5 against float64.

``sdpa_lse_loglik``: the attention log-sum-exp trick. A fused attention kernel returns, per
query q, ``log sum_v exp(scale * q . k_v)``. With one query per temperature carrying beta_k,
keys carrying the logits z_v and scale 1, that is ``log S_k = log sum_v exp(beta_k z_v)`` for
all K in one pass over the keys, with the exps fused and the max handled online. The attention
kernels take bf16 (or fp16) inputs and accumulate products in fp32, so beta_k and (for fp32 or
fp16 logits) z_v are split into bf16 parts whose pairwise products, each exact in fp32, sum to
beta_k z_v to fp32 precision: ``q . k = sum_ij beta_part_i z_part_j``. The head dimension is the
number of products padded to a multiple of 8 (bf16 logits: 3 products, D = 8; fp32: 9, D = 16).
Each row's vocabulary is split into blocks (separate batch entries, combined with one
logsumexp) so the kernel has batch x blocks programs to spread over the device instead of one
long key sequence per row. Keys and the all-zero values cost 2 x D x 2 bytes per logit of
chunk memory.

``compiled_chunk_stats``: the shipped kernel's per-chunk work (gather, upcast, max, K exp-sums)
under ``torch.compile``. On CUDA, Inductor generates Triton kernels for it, on CPU C++; it is an
opt-in backend for measurement only, not the Triton-free default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from tampo_core.loglik.budget import rows_within_budget
from tampo_core.loglik.exp_sums import EXP_FLOOR, finite_shift
from tampo_core.loglik.result import TemperatureLoglik, finish_mean_loglik
from tampo_core.loglik.tokens import PackedTokens, pack_valid_tokens
from tampo_core.validation import check_float_tensor, check_temperatures

MAX_PARTS = 3
"""bf16 parts per fp32 value: 3 x 8 mantissa bits hold fp32's 24."""
VOCAB_BLOCK_TARGET = 2048
"""Keys per attention sequence: the vocabulary is split into blocks of about this size."""


def bf16_parts(x: torch.Tensor, max_parts: int = MAX_PARTS) -> list[torch.Tensor]:
    """bf16 tensors whose fp32 sum is ``x`` (fp32) to fp32 precision; stops once exact."""
    parts, rest = [], x.float()
    for _ in range(max_parts):
        part = rest.bfloat16()
        parts.append(part)
        rest = rest - part.float()
        if not bool(rest.any()):
            break
    return parts


def vocab_blocks(vocab: int, target: int = VOCAB_BLOCK_TARGET) -> int:
    """The number of equal blocks to split V into: the largest divisor of V up to
    ``V / target`` (1 for a prime V). No padding: a padded key would need a -inf score, which
    split products of mixed sign cannot give."""
    want = max(1, vocab // target)
    return next(b for b in range(want, 0, -1) if vocab % b == 0)


def attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """fp32 ``[B, 1, L]`` log-sum-exp of ``q @ k^T`` (scale 1) from the fused attention kernel
    of the device (``q``: ``[B, 1, L, D]``, ``k``/``v``: ``[B, 1, S, D]``, bf16).

    On CPU the inputs go in as fp32 (exact: they are bf16 values): the CPU flash kernel's bf16
    path measured 4.9e-5 error in the log-sum-exp against float64, its fp32 path 1.1e-6. On
    CUDA the flash kernel accumulates the bf16 products and the softmax in fp32; its accuracy
    is what ``benchmarks/kernel_gpu.py`` measures.
    """
    if q.device.type == "cuda":
        out = torch.ops.aten._scaled_dot_product_flash_attention(
            q, k, v, 0.0, False, False, scale=1.0
        )
    else:
        out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q.float(), k.float(), v.float(), 0.0, False, attn_mask=None, scale=1.0
        )
    return out[1].float()


def default_sdpa_rows(vocab: int, head_dim: int) -> int:
    """Rows per chunk within the 64 MiB budget: keys and values of ``V x D`` bf16 each."""
    return rows_within_budget(1024, 2 * 2 * vocab * head_dim)


RowStats = Callable[[torch.Tensor, PackedTokens, list[float]], tuple[torch.Tensor, torch.Tensor]]
"""``(logits, packed, betas) -> (shift [N], log S_k [K, N])``, fp32, per valid token's row."""


@torch.no_grad()
def _loglik_from_row_stats(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    temperatures: Sequence[float],
    mask: torch.Tensor | None,
    row_stats: RowStats,
) -> TemperatureLoglik:
    """The shipped kernel's checks, token packing and per-sequence mean
    (``finish_mean_loglik``) around a candidate's ``row_stats``."""
    check_float_tensor("logits", logits, 3, "[B, L, V]")
    batch, length, vocab = logits.shape
    temps = check_temperatures("temperatures", temperatures)
    packed = pack_valid_tokens(tokens, mask, batch, length, vocab, logits.device)
    betas = [1.0 / t for t in temps]
    shift, log_sums = row_stats(logits, packed, betas)
    target = logits[packed.batch, packed.pos, packed.targets].float()
    return finish_mean_loglik(target, shift, log_sums, betas, packed)


def sdpa_lse_loglik(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    temperatures: Sequence[float],
    mask: torch.Tensor | None = None,
    chunk_size: int | None = None,
    block_target: int = VOCAB_BLOCK_TARGET,
) -> TemperatureLoglik:
    """``multi_temperature_loglik`` (same inputs and result) through the attention LSE trick.

    Args:
        logits: ``[B, L, V]`` bf16, fp16 or fp32; tokens: ``[B, L]``; mask: ``[B, L]`` bool.
        temperatures: K temperatures; chunk_size: valid-token rows per chunk (default: the
            64 MiB budget); block_target: keys per attention sequence.
    """
    stats = functools.partial(_sdpa_row_stats, chunk_size=chunk_size, block_target=block_target)
    return _loglik_from_row_stats(logits, tokens, temperatures, mask, stats)


def _sdpa_row_stats(
    logits: torch.Tensor,
    packed: PackedTokens,
    betas: list[float],
    chunk_size: int | None,
    block_target: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero shifts and ``log S_k`` from the attention kernel's log-sum-exp, chunk by chunk."""
    device, vocab, n = logits.device, logits.shape[2], packed.num_tokens
    beta_parts = bf16_parts(torch.tensor(betas, device=device))
    z_parts_count = 1 if logits.dtype == torch.bfloat16 else MAX_PARTS
    head_dim = -(-len(beta_parts) * z_parts_count // 8) * 8
    rows = max(1, min(chunk_size or default_sdpa_rows(vocab, head_dim), n))
    blocks = vocab_blocks(vocab, block_target)
    log_sums = torch.empty(len(betas), n, dtype=torch.float32, device=device)
    query = torch.zeros(1, 1, len(betas), head_dim, dtype=torch.bfloat16, device=device)
    for j in range(z_parts_count):
        for i, part in enumerate(beta_parts):
            query[0, 0, :, j * len(beta_parts) + i] = part
    queries = query.expand(rows * blocks, 1, len(betas), head_dim).contiguous()
    keys = torch.zeros(rows, vocab, head_dim, dtype=torch.bfloat16, device=device)
    values = torch.zeros(
        rows * blocks, 1, vocab // blocks, head_dim, dtype=torch.bfloat16, device=device
    )
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        c = stop - start
        z = logits[packed.batch[start:stop], packed.pos[start:stop]]
        z_parts = [z] if z.dtype == torch.bfloat16 else bf16_parts(z, MAX_PARTS)
        for j in range(z_parts_count):
            part = z_parts[j] if j < len(z_parts) else torch.zeros_like(z_parts[0])
            for i in range(len(beta_parts)):
                keys[:c, :, j * len(beta_parts) + i] = part
        k = keys[:c].view(c * blocks, 1, vocab // blocks, head_dim)
        lse = attention_lse(queries[: c * blocks], k, values[: c * blocks])  # [c * blocks, 1, K]
        log_sums[:, start:stop] = torch.logsumexp(lse.view(c, blocks, len(betas)), dim=1).T
    return torch.zeros(n, dtype=torch.float32, device=device), log_sums


def _chunk_stats(x: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row shift [c] (``finite_shift`` of the max) and ``log S_k`` [K, c] of fp32 rows ``x``
    [c, V], with the shipped kernel's clamped exps."""
    shift = finite_shift(x.amax(dim=1))
    d = (x - shift.unsqueeze(1)).unsqueeze(0) * betas.view(-1, 1, 1)
    return shift, d.clamp_min(EXP_FLOOR).exp().sum(dim=2).log()


@functools.cache
def _compiled() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    return torch.compile(_chunk_stats, dynamic=False)


def compiled_chunk_stats_loglik(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    temperatures: Sequence[float],
    mask: torch.Tensor | None = None,
    chunk_size: int = 256,
) -> TemperatureLoglik:
    """``multi_temperature_loglik`` with each chunk's row statistics from ``torch.compile``
    (one fused program per chunk shape; the last, shorter chunk compiles once more)."""

    def stats(
        z: torch.Tensor, packed: PackedTokens, betas: list[float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        beta = torch.tensor(betas, dtype=torch.float32, device=z.device)
        n = packed.num_tokens
        shift = torch.empty(n, dtype=torch.float32, device=z.device)
        log_sums = torch.empty(len(betas), n, dtype=torch.float32, device=z.device)
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            x = z[packed.batch[start:stop], packed.pos[start:stop]].float()
            shift[start:stop], log_sums[:, start:stop] = _compiled()(x, beta)
        return shift, log_sums

    return _loglik_from_row_stats(logits, tokens, temperatures, mask, stats)
