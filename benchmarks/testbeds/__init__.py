"""Synthetic verifiable-reward testbeds: tasks, a tiny causal LM and its supervised warm start."""

from benchmarks.testbeds.arithmetic import Addition
from benchmarks.testbeds.countdown import Countdown
from benchmarks.testbeds.task import Problem, Task

TASKS: dict[str, type[Task]] = {"addition": Addition, "countdown": Countdown}

__all__ = ["TASKS", "Addition", "Countdown", "Problem", "Task"]
