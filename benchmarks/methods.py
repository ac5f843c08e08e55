"""Benchmark method names and the temperature source each one builds.

Names (``--methods`` accepts exactly these forms):

- ``sft``: no RL, the supervised start;
- ``fixed-<T>``: plain GRPO at T;
- ``linear-<T0>-<T1>``, ``cosine-<T0>-<T1>``: schedules from T0 to T1 over the run;
- ``staged``: POLARIS-style, 0.9 raised by 0.1 (to at most 1.5) whenever rollout diversity
  falls below its first-step value, at most once per 10 steps;
- ``uniform``: a uniform draw from the grid every step;
- ``e3`` / ``e3-anneal``: the E3 entropy-target controller, without / with target annealing;
- ``tampo-w<N>[-p<top_p>][-a<alpha>]``: TAMPO with an N-step uniform warm-up and the paper's
  defaults (top_p 0.7, alpha 0.05) unless given;
- the options beyond the paper (``tampo-sum``, ``tampo-x10``, ...; see
  ``benchmarks/option_methods.py``), each with the 10-step warm-up of ``tampo-w10``.
"""

from __future__ import annotations

import re
from typing import Any

from benchmarks.baselines import (
    CosineSchedule,
    EntropyTargetController,
    FixedTemperature,
    LinearSchedule,
    StagedSchedule,
    UniformRandom,
)
from benchmarks.option_methods import OPTION_METHODS, BucketedTampo, make_option_policy
from tampo_core import PAPER_TEMPERATURES, TemperaturePolicy, TempMetaPolicy
from tampo_core.adaptive_grid import AdaptiveGridTempMetaPolicy
from tampo_core.validation import expected

METHOD_FORMS = (
    "sft, fixed-<T>, linear-<T0>-<T1>, cosine-<T0>-<T1>, staged, uniform, e3, e3-anneal, "
    "tampo-w<warm-up steps>[-p<top_p>][-a<alpha>], " + ", ".join(OPTION_METHODS)
)
OPTION_WARMUP_STEPS = 10
"""Warm-up of every option method: the same as ``tampo-w10``, the row each is compared with."""
TAMPO_DEFAULTS: dict[str, float] = {"top_p": 0.7, "ema_alpha": 0.05}
_NUM = r"(\d+(?:\.\d+)?)"
_TAMPO = re.compile(rf"tampo-w(\d+)(?:-p{_NUM})?(?:-a{_NUM})?")
_SCHEDULE = re.compile(rf"(linear|cosine)-{_NUM}-{_NUM}")
_FIXED = re.compile(rf"fixed-{_NUM}")


def is_tampo(method: str) -> bool:
    return method.startswith("tampo-")


def make_temperature_policy(
    method: str, *, steps: int, group_size: int, vocab_size: int, seed: int
) -> TemperaturePolicy | BucketedTampo | AdaptiveGridTempMetaPolicy:
    """The temperature source named ``method`` for a run of ``steps`` steps (``ValueError`` for
    a name outside :data:`METHOD_FORMS` or with out-of-range values; ``sft`` has none)."""
    lo, hi = min(PAPER_TEMPERATURES), max(PAPER_TEMPERATURES)
    if m := _FIXED.fullmatch(method):
        return FixedTemperature(float(m[1]))
    if m := _SCHEDULE.fullmatch(method):
        cls = LinearSchedule if m[1] == "linear" else CosineSchedule
        return cls(float(m[2]), float(m[3]), steps)
    if method == "staged":
        return StagedSchedule(group_size, t_init=0.9, raise_by=0.1, t_max=hi, min_stage_steps=10)
    if method == "uniform":
        return UniformRandom(PAPER_TEMPERATURES, seed=seed)
    if method in ("e3", "e3-anneal"):
        return EntropyTargetController(
            vocab_size,
            t_init=1.0,
            t_min=lo,
            t_max=hi,
            anneal_steps=steps if method == "e3-anneal" else None,
        )
    if method in OPTION_METHODS:
        return make_option_policy(method, warmup_steps=OPTION_WARMUP_STEPS, seed=seed)
    if m := _TAMPO.fullmatch(method):
        kw: dict[str, Any] = dict(TAMPO_DEFAULTS)
        if m[2] is not None:
            kw["top_p"] = float(m[2])
        if m[3] is not None:
            kw["ema_alpha"] = float(m[3])
        return TempMetaPolicy(
            temperatures=PAPER_TEMPERATURES, warmup_steps=int(m[1]), seed=seed, **kw
        )
    raise ValueError(expected("method", f"one of {METHOD_FORMS}", repr(method)))


def check_method(method: str) -> str:
    """``method`` if it names a buildable method (``sft`` included), else ``ValueError``."""
    if method != "sft":
        make_temperature_policy(method, steps=10, group_size=8, vocab_size=16, seed=0)
    return method
