"""One benchmark run: GRPO on one testbed with one temperature method and one seed.

Every method gets the same SFT start, prompt stream (seeded by the run seed), rollouts per
step, optimiser and step count; only the per-step temperature source differs.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.baselines import (
    EntropyTargetController,
    FixedTemperature,
    LinearSchedule,
    UniformRandom,
)
from benchmarks.testbeds import TASKS, Problem, Task
from benchmarks.testbeds.evaluation import correct_counts, evaluate
from benchmarks.testbeds.sft import SFTConfig, eval_problems, load_or_train, train_pool
from tampo_core import PAPER_TEMPERATURES, TempMetaPolicy
from tampo_core.adapters.torch_loop import (
    TemperaturePolicy,
    group_advantages,
    grpo_update,
    sample_completions,
)

MAIN_METHODS = (
    "fixed-0.6",
    "fixed-0.9",
    "fixed-1.2",
    "fixed-1.5",
    "linear-0.9-1.5",
    "uniform",
    "e3",
    "tampo",
)
ABLATIONS = {
    "top_p": ("tampo-p0", "tampo-p0.5", "tampo", "tampo-p0.9"),
    "alpha": ("tampo-a0.01", "tampo", "tampo-a0.1"),
}
TAMPO_DEFAULTS = {"top_p": 0.7, "ema_alpha": 0.05}


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's result (its hash names the compatible results)."""

    task: str
    method: str
    seed: int
    sft: SFTConfig
    steps: int = 200
    prompts_per_step: int = 32
    group_size: int = 8
    lr: float = 3e-4
    warmup_steps: int = 10
    curve_every: int = 20
    curve_size: int = 256
    eval_size: int = 512
    eval_samples: int = 16
    eval_temperature: float = 1.0
    ks: tuple[int, ...] = (4, 8, 16)

    def key(self) -> str:
        task_params = TASKS[self.task]().params
        blob = json.dumps({**dataclasses.asdict(self), "task_params": task_params}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def path(self, out_dir: Path) -> Path:
        return out_dir / "runs" / self.task / self.method / f"seed{self.seed}.json"


def make_temperature_policy(spec: RunSpec, vocab_size: int) -> TemperaturePolicy:
    """The temperature source named by ``spec.method``."""
    m = spec.method
    if m.startswith("fixed-"):
        return FixedTemperature(float(m.removeprefix("fixed-")))
    if m.startswith("linear-"):
        start, end = (float(x) for x in m.removeprefix("linear-").split("-"))
        return LinearSchedule(start, end, spec.steps)
    if m == "uniform":
        return UniformRandom(PAPER_TEMPERATURES, seed=spec.seed)
    if m == "e3":
        return EntropyTargetController(
            vocab_size, t_init=1.0, t_min=min(PAPER_TEMPERATURES), t_max=max(PAPER_TEMPERATURES)
        )
    if m == "tampo" or m.startswith(("tampo-p", "tampo-a")):
        kw: dict[str, Any] = dict(TAMPO_DEFAULTS)
        if m.startswith("tampo-p"):
            kw["top_p"] = float(m.removeprefix("tampo-p"))
        elif m.startswith("tampo-a"):
            kw["ema_alpha"] = float(m.removeprefix("tampo-a"))
        return TempMetaPolicy(
            temperatures=PAPER_TEMPERATURES, warmup_steps=spec.warmup_steps, seed=spec.seed, **kw
        )
    raise ValueError(
        f"unknown method {m!r}; expected fixed-<T>, linear-<a>-<b>, uniform, e3, "
        "tampo, tampo-p<top_p> or tampo-a<alpha>"
    )


def _train(
    spec: RunSpec,
    task: Task,
    model: torch.nn.Module,
    curve_set: list[Problem],
    curve: list[dict[str, float]],
) -> dict[str, list[Any]]:
    """GRPO for ``spec.steps`` steps; appends held-out greedy pass@1 points to ``curve``."""
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    tp = make_temperature_policy(spec, task.vocab_size)
    pool = train_pool(task, spec.sft)
    rng = np.random.default_rng(spec.seed)
    gen = torch.Generator().manual_seed(spec.seed)
    log = _empty_log()
    for step in range(spec.steps):
        if step % spec.curve_every == 0:
            curve.append(_curve_point(model, task, curve_set, step))
        t0 = time.perf_counter()
        temperature = tp.sample()
        idx = rng.choice(len(pool), spec.prompts_per_step, replace=False)
        problems = [pool[i] for i in idx for _ in range(spec.group_size)]
        prompt_ids = task.prompt_ids(problems)
        rollout = sample_completions(
            model,
            prompt_ids,
            temperature=temperature,
            max_new_tokens=task.max_new_tokens,
            eos_token_id=task.eos_id,
            generator=gen,
        )
        rewards = task.rewards(problems, rollout.completion_ids, rollout.completion_mask)
        adv = group_advantages(rewards, spec.group_size, "grpo")
        stats = grpo_update(
            model, opt, prompt_ids, rollout, adv, temperature, temperature_policy=tp
        )
        log["step_seconds"].append(time.perf_counter() - t0)
        log["temperature"].append(float(temperature))
        log["reward"].append(float(rewards.mean()))
        if isinstance(tp, TempMetaPolicy):
            log["probs"].append([float(p) for p in tp.probs])
            log["support_size"].append(float(stats.observed.support_size))
        if isinstance(tp, EntropyTargetController):
            log["entropy"].append(tp.last_entropy)
    curve.append(_curve_point(model, task, curve_set, spec.steps))
    return log


def _empty_log() -> dict[str, list[Any]]:
    """Per-step training traces (empty for the ``sft`` method)."""
    keys = ("temperature", "reward", "step_seconds", "probs", "support_size", "entropy")
    return {key: [] for key in keys}


def _curve_point(
    model: torch.nn.Module, task: Task, problems: list[Problem], step: int
) -> dict[str, float]:
    acc = correct_counts(model, task, problems, 1, 0.0).mean()
    return {"step": step, "greedy_pass@1": float(acc)}


def run(spec: RunSpec, cache_dir: Path | None = None) -> dict[str, Any]:
    """Train (method ``sft``: no RL, the starting point) and evaluate; returns a
    JSON-serialisable record."""
    task: Task = TASKS[spec.task]()
    torch.manual_seed(spec.seed)
    model = copy.deepcopy(load_or_train(task, spec.sft, cache_dir)).train()
    held_out = eval_problems(task, spec.eval_size)
    curve: list[dict[str, float]] = []
    if spec.method == "sft":
        log = _empty_log()
        curve.append(_curve_point(model, task, held_out[: spec.curve_size], 0))
    else:
        log = _train(spec, task, model, held_out[: spec.curve_size], curve)
    model.eval()
    final = evaluate(
        model,
        task,
        held_out,
        spec.eval_samples,
        spec.eval_temperature,
        spec.ks,
        seed=10_000 + spec.seed,
    )
    steps = log["step_seconds"]
    return {
        "spec": dataclasses.asdict(spec),
        "key": spec.key(),
        "final": final,
        "curve": curve,
        "log": log,
        "temperatures": list(PAPER_TEMPERATURES),
        "median_step_seconds": float(np.median(steps)) if steps else 0.0,
    }
