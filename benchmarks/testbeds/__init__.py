"""Synthetic verifiable-reward testbeds: tasks, a tiny causal LM and its supervised warm start."""

from benchmarks.testbeds.arithmetic import Addition
from benchmarks.testbeds.countdown import Countdown
from benchmarks.testbeds.shaped import (
    LoopAddition,
    MixedAddition,
    ShapedAddition,
    SurfaceAddition,
    WrongModeAddition,
)
from benchmarks.testbeds.task import Problem, Task

TASKS: dict[str, type[Task]] = {
    "addition": Addition,
    "countdown": Countdown,
    "wrong-mode": WrongModeAddition,
    "surface": SurfaceAddition,
    "loop": LoopAddition,
    "mixed": MixedAddition,
}

__all__ = [
    "TASKS",
    "Addition",
    "Countdown",
    "LoopAddition",
    "MixedAddition",
    "Problem",
    "ShapedAddition",
    "SurfaceAddition",
    "Task",
    "WrongModeAddition",
]
