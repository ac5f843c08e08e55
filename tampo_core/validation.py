"""The project's one way to check input: every rule is written once, here.

Every error message has the shape ``<name>: expected <rule>, got <value>``. Plain functions
serve the kernels, the meta-policy and the adapters; pydantic models (``TampoConfig``, adapter
options) use the same rules through :func:`pydantic_rule`, so a rule never exists twice.
Checks only read their input: a failed check leaves every caller's state untouched.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from pydantic import AfterValidator

MIN_TEMPERATURE = 1e-4
"""Smallest accepted temperature. The kernels multiply fp32 logit gaps by ``1 / T``: at
``T >= 1e-4`` any gap up to 1e30 stays finite (< 3.4e38), while near fp32's smallest normal
(``T ~ 1e-38``) ``1 / T`` itself overflows and every likelihood becomes NaN or -inf."""

MAX_TEMPERATURE = 1e4
"""Largest accepted temperature: ``1 / T`` stays a normal fp32 number with wide margins."""

MAX_ABS_ADVANTAGE = 1e100
"""Largest accepted ``|advantage|``. The meta-policy refuses larger values rather than rescale
them: every quantity it derives (per-batch sums over any feasible number of trajectories and
ranks, the EMA, its spread ``max - min``) is then bounded far below float64's 1.8e308, so
nothing non-finite can enter its state."""

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
TOKEN_DTYPES = (torch.int64, torch.int32)


def expected(name: str, rule: str, got: object) -> str:
    """The one message shape: ``<name>: expected <rule>, got <got>``."""
    return f"{name}: expected {rule}, got {got}"


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of dtype {value.dtype} and shape {list(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {list(value.shape)}"
    return f"{type(value).__name__} {value!r}"


def _scalar(name: str, value: object, rule: str) -> object:
    """A 0-d tensor or 0-d numpy array as its Python/numpy scalar; anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        if value.device.type == "meta":
            raise ValueError(
                expected(name, f"{rule} (a 0-d tensor with data)", "a tensor on 'meta'")
            )
        return value.item() if value.dtype != torch.bool else value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


def check_real(name: str, value: object) -> float:
    """``value`` as a finite Python float (int, float, numpy scalar, 0-d real tensor or 0-d
    array; not bool, not complex)."""
    value = _scalar(name, value, "a finite real number")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(expected(name, "a finite real number", _describe(value)))
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(expected(name, "a finite real number", result))
    return result


def check_positive(name: str, value: object) -> float:
    """``value`` as a float that is finite and > 0."""
    result = check_real(name, value)
    if result <= 0.0:
        raise ValueError(expected(name, "a finite real number > 0", result))
    return result


def check_in_range(
    name: str, value: object, low: float, high: float, *, low_open: bool = False
) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    result = check_real(name, value)
    inside = (result > low if low_open else result >= low) and result <= high
    if not inside:
        rule = f"a real number in {'(' if low_open else '['}{low:g}, {high:g}]"
        raise ValueError(expected(name, rule, result))
    return result


def check_temperature(name: str, value: object) -> float:
    """A temperature: finite, in ``[MIN_TEMPERATURE, MAX_TEMPERATURE]`` (what fp32 represents
    with a finite ``1 / T``)."""
    result = check_real(name, value)
    if not MIN_TEMPERATURE <= result <= MAX_TEMPERATURE:
        rule = f"a temperature in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}], finite and > 0"
        raise ValueError(expected(name, rule, result))
    return result


def check_temperatures(name: str, values: object, *, min_count: int = 1) -> tuple[float, ...]:
    """A sequence (or 1-D tensor / array) of at least ``min_count`` temperatures, as floats."""
    if isinstance(values, torch.Tensor):
        check_usable_tensor(name, values, "[K] of temperatures")
        if values.dim() != 1:
            raise ValueError(expected(name, "a 1-D tensor [K] of temperatures", _describe(values)))
        values = values.detach().cpu().double().tolist()
    elif isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(expected(name, "a 1-D array [K] of temperatures", _describe(values)))
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(expected(name, "a sequence of floats or a 1-D tensor", _describe(values)))
    if len(values) < min_count:
        rule = (
            "at least one temperature" if min_count == 1 else f"at least {min_count} temperatures"
        )
        raise ValueError(expected(name, rule, len(values)))
    return tuple(check_temperature(f"{name}[{i}]", v) for i, v in enumerate(values))


