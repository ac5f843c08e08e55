"""Countdown: combine four digits with ``+ - *`` (left to right, each digit once) to hit a target.

Most problems have several solutions; the supervised reference is the one the generator used,
so the supervised policy spreads its mass over solutions and over near misses.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from benchmarks.testbeds.task import EOS, Problem, Task

_OPS = ("+", "-", "*")


def evaluate(digits: Sequence[int], ops: Sequence[str]) -> int:
    """Left-to-right value of ``d0 o0 d1 o1 d2 ...``."""
    acc = digits[0]
    for op, d in zip(ops, digits[1:], strict=True):
        acc = acc + d if op == "+" else acc - d if op == "-" else acc * d
    return acc


class Countdown(Task):
    """Prompt ``<bos> n n n n : t t =`` (target 1..99, zero padded); answer ``n o n o n o n``."""

    name = "countdown"
    symbols = (*"0123456789", "+", "-", "*", ":", "=")
    n_numbers = 4
    prompt_len = 1 + 4 + 1 + 2 + 1
    max_new_tokens = 2 * 4 - 1 + 1

    def draw(self, rng: np.random.Generator) -> Problem:
        while True:
            nums = [int(x) for x in rng.integers(1, 10, size=self.n_numbers)]
            order = [nums[i] for i in rng.permutation(self.n_numbers)]
            ops = [_OPS[int(i)] for i in rng.integers(0, 3, size=self.n_numbers - 1)]
            target = evaluate(order, ops)
            if 1 <= target <= 99:
                break
        prompt = self.encode(["<bos>", *map(str, nums), ":", *f"{target:02d}", "="])
        answer = [s for pair in itertools.zip_longest(map(str, order), ops) for s in pair if s]
        return Problem(prompt, (*nums, target), self.encode([*answer, EOS]))

    def score(self, problem: Problem, completion: Sequence[int]) -> float:
        syms = [self.vocab[i] for i in completion]
        if len(syms) != 2 * self.n_numbers - 1:
            return 0.0
        digits, ops = syms[0::2], syms[1::2]
        if not all(d.isdigit() for d in digits) or not all(o in _OPS for o in ops):
            return 0.0
        values = [int(d) for d in digits]
        *nums, target = problem.numbers
        if sorted(values) != sorted(nums):
            return 0.0
        return float(evaluate(values, ops) == target)
