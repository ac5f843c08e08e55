"""Pieces shared by the logits and hidden-state multi-temperature log-likelihood kernels.

Notation (per valid token): ``m = max_v z_v``, ``d_v = z_v - m <= 0``, ``beta_k = 1/T_k`` and
``S_k = sum_v exp(beta_k * d_v)``; then ``log p_k(o) = beta_k * (z_o - m) - log S_k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

CHUNK_BUDGET_BYTES = 64 * 2**20
"""Target for the extra memory of one call's chunk buffers (64 MiB), independent of N."""

EXP_FLOOR = -80.0
"""Lower clamp of every exp argument on CPU: ``exp`` below about -87 hits a ~100x slower
denormal path, and ``V * e^-80`` is negligible against ``S_k >= 1``."""

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
TOKEN_DTYPES = (torch.int64, torch.int32)

TemperaturesLike = Sequence[float] | torch.Tensor


def validate_temperatures(temperatures: TemperaturesLike) -> tuple[float, ...]:
    """Return the temperatures as Python floats; each must be finite and > 0, K >= 1."""
    if isinstance(temperatures, torch.Tensor):
        if temperatures.dim() != 1:
            raise ValueError(
                f"temperatures: expected a 1-D tensor [K], got shape {tuple(temperatures.shape)}"
            )
        values = [float(v) for v in temperatures.detach().cpu().double().tolist()]
    elif isinstance(temperatures, Sequence) and not isinstance(temperatures, str):
        try:
            values = [float(v) for v in temperatures]
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"temperatures: expected a sequence of numbers, got {temperatures!r}"
            ) from err
    else:
        raise TypeError(
            "temperatures: expected a sequence of floats or a 1-D tensor, "
            f"got {type(temperatures).__name__}"
        )
    if not values:
        raise ValueError("temperatures: expected at least one temperature, got none")
    for i, value in enumerate(values):
        if not math.isfinite(value) or value <= 0.0:
            raise ValueError(f"temperatures[{i}]: expected a finite value > 0, got {value}")
    return tuple(values)


def validate_positive(name: str, value: float) -> float:
    """Return ``value`` as float; it must be a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name}: expected a finite value > 0, got {value}")
    return float(value)


def validate_optional_size(name: str, value: int | None) -> int | None:
    """Return ``value`` unchanged; it must be None or an int >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int >= 1 or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: expected an int >= 1 or None, got {value}")
    return value


def validate_float_tensor(name: str, tensor: object, dim: int, layout: str) -> torch.Tensor:
    """Check that ``tensor`` is a ``dim``-D fp32/bf16/fp16 tensor (``layout`` names the axes)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor {layout}, got {type(tensor).__name__}")
    if tensor.dim() != dim:
        raise ValueError(f"{name}: expected shape {layout}, got {tuple(tensor.shape)}")
    if tensor.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32, bfloat16 or float16, got {tensor.dtype}")
    return tensor


def rows_within_budget(preferred: int, bytes_per_row: int, fixed_bytes: int = 0) -> int:
    """Largest row count <= ``preferred`` whose buffers fit ``CHUNK_BUDGET_BYTES`` (at least 1)."""
    free = CHUNK_BUDGET_BYTES - fixed_bytes
    return max(1, min(preferred, free // max(bytes_per_row, 1)))


@dataclass(frozen=True)
class PackedTokens:
    """Valid (mask != 0) positions in row-major order.

    batch, pos, targets: int64 [N] on the input device (sequence, position, token id of each
    valid token); counts: float32 [B] valid tokens per sequence.
    """

    batch: torch.Tensor
    pos: torch.Tensor
    targets: torch.Tensor
    counts: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return int(self.batch.numel())


def pack_valid_tokens(
    tokens: object, mask: object, batch: int, length: int, vocab: int, device: torch.device
) -> PackedTokens:
    """Validate ``tokens`` [B, L] / ``mask`` [B, L] and index the valid positions.

    Token ids are range-checked against ``[0, vocab)`` only where the mask is set, so padding
    values such as -100 under a zero mask are accepted.
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens: expected a torch.Tensor [B, L], got {type(tokens).__name__}")
    if tuple(tokens.shape) != (batch, length):
        raise ValueError(
            f"tokens: expected shape [B, L] = {[batch, length]}, got {list(tokens.shape)}"
        )
    if tokens.dtype not in TOKEN_DTYPES:
        raise TypeError(f"tokens: expected dtype int64 (or int32), got {tokens.dtype}")
    if tokens.device != device:
        raise ValueError(f"tokens: expected device {device}, got {tokens.device}")
    if mask is None:
        valid = torch.ones(batch, length, dtype=torch.bool, device=device)
    else:
        valid = _validate_mask(mask, batch, length, device)
    seq, pos = valid.nonzero(as_tuple=True)
    targets = tokens[seq, pos].long()
    if targets.numel():
        low, high = (int(v) for v in torch.aminmax(targets))
        if low < 0 or high >= vocab:
            raise ValueError(
                f"tokens: expected ids in [0, {vocab}) at valid positions, "
                f"got min {low}, max {high}"
            )
    counts = valid.sum(dim=1, dtype=torch.float32)
    return PackedTokens(batch=seq, pos=pos, targets=targets, counts=counts)