def check_int(name: str, value: object, *, minimum: int = 0) -> int:
    """``value`` as a Python int >= ``minimum`` (int, numpy integer, 0-d integer tensor or
    0-d array; not bool, not float)."""
    value = _scalar(name, value, f"an int >= {minimum}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(expected(name, f"an int >= {minimum}", _describe(value)))
    result = int(value)
    if result < minimum:
        raise ValueError(expected(name, f"an int >= {minimum}", result))
    return result


def check_optional_int(name: str, value: object, *, minimum: int = 1) -> int | None:
    """None, or an int >= ``minimum``."""
    if value is None:
        return None
    try:
        return check_int(name, value, minimum=minimum)
    except (TypeError, ValueError) as error:
        rule = f"None or an int >= {minimum}"
        raise type(error)(expected(name, rule, _describe(value))) from None


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(expected(name, f"one of {tuple(choices)}", repr(value)))
    return value


def check_instance(name: str, value: object, kind: type, what: str | None = None) -> Any:
    """``value`` if it is an instance of ``kind``."""
    if not isinstance(value, kind):
        raise TypeError(expected(name, what or f"a {kind.__name__}", _describe(value)))
    return value


def check_usable_tensor(name: str, value: object, layout: str) -> torch.Tensor:
    """A torch.Tensor with real storage (not on the ``meta`` device)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(expected(name, f"a torch.Tensor {layout}", _describe(value)))
    if value.device.type == "meta":
        raise ValueError(expected(name, f"a tensor {layout} with data", "a tensor on 'meta'"))
    return value


def check_float_tensor(name: str, value: object, dim: int, layout: str) -> torch.Tensor:
    """A ``dim``-D float32/bfloat16/float16 tensor (``layout`` names the axes: ``[B, L, V]``)."""
    tensor = check_usable_tensor(name, value, layout)
    if tensor.dim() != dim:
        raise ValueError(expected(name, f"shape {layout}", list(tensor.shape)))
    if tensor.dtype not in FLOAT_DTYPES:
        raise TypeError(expected(name, "dtype float32, bfloat16 or float16", tensor.dtype))
    return tensor


def to_float64(name: str, value: object) -> np.ndarray:
    """A copy of a real tensor, array or sequence as a float64 numpy array (not bool/complex)."""
    if isinstance(value, torch.Tensor):
        check_usable_tensor(name, value, "of real numbers")
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(expected(name, "a real-valued tensor", f"dtype {value.dtype}"))
        return value.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
    if isinstance(value, (np.ndarray, list, tuple)):
        try:
            array = np.asarray(value)
        except ValueError as error:
            raise ValueError(expected(name, "a rectangular array of reals", error)) from None
        if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
            raise TypeError(expected(name, "real numbers", f"dtype {array.dtype}"))
        if np.issubdtype(array.dtype, np.complexfloating):
            raise TypeError(expected(name, "real numbers", f"dtype {array.dtype}"))
        return array.astype(np.float64, copy=True)
    raise TypeError(expected(name, "a torch.Tensor, numpy array or sequence", _describe(value)))


def check_finite_array(name: str, array: np.ndarray) -> np.ndarray:
    """``array`` if every entry is finite; the error names the first bad index."""
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        where = index[0] if len(index) == 1 else list(index)
        raise ValueError(
            expected(
                name,
                "finite values (no NaN or inf)",
                f"{array[index]} at index {where} ({len(bad)} non-finite)",
            )
        )
    return array


def check_advantages(advantages: object, num_rows: int) -> np.ndarray:
    """Advantages as float64 ``[N]``: one finite value per trajectory, ``|A| <= 1e100``
    (:data:`MAX_ABS_ADVANTAGE`: refused beyond, so the meta-policy's state cannot overflow)."""
    array = to_float64("advantages", advantages)
    if array.shape != (num_rows,):
        rule = f"shape [N] = [{num_rows}] (one per trajectory)"
        raise ValueError(expected("advantages", rule, f"shape {list(array.shape)}"))
    return check_bounded_array("advantages", check_finite_array("advantages", array))


def check_bounded_array(
    name: str, array: np.ndarray, bound: float = MAX_ABS_ADVANTAGE
) -> np.ndarray:
    """``array`` (finite) if every ``|entry| <= bound``; the error names the first bad index."""
    bad = np.argwhere(np.abs(array) > bound)
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        where = index[0] if len(index) == 1 else list(index)
        rule = f"values with |x| <= {bound:g}"
        raise ValueError(expected(name, rule, f"{array[index]} at index {where} ({len(bad)} such)"))
    return array


def check_loglik(loglik: object, num_temperatures: int) -> np.ndarray:
    """Log-likelihoods as float64 ``[N, K]``, N >= 1 (finiteness is the caller's, per row)."""
    array = to_float64("loglik", loglik)
    if array.ndim != 2 or array.shape[1] != num_temperatures:
        rule = f"shape [N, K] with K = {num_temperatures} candidate temperatures"
        raise ValueError(expected("loglik", rule, f"shape {list(array.shape)}"))
    if array.shape[0] == 0:
        raise ValueError(expected("loglik", "at least one trajectory", "an empty batch (N = 0)"))
    return array


def check_num_tokens(num_tokens: object, num_rows: int) -> np.ndarray:
    """Valid-token counts as int64 ``[N]`` (None: one per row, i.e. every row counts)."""
    if num_tokens is None:
        return np.ones(num_rows, dtype=np.int64)
    array = to_float64("num_tokens", num_tokens)
    if array.shape != (num_rows,):
        rule = f"shape [N] = [{num_rows}] (one count per trajectory)"
        raise ValueError(expected("num_tokens", rule, f"shape {list(array.shape)}"))
    bad = np.flatnonzero(~np.isfinite(array) | (array < 0) | (array != np.round(array)))
    if bad.size:
        rule = "integer counts >= 0"
        raise ValueError(expected("num_tokens", rule, f"{array[bad[0]]} at index {int(bad[0])}"))
    return array.astype(np.int64)


def pydantic_rule(check: Callable[..., Any], name: str) -> AfterValidator:
    """Use a checker of this module inside a pydantic model (``Annotated[float, rule]``).

    pydantic wraps the checker's ValueError into a ValidationError that names the field, so the
    message keeps the ``<name>: expected <rule>, got <value>`` shape inside it.
    """

    def run(value: Any) -> Any:
        try:
            return check(name, value)
        except TypeError as error:
            raise ValueError(str(error)) from None

    return AfterValidator(run)
