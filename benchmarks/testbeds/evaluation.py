"""Held-out evaluation: greedy pass@1, sampled pass@1 and the unbiased pass@k estimator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def truncated(task: Task, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """bool [N]: completions (int64 [N, L], mask bool [N, L]) that ran to the length cap
    without ``<eos>``."""
    lengths = mask.sum(1)
    last = ids.gather(1, (lengths - 1).clamp_min(0)[:, None]).squeeze(1)
    return (lengths == task.max_new_tokens) & (last != task.eos_id)


@torch.no_grad()
def correct_counts(
    model: nn.Module,
    task: Task,
    problems: Sequence[Problem],
    samples: int,
    temperature: float,
    generator: torch.Generator | None = None,
    chunk: int = 4096,
) -> tuple[np.ndarray, float]:
    """(int64 [P] how many of ``samples`` completions per problem earn reward 1, fraction of
    all completions truncated at the length cap); ``temperature`` 0: greedy (``samples`` 1)."""
    rows = [p for p in problems for _ in range(samples)]
    rewards, cut = [], 0
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
        cut += int(truncated(task, r.completion_ids, r.completion_mask).sum())
    counts = torch.cat(rewards).view(len(problems), samples).sum(1).long().numpy()
    return counts, cut / len(rows)


def evaluate(
    model: nn.Module,
    task: Task,
    problems: Sequence[Problem],
    samples: int,
    temperatures: Mapping[str, float],
    ks: Sequence[int],
    seed: int,
) -> dict[str, float]:
    """Metrics named ``<metric>/<setting>``: ``pass@1/greedy`` and ``truncation/greedy``; for
    each ``label -> T`` in ``temperatures``, ``pass@1/<label>`` (mean over ``samples`` draws
    at T), ``pass@k/<label>`` for k in ``ks`` (unbiased, same draws) and
    ``truncation/<label>``. Every setting draws from a generator seeded with ``seed``."""
    greedy, cut = correct_counts(model, task, problems, 1, 0.0)
    out = {"pass@1/greedy": float(greedy.mean()), "truncation/greedy": cut}
    for label, t in temperatures.items():
        counts, cut = correct_counts(
            model, task, problems, samples, t, torch.Generator().manual_seed(seed)
        )
        out[f"pass@1/{label}"] = float(counts.mean() / samples)
        for k in ks:
            out[f"pass@{k}/{label}"] = float(
                np.mean([pass_at_k(samples, int(c), k) for c in counts])
            )
        out[f"truncation/{label}"] = cut
    return out
