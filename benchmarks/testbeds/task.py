"""The verifiable-reward task interface shared by the testbeds.

A task owns a small vocabulary (``<bos>``, ``<eos>`` and its symbols), draws problems from a
seeded generator, writes one reference completion per problem for supervised training, and
scores any completion with a 0/1 reward. Prompts of one task all have the same length, so
batches need no padding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

BOS, EOS = "<bos>", "<eos>"


@dataclass(frozen=True)
class Problem:
    """``prompt``: token ids incl. ``<bos>``; ``numbers``: the task's operands; ``reference``:
    one correct completion (token ids, ending in ``<eos>``)."""

    prompt: tuple[int, ...]
    numbers: tuple[int, ...]
    reference: tuple[int, ...]


class Task(ABC):
    """Seeded problem generator plus 0/1 reward over completions."""

    name: str
    symbols: tuple[str, ...]
    prompt_len: int
    max_new_tokens: int

    def __init__(self) -> None:
        self.vocab: tuple[str, ...] = (BOS, EOS, *self.symbols)
        self.ids = {s: i for i, s in enumerate(self.vocab)}
        self.bos_id, self.eos_id = self.ids[BOS], self.ids[EOS]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def params(self) -> dict[str, int | bool]:
        """Constructor arguments that change the problems (part of every cache key)."""
        return {}

    def encode(self, symbols: Sequence[str]) -> tuple[int, ...]:
        return tuple(self.ids[s] for s in symbols)

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.vocab[i] for i in ids)

    @abstractmethod
    def draw(self, rng: np.random.Generator) -> Problem:
        """One random problem."""

    def sft_reference(self, problem: Problem, rng: np.random.Generator) -> tuple[int, ...]:
        """The supervised target for ``problem`` (token ids, at most ``max_new_tokens``): the
        reference by default; shaped testbeds draw it from ``rng``."""
        return problem.reference

    @abstractmethod
    def score(self, problem: Problem, completion: Sequence[int]) -> float:
        """1.0 if ``completion`` (ids up to, excluding, ``<eos>``) solves ``problem``, else 0.0."""

    def problems(
        self, n: int, seed: int, exclude: frozenset[tuple[int, ...]] = frozenset()
    ) -> list[Problem]:
        """``n`` problems with distinct prompts, none of them in ``exclude``."""
        rng = np.random.default_rng(seed)
        seen: set[tuple[int, ...]] = set(exclude)
        out: list[Problem] = []
        for _ in range(200 * n):
            p = self.draw(rng)
            if p.prompt not in seen:
                seen.add(p.prompt)
                out.append(p)
                if len(out) == n:
                    return out
        raise RuntimeError(f"{self.name}: could not draw {n} distinct problems")

    def prompt_ids(self, problems: Sequence[Problem]) -> torch.Tensor:
        """int64 [N, prompt_len]."""
        return torch.tensor([p.prompt for p in problems], dtype=torch.long)

    def rewards(
        self, problems: Sequence[Problem], completions: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """float32 [N] from completions int64 [N, L] and their validity mask bool [N, L]."""
        if completions.shape[0] != len(problems):
            raise ValueError(f"{len(problems)} problems but {completions.shape[0]} completions")
        out = []
        for p, ids, m in zip(problems, completions.tolist(), mask.tolist(), strict=True):
            toks = [t for t, keep in zip(ids, m, strict=True) if keep]
            if not toks or toks[-1] != self.eos_id:
                out.append(0.0)
            else:
                out.append(self.score(p, toks[:-1]))
        return torch.tensor(out, dtype=torch.float32)
