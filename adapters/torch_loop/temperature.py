"""One sampling temperature for the whole batch, or one per row (per-prompt temperatures).

A per-row temperature is a 1-D tensor ``[B]``: row ``i`` is sampled from, and scored by,
``softmax(z / T_i)``. ``ContextualTempMetaPolicy.sample`` returns one temperature per prompt
group; :func:`group_temperatures` repeats them over each group's rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tampo_core.validation import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    check_int,
    check_real,
    check_temperature,
    check_temperatures,
    expected,
)

Temperature = float | torch.Tensor
"""A Python float (one T for the batch) or a float tensor ``[B]`` (one T per row)."""


def check_batch_temperature(
    name: str, temperature: object, batch_size: int, *, greedy_ok: bool
) -> float | torch.Tensor:
    """A checked scalar temperature, or a float32 ``[B]`` tensor of per-row temperatures.

    Each temperature is in ``[MIN_TEMPERATURE, MAX_TEMPERATURE]``, or exactly 0 (greedy) when
    ``greedy_ok``. A 0-d tensor counts as a scalar.
    """
    if not isinstance(temperature, torch.Tensor) or temperature.dim() == 0:
        value = check_real(name, temperature)
        return 0.0 if greedy_ok and value == 0.0 else check_temperature(name, value)
    if temperature.dim() != 1 or temperature.shape[0] != batch_size:
        rule = f"a float or a 1-D tensor [B] = [{batch_size}] (one per row)"
        raise ValueError(expected(name, rule, f"shape {list(temperature.shape)}"))
    if temperature.dtype == torch.bool or temperature.is_complex():
        raise TypeError(expected(name, "a real-valued tensor", f"dtype {temperature.dtype}"))
    rows = temperature.detach().to(torch.float64)
    allowed = (rows >= MIN_TEMPERATURE) & (rows <= MAX_TEMPERATURE)
    if greedy_ok:
        allowed |= rows == 0.0
    bad = torch.nonzero(~allowed).flatten()
    if bad.numel():
        row = int(bad[0])
        greedy = "0 (greedy) or " if greedy_ok else ""
        rule = f"{greedy}a temperature in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}] per row"
        raise ValueError(expected(f"{name}[{row}]", rule, float(rows[row])))
    return temperature.detach().to(torch.float32)


def divide_by_temperature(logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """float32 ``logits / T``, a ``[B]`` temperature broadcast over every axis after the first.

    Rows with a per-row temperature of 0 are divided by 1 (the caller takes their argmax).
    """
    z = logits.float()
    if not isinstance(temperature, torch.Tensor):
        return z / temperature
    t = temperature.to(device=z.device, dtype=torch.float32)
    t = torch.where(t == 0.0, torch.ones_like(t), t)
    return z / t.reshape(-1, *([1] * (z.dim() - 1)))


def group_temperatures(
    temperatures: Sequence[float], group_size: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """float32 ``[len(temperatures) * group_size]``: each group's temperature on its rows."""
    size = check_int("group_size", group_size, minimum=1)
    values = check_temperatures("temperatures", temperatures)
    return torch.tensor(values, dtype=torch.float32, device=device).repeat_interleave(size)
