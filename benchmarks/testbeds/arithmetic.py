"""Multi-digit addition: ``a + b =`` followed by the sum's digits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks.testbeds.task import EOS, Problem, Task


class Addition(Task):
    """``n_digits``-digit operands (zero padded in the prompt); the answer is written without
    padding, most significant digit first unless ``reverse`` (least significant first, which
    is much easier: no carry look-ahead), then ``<eos>``."""

    name = "addition"
    symbols = (*"0123456789", "+", "=")

    def __init__(self, n_digits: int = 2, reverse: bool = False) -> None:
        super().__init__()
        self.n_digits, self.reverse = n_digits, reverse
        self.prompt_len = 1 + 2 * n_digits + 2
        self.max_new_tokens = n_digits + 2

    @property
    def params(self) -> dict[str, int | bool]:
        return {"n_digits": self.n_digits, "reverse": self.reverse}

    def draw(self, rng: np.random.Generator) -> Problem:
        hi = 10**self.n_digits
        a, b = (int(x) for x in rng.integers(0, hi, size=2))
        prompt = self.encode(
            ["<bos>", *f"{a:0{self.n_digits}d}", "+", *f"{b:0{self.n_digits}d}", "="]
        )
        answer = str(a + b)[::-1] if self.reverse else str(a + b)
        return Problem(prompt, (a, b), self.encode([*answer, EOS]))

    def score(self, problem: Problem, completion: Sequence[int]) -> float:
        return float(tuple(completion) == problem.reference[:-1])
