"""Held-out evaluation: greedy pass@1, sampled pass@1 and the unbiased pass@k estimator."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from benchmarks.testbeds.task import Problem, Task
from tampo_core.adapters.torch_loop import sample_completions


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k draws correct) from c correct of n samples
    (Chen et al. 2021): ``1 - C(n - c, k) / C(n, k)``."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@torch.no_grad()
def correct_counts(
    model: nn.Module,
    task: Task,
    problems: Sequence[Problem],
    samples: int,
    temperature: float,
    generator: torch.Generator | None = None,
    chunk: int = 4096,
) -> np.ndarray:
    """int64 [P]: how many of ``samples`` completions per problem earn reward 1
    (``temperature`` 0: greedy, then ``samples`` must be 1)."""
    rows = [p for p in problems for _ in range(samples)]
    rewards = []
    for i in range(0, len(rows), chunk):
        part = rows[i : i + chunk]
        r = sample_completions(
            model,
            task.prompt_ids(part),
            temperature=temperature,
            max_new_tokens=task.max_new_tokens,
            eos_token_id=task.eos_id,
            generator=generator,
        )
        rewards.append(task.rewards(part, r.completion_ids, r.completion_mask))
    return torch.cat(rewards).view(len(problems), samples).sum(1).long().numpy()


def evaluate(
    model: nn.Module,
    task: Task,
    problems: Sequence[Problem],
    samples: int,
    temperature: float,
    ks: Sequence[int],
    seed: int,
) -> dict[str, float]:
    """``greedy_pass@1``, ``sampled_pass@1`` (mean over ``samples`` draws at ``temperature``)
    and ``pass@k`` for each k in ``ks`` (unbiased, from the same draws)."""
    greedy = correct_counts(model, task, problems, 1, 0.0)
    counts = correct_counts(
        model, task, problems, samples, temperature, torch.Generator().manual_seed(seed)
    )
    out = {"greedy_pass@1": float(greedy.mean()), "sampled_pass@1": float(counts.mean() / samples)}
    for k in ks:
        out[f"pass@{k}"] = float(np.mean([pass_at_k(samples, int(c), k) for c in counts]))
    return out
