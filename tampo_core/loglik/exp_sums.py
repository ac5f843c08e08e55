"""Exp-sums of shifted logit rows at K temperatures, the kernels' inner loop.

Notation (per valid token): ``m = max_v z_v``, ``d_v = z_v - m <= 0``, ``beta_k = 1/T_k`` and
``S_k = sum_v exp(beta_k * d_v)``; then ``log p_k(o) = beta_k * (z_o - m) - log S_k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

EXP_FLOOR = -80.0
"""Lower clamp of every exp argument on CPU: ``exp`` below about -87 hits a ~100x slower
denormal path, and ``V * e^-80`` is negligible against ``S_k >= 1``."""


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
        # 0-d fp32 factors: a Python float is re-wrapped on every call, which doubles the
        # dispatch cost of small CPU ops (the same fp32 product either way).
        self.beta_tensors = [torch.tensor(beta, device=device) for beta in self.betas]

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
        for row, beta in zip(out.unbind(0), self.beta_tensors, strict=True):
            torch.mul(d, beta, out=work)
            work.clamp_min_(EXP_FLOOR)
            work.exp_()
            torch.sum(work, 1, out=row)
