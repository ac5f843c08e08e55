"""Bucket labels and prompt keys: strings or ints, so that JSON keeps their type."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from tampo_core.validation import expected

Label = str | int
"""A bucket label or prompt key."""


def check_label(name: str, value: object) -> Label:
    """``value`` as a str or Python int (numpy integers accepted; not bool)."""
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise TypeError(expected(name, "a str or int label", f"{type(value).__name__} {value!r}"))


def as_list(name: str, values: object) -> list[Any]:
    """A sequence, 1-D array or 1-D tensor as a list (not a str)."""
    if isinstance(values, (torch.Tensor, np.ndarray)):
        return values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, range)):
        raise TypeError(expected(name, "a sequence (list, tuple, array)", type(values).__name__))
    return list(values)


def check_labels(name: str, values: object) -> list[Label]:
    """Every entry of ``values`` through :func:`check_label`, its index in the name."""
    return [check_label(f"{name}[{i}]", value) for i, value in enumerate(as_list(name, values))]