def _validate_mask(mask: object, batch: int, length: int, device: torch.device) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask: expected a torch.Tensor [B, L] or None, got {type(mask).__name__}")
    if tuple(mask.shape) != (batch, length):
        raise ValueError(f"mask: expected shape [B, L] = {[batch, length]}, got {list(mask.shape)}")
    if mask.device != device:
        raise ValueError(f"mask: expected device {device}, got {mask.device}")
    if mask.dtype == torch.bool:
        return mask
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise TypeError(f"mask: expected dtype bool or an integer dtype, got {mask.dtype}")
    if mask.numel() and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask: expected values in {0, 1}, got other integers")
    return mask != 0


def finite_shift(row_max: torch.Tensor) -> torch.Tensor:
    """The shift to subtract from rows with maximum ``row_max`` [c]: -inf (all -inf row) -> 0.

    This keeps ``x - shift`` free of ``-inf - -inf`` NaNs; NaN and +inf maxima are kept and make
    the row's result NaN.
    """
    return torch.nan_to_num(row_max, nan=math.nan, posinf=math.inf, neginf=0.0)


def uses_power_sums(device: torch.device) -> bool:
    """Which ``ExpSums`` strategy a device uses: power sums off CPU, clamped exps on CPU."""
    return device.type != "cpu"


class ExpSums:
    """``S_k = sum_v exp(beta_k d_v)`` per row of shifted logits ``d <= 0``, for all K.

    Clamped strategy (CPU): per temperature ``exp(max(beta_k d, EXP_FLOOR))`` into a scratch
    buffer and a row sum; clamping per temperature avoids the CPU exp underflow slow path at a
    relative cost <= V e^-80; ``d`` is left unchanged.

    Power strategy (GPU): ``d`` is overwritten once with ``e = exp(beta_min d)``; then
    ``S_k = ||e||_r^r`` with ``r = beta_k / beta_min >= 1`` is one read-only reduction
    (``vector_norm``) per temperature. Where ``e`` underflows, every temperature's term is
    below e^-87. The exp's rounding is amplified by ``r`` (~1e-7 r relative).
    """

    def __init__(
        self, betas: Sequence[float], power: bool, max_elements: int, device: torch.device
    ) -> None:
        self.betas = list(betas)
        self.power = power
        self.beta_min = min(self.betas)
        self.ratios = [beta / self.beta_min for beta in self.betas]
        self.ratio_column = torch.tensor(self.ratios, device=device).unsqueeze(1)
        self.work = None if power else torch.empty(max_elements, device=device)

    def __call__(self, d: torch.Tensor, out: torch.Tensor) -> None:
        """Write ``S_k`` of each row of ``d`` (fp32 [c, w]) into ``out`` (fp32 [K, c])."""
        if self.power:
            d.mul_(self.beta_min).exp_()
            for k, ratio in enumerate(self.ratios):
                torch.linalg.vector_norm(d, ord=ratio, dim=1, out=out[k])
            out.pow_(self.ratio_column)
            return
        assert self.work is not None
        work = self.work[: d.numel()].view_as(d)
        for k, beta in enumerate(self.betas):
            torch.mul(d, beta, out=work)
            work.clamp_(min=EXP_FLOOR)
            work.exp_()
            torch.sum(work, dim=1, out=out[k])


def finish_mean_loglik(
    target: torch.Tensor,
    shift: torch.Tensor,
    log_sums: torch.Tensor,
    betas: Sequence[float],
    packed: PackedTokens,
    batch: int,
) -> torch.Tensor:
    """Per-token ``beta_k (g - m) - log S_k`` averaged over each sequence's valid tokens.

    target ``g``: fp32 [N] target logits; shift ``m``: fp32 [N] row shifts (``finite_shift``);
    log_sums: fp32 [K, N] ``log S_k`` relative to the shift. This O(N K) step runs in float64
    so that ``beta_k (g - m)`` (up to hundreds of nats at low T) and the sequence sums add no
    fp32 rounding. Returns fp32 [B, K]; a -inf target gives -inf, a sequence without valid
    tokens gives a NaN row.
    """
    device = log_sums.device
    beta = torch.tensor(betas, dtype=torch.float64, device=device).unsqueeze(1)
    gap = (target.double() - shift.double()).unsqueeze(0)
    logp = torch.where(gap == -math.inf, -math.inf, beta * gap - log_sums.double())
    # log p <= 0 exactly; power sums can round S_k (>= 1) a few ulps below 1.
    logp.clamp_(max=0.0)
    totals = torch.zeros(batch, len(betas), dtype=torch.float64, device=device)
    totals.index_add_(0, packed.batch, logp.T)
    return (totals / packed.counts.double().unsqueeze(1)).float()
