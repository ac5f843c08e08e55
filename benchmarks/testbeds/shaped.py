"""2-digit addition whose supervised start policy is shaped like the regimes where T matters.

Three independent knobs act on the supervised data only (the reward is always exact match of
the sum's digits, then ``<eos>``):

- **wrong mode** (``trap_prob``): on problems whose ones digits carry (about 45% of them), the
  supervised answer drops the carry with probability ``trap_prob``, so the start policy's most
  likely answer there is wrong by 10 and the correct one is a less likely continuation;
- **surface variants** (``n_variants``): every answer digit has ``n_variants`` interchangeable
  tokens (``7``, ``7~1``, ..., ``7~49``) drawn Zipf(``variant_zipf``) in the supervised data;
  any variant of the right digit is correct, so most of the token entropy is correctness-free
  (vocabulary ``4 + 10 * n_variants``), as on a real LM;
- **loops** (``loop_prob``): on problems whose first operand ends in 0-4, the supervised answer
  is followed, with probability ``loop_prob``, by its last digit token repeated up to the
  length cap instead of ``<eos>``: a degenerate, high-likelihood continuation that is
  truncated and earns nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks.testbeds.task import EOS, Problem, Task
from tampo_core.validation import check_in_range, check_int

_DIGITS = "0123456789"


class ShapedAddition(Task):
    """Prompt ``<bos> a a + b b =`` (canonical digit tokens); answer: the sum's digits, most
    significant first, each as any of its surface variants, then ``<eos>``."""

    name = "shaped-addition"
    prompt_len = 7

    def __init__(
        self,
        *,
        trap_prob: float = 0.0,
        n_variants: int = 1,
        variant_zipf: float = 1.0,
        loop_prob: float = 0.0,
        max_new_tokens: int = 4,
    ) -> None:
        check_in_range("trap_prob", trap_prob, 0.0, 1.0)
        check_in_range("loop_prob", loop_prob, 0.0, 1.0)
        check_int("n_variants", n_variants, minimum=1)
        check_int("max_new_tokens", max_new_tokens, minimum=4)
        self.trap_prob, self.loop_prob = float(trap_prob), float(loop_prob)
        self.n_variants, self.variant_zipf = n_variants, float(variant_zipf)
        self.max_new_tokens = max_new_tokens
        variants = [f"{d}~{j}" for j in range(1, n_variants) for d in _DIGITS]
        self.symbols = (*_DIGITS, "+", "=", *variants)
        super().__init__()
        self.digit_of = {self.ids[d]: d for d in _DIGITS}
        self.digit_of.update({self.ids[v]: v.split("~")[0] for v in variants})
        self.variant_ids = [
            [self.ids[d if j == 0 else f"{d}~{j}"] for j in range(n_variants)] for d in _DIGITS
        ]
        weights = 1.0 / np.arange(1, n_variants + 1) ** self.variant_zipf
        self.variant_probs = weights / weights.sum()

    @property
    def params(self) -> dict[str, int | bool | float]:
        return {
            "trap_prob": self.trap_prob,
            "n_variants": self.n_variants,
            "variant_zipf": self.variant_zipf,
            "loop_prob": self.loop_prob,
            "max_new_tokens": self.max_new_tokens,
        }

    @staticmethod
    def is_trap(a: int, b: int) -> bool:
        """The ones digits carry: where the wrong mode drops the carry."""
        return a % 10 + b % 10 >= 10

    @staticmethod
    def is_loop_prone(a: int) -> bool:
        return a % 10 < 5

    def draw(self, rng: np.random.Generator) -> Problem:
        a, b = (int(x) for x in rng.integers(0, 100, size=2))
        prompt = self.encode(["<bos>", *f"{a:02d}", "+", *f"{b:02d}", "="])
        return Problem(prompt, (a, b), self.encode([*str(a + b), EOS]))

    def sft_reference(self, problem: Problem, rng: np.random.Generator) -> tuple[int, ...]:
        a, b = problem.numbers
        answer = a + b
        if self.trap_prob and self.is_trap(a, b) and rng.random() < self.trap_prob:
            answer -= 10
        picks = rng.choice(self.n_variants, size=len(str(answer)), p=self.variant_probs)
        ids = [self.variant_ids[int(d)][int(j)] for d, j in zip(str(answer), picks, strict=True)]
        if self.loop_prob and self.is_loop_prone(a) and rng.random() < self.loop_prob:
            return (*ids, *[ids[-1]] * (self.max_new_tokens - len(ids)))
        return (*ids, self.eos_id)

    def score(self, problem: Problem, completion: Sequence[int]) -> float:
        digits = [self.digit_of.get(t) for t in completion]
        if not digits or None in digits:
            return 0.0
        return float("".join(digits) == str(sum(problem.numbers)))  # type: ignore[arg-type]


class WrongModeAddition(ShapedAddition):
    """The start policy's likeliest answer drops the carry on 75% of carry problems."""

    name = "wrong-mode"

    def __init__(self) -> None:
        super().__init__(trap_prob=0.75)


class SurfaceAddition(ShapedAddition):
    """50 surface variants per answer digit (vocabulary 504), Zipf(1) in the supervised data."""

    name = "surface"

    def __init__(self) -> None:
        super().__init__(n_variants=50)


class LoopAddition(ShapedAddition):
    """70% of loop-prone supervised answers repeat their last digit to a 12-token cap."""

    name = "loop"

    def __init__(self) -> None:
        super().__init__(loop_prob=0.7, max_new_tokens=12)


class MixedAddition(ShapedAddition):
    """All three shapes at once: wrong mode, 50 surface variants, loops."""

    name = "mixed"

    def __init__(self) -> None:
        super().__init__(trap_prob=0.75, n_variants=50, loop_prob=0.6, max_new_tokens=12)
