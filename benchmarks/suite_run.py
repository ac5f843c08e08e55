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

from benchmarks.baselines import EntropyTargetController, StagedSchedule
from benchmarks.diagnostics import RecordingMetaPolicy
from benchmarks.methods import make_temperature_policy
from benchmarks.option_methods import OPTION_METHODS, needs_rewards, step_temperature
from benchmarks.testbeds import TASKS, Problem, ShapedAddition, Task
from benchmarks.testbeds.evaluation import correct_counts, evaluate, truncated
from benchmarks.testbeds.sft import SFTConfig, eval_problems, load_or_train, train_pool
from tampo_core import PAPER_TEMPERATURES, TempMetaPolicy
from tampo_core.adapters.torch_loop import group_advantages, grpo_update, sample_completions

MAIN_METHODS = (
    "fixed-0.6",
    "fixed-0.9",
    "fixed-1.2",
    "fixed-1.5",
    "linear-0.9-1.5",
    "cosine-0.9-1.5",
    "staged",
    "uniform",
    "e3",
    "e3-anneal",
    "tampo-w0",
    "tampo-w10",
)
ABLATIONS = {
    "top_p": ("tampo-w10-p0", "tampo-w10-p0.5", "tampo-w10", "tampo-w10-p0.9"),
    "alpha": ("tampo-w10-a0.01", "tampo-w10", "tampo-w10-a0.1"),
    "options": ("tampo-w10", *OPTION_METHODS),
}
EVAL_TEMPERATURES = (0.6, 1.0)
OWN_T_FRACTION = 0.1


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's result (its hash names the compatible results).

    Evaluation: greedy, ``samples`` draws at each of ``eval_temperatures`` and at the run's own
    training temperature (see :func:`own_temperature`)."""

    task: str
    method: str
    seed: int
    sft: SFTConfig
    steps: int = 200
    prompts_per_step: int = 32
    group_size: int = 8
    lr: float = 3e-4
    curve_every: int = 10
    curve_size: int = 256
    eval_size: int = 512
    eval_samples: int = 16
    eval_temperatures: tuple[float, ...] = EVAL_TEMPERATURES
    ks: tuple[int, ...] = (4, 8, 16)

    def key(self) -> str:
        task_params = TASKS[self.task]().params
        blob = json.dumps({**dataclasses.asdict(self), "task_params": task_params}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def path(self, out_dir: Path) -> Path:
        return out_dir / "runs" / self.task / self.method / f"seed{self.seed}.json"


def own_temperature(temperatures: list[float]) -> float:
    """The temperature a run trained at: the mean sampled T of its last 10% of steps (at least
    one step); for a fixed T that is T itself."""
    tail = max(1, int(np.ceil(OWN_T_FRACTION * len(temperatures))))
    return float(np.mean(temperatures[-tail:]))


def _train(
    spec: RunSpec,
    task: Task,
    model: torch.nn.Module,
    curve_set: list[Problem],
    curve: list[dict[str, float]],
) -> dict[str, list[Any]]:
    """GRPO for ``spec.steps`` steps; appends held-out greedy pass@1 points to ``curve``."""
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    tp = make_temperature_policy(
        spec.method,
        steps=spec.steps,
        group_size=spec.group_size,
        vocab_size=task.vocab_size,
        seed=spec.seed,
    )
    pass_rewards = needs_rewards(tp)
    if isinstance(tp, TempMetaPolicy):
        tp = RecordingMetaPolicy(tp)
    pool = train_pool(task, spec.sft)
    rng = np.random.default_rng(spec.seed)
    gen = torch.Generator().manual_seed(spec.seed)
    log = _empty_log()
    for step in range(spec.steps):
        if step % spec.curve_every == 0:
            curve.append(_curve_point(model, task, curve_set, step))
        t0 = time.perf_counter()
        idx = rng.choice(len(pool), spec.prompts_per_step, replace=False)
        temperature = step_temperature(tp, idx.tolist(), spec.group_size)
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
        grpo_update(
            model,
            opt,
            prompt_ids,
            rollout,
            adv,
            temperature,
            temperature_policy=tp,
            rewards=rewards if pass_rewards else None,
        )
        cut = truncated(task, rollout.completion_ids, rollout.completion_mask)
        log_step(log, tp, time.perf_counter() - t0, temperature, rewards, cut.float().mean())
    if isinstance(tp, RecordingMetaPolicy):
        log.update(tp.record)
    curve.append(_curve_point(model, task, curve_set, spec.steps))
    return log


def log_step(
    log: dict[str, list[Any]],
    tp: Any,
    seconds: float,
    temperature: float | torch.Tensor,
    rewards: torch.Tensor,
    truncation: float | torch.Tensor,
) -> None:
    """Append one step's traces to ``log`` (see :func:`_empty_log`): its time, the sampled T
    (the mean of a per-row ``[B]`` tensor), mean reward, truncation rate, and the controller
    state of the E3 and staged baselines."""
    log["step_seconds"].append(seconds)
    mean_t = temperature.mean() if isinstance(temperature, torch.Tensor) else temperature
    log["temperature"].append(float(mean_t))
    log["reward"].append(float(rewards.mean()))
    log["truncation"].append(float(truncation))
    if isinstance(tp, EntropyTargetController):
        log["entropy"].append(tp.last_entropy)
    if isinstance(tp, StagedSchedule):
        log["diversity"].append(tp.last_diversity)


def _empty_log() -> dict[str, list[Any]]:
    """Per-step training traces (empty for the ``sft`` method); TAMPO runs add the
    diagnostics of :data:`benchmarks.diagnostics.DIAGNOSTIC_KEYS`."""
    keys = ("temperature", "reward", "truncation", "step_seconds", "entropy", "diversity")
    return {key: [] for key in keys}


def _curve_point(
    model: torch.nn.Module, task: Task, problems: list[Problem], step: int
) -> dict[str, float]:
    """Held-out greedy pass@1 at ``step``; wrong-mode testbeds add it on their carry subset
    (``pass@1/greedy-carry``), which shows how long the wrong mode lasts."""
    correct = correct_counts(model, task, problems, 1, 0.0)[0]
    point = {"step": step, "pass@1/greedy": float(correct.mean())}
    if isinstance(task, ShapedAddition) and task.trap_prob:
        carry = np.array([task.is_trap(*p.numbers) for p in problems])
        point["pass@1/greedy-carry"] = float(correct[carry].mean())
    return point


def run(spec: RunSpec, cache_dir: Path | None = None) -> dict[str, Any]:
    """Train (method ``sft``: no RL, the starting point) and evaluate; returns a
    JSON-serialisable record (``cpu_seconds`` / ``wall_seconds``: training plus evaluation,
    without loading or training the supervised start)."""
    task: Task = TASKS[spec.task]()
    model = copy.deepcopy(load_or_train(task, spec.sft, cache_dir)).train()
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    torch.manual_seed(spec.seed)
    held_out = eval_problems(task, spec.eval_size)
    curve: list[dict[str, float]] = []
    if spec.method == "sft":
        log = _empty_log()
        curve.append(_curve_point(model, task, held_out[: spec.curve_size], 0))
    else:
        log = _train(spec, task, model, held_out[: spec.curve_size], curve)
    model.eval()
    settings = {f"T{t:.1f}": t for t in spec.eval_temperatures}
    own = own_temperature(log["temperature"]) if log["temperature"] else None
    if own is not None:
        settings["own"] = own
    final = evaluate(
        model, task, held_out, spec.eval_samples, settings, spec.ks, seed=10_000 + spec.seed
    )
    steps = log["step_seconds"]
    return {
        "own_T": own,
        "spec": dataclasses.asdict(spec),
        "key": spec.key(),
        "final": final,
        "curve": curve,
        "log": log,
        "temperatures": list(PAPER_TEMPERATURES),
        "median_step_seconds": float(np.median(steps)) if steps else 0.0,
        "cpu_seconds": time.process_time() - cpu_start,
        "wall_seconds": time.perf_counter() - wall_start,
    }
