"""TAMPO's cost per training step, measured side by side with the same loop at fixed T.

    python -m benchmarks.suite_overhead        # -> benchmarks/results/suite_overhead.{json,md}

Each pair of steps starts from the same model, optimiser state, batch and temperature (the
one TAMPO draws); one copy steps with ``FixedTemperature`` (plain GRPO), the other with
``TempMetaPolicy`` (its ``sample`` and ``observe`` inside the timed region), in alternating
order. The rollouts are bit-identical, so the difference is TAMPO's own work. Training then
continues from the TAMPO copy. Forward calls per step are counted with a hook.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.baselines import FixedTemperature
from benchmarks.suite import RESULTS, SFT, machine
from benchmarks.suite_run import RunSpec
from benchmarks.testbeds import TASKS, Task
from benchmarks.testbeds.model import TinyCausalLM, TinyLMConfig
from benchmarks.testbeds.sft import load_or_train, train_pool
from tampo_core import TempMetaPolicy
from tampo_core.adapters.torch_loop import (
    TemperaturePolicy,
    group_advantages,
    grpo_update,
    sample_completions,
)


class _Timed:
    """Adds the wall time spent in ``sample`` and ``observe`` of the wrapped policy."""

    def __init__(self, inner: TemperaturePolicy) -> None:
        self.inner, self.seconds = inner, 0.0

    def sample(self) -> float:
        t0 = time.perf_counter()
        out = self.inner.sample()
        self.seconds += time.perf_counter() - t0
        return out

    def observe(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = self.inner.observe(*args, **kwargs)
        self.seconds += time.perf_counter() - t0
        return out


def _step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    tp: _Timed,
    task: Task,
    problems: list[Any],
    group_size: int,
    seed: int,
) -> float:
    """One training step; returns its wall time (seconds), ``tp.seconds`` its policy part."""
    t0 = time.perf_counter()
    temperature = tp.sample()
    prompt_ids = task.prompt_ids(problems)
    rollout = sample_completions(
        model,
        prompt_ids,
        temperature=temperature,
        max_new_tokens=task.max_new_tokens,
        eos_token_id=task.eos_id,
        generator=torch.Generator().manual_seed(seed),
    )
    rewards = task.rewards(problems, rollout.completion_ids, rollout.completion_mask)
    adv = group_advantages(rewards, group_size)
    grpo_update(model, opt, prompt_ids, rollout, adv, temperature, temperature_policy=tp)
    return time.perf_counter() - t0


def measure(
    task_name: str, pairs: int, spec: RunSpec, width: tuple[int, int] | None = None, seed: int = 0
) -> dict[str, Any]:
    """Interleaved timing of ``pairs`` fixed-T / TAMPO step pairs on one testbed, with its SFT
    model or, given ``width`` = (d_model, n_layers), a randomly initialised larger one."""
    task = TASKS[task_name]()
    if width is None:
        model = copy.deepcopy(load_or_train(task, SFT[task_name])).train()
    else:
        torch.manual_seed(seed)
        max_len = task.prompt_len + task.max_new_tokens
        model = TinyCausalLM(TinyLMConfig(task.vocab_size, max_len, width[0], width[1], 4))
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    tampo = TempMetaPolicy(warmup_steps=10, seed=seed)  # as the suite's tampo-w10
    pool = train_pool(task, SFT[task_name])
    rng = np.random.default_rng(seed)
    calls: list[str] = []
    fixed_s, tampo_s, fwd_fixed, fwd_tampo, policy_s = [], [], [], [], []
    for i in range(pairs):
        idx = rng.choice(len(pool), spec.prompts_per_step, replace=False)
        problems = [pool[j] for j in idx for _ in range(spec.group_size)]
        t_next = copy.deepcopy(tampo).sample()
        twin = copy.deepcopy(model)
        twin_opt = torch.optim.Adam(twin.parameters(), lr=spec.lr)
        twin_opt.load_state_dict(opt.state_dict())
        timed = _Timed(tampo)
        runs: dict[str, Callable[[], float]] = {
            "fixed": lambda tw=twin, to=twin_opt, t=t_next, p=problems, s=i: _step(
                tw, to, _Timed(FixedTemperature(t)), task, p, spec.group_size, s
            ),
            "tampo": lambda tt=timed, p=problems, s=i: _step(
                model, opt, tt, task, p, spec.group_size, s
            ),
        }
        order = ("fixed", "tampo") if i % 2 == 0 else ("tampo", "fixed")
        for name in order:
            target = twin if name == "fixed" else model
            calls.clear()
            hook = target.register_forward_pre_hook(lambda *_, n=name: calls.append(n))
            seconds = runs[name]()
            hook.remove()
            (fixed_s if name == "fixed" else tampo_s).append(seconds)
            (fwd_fixed if name == "fixed" else fwd_tampo).append(len(calls))
        policy_s.append(timed.seconds)
    f, t = np.asarray(fixed_s), np.asarray(tampo_s)
    return {
        "task": task_name,
        "model": "testbed SFT (d=64, 2 layers)"
        if width is None
        else f"random init (d={width[0]}, {width[1]} layers)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "pairs": pairs,
        "rollouts_per_step": spec.prompts_per_step * spec.group_size,
        "median_fixed_step_ms": 1e3 * float(np.median(f)),
        "median_tampo_step_ms": 1e3 * float(np.median(t)),
        "overhead_ratio_of_medians_pct": 100.0 * (float(np.median(t) / np.median(f)) - 1.0),
        "median_paired_diff_ms": 1e3 * float(np.median(t - f)),
        "overhead_median_paired_pct": 100.0 * float(np.median((t - f) / f)),
        "median_tampo_sample_observe_ms": 1e3 * float(np.median(policy_s)),
        "tampo_sample_observe_pct_of_fixed_step": 100.0 * float(np.median(policy_s) / np.median(f)),
        "forwards_per_step_fixed": sorted(set(fwd_fixed)),
        "forwards_per_step_tampo": sorted(set(fwd_tampo)),
        "extra_forwards_per_step": int(max(fwd_tampo) - max(fwd_fixed)),
    }


def main(argv: Sequence[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--width",
        type=int,
        nargs=2,
        metavar=("D_MODEL", "LAYERS"),
        help="time a randomly initialised model of this size instead of the SFT one",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "suite_overhead.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    spec = RunSpec(task="", method="tampo-w10", seed=0, sft=SFT["countdown"])
    rows = [measure(t, a.pairs, spec, tuple(a.width) if a.width else None) for t in a.tasks]
    record = {
        "command": "python -m benchmarks.suite_overhead "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": a.threads,
        "machine": machine(),
        "results": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, indent=1))
    lines = [
        "| task | model (params) | rollouts/step | fixed-T step (median ms) | "
        "TAMPO step (median ms) | "
        "overhead (ratio of medians) | overhead (median paired) | "
        "TAMPO sample+observe (median ms, % of fixed step) | extra forwards/step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['task']} | {r['model']} ({r['parameters']:,}) | {r['rollouts_per_step']} | "
        f"{r['median_fixed_step_ms']:.1f} | "
        f"{r['median_tampo_step_ms']:.1f} | {r['overhead_ratio_of_medians_pct']:+.2f}% | "
        f"{r['overhead_median_paired_pct']:+.2f}% | "
        f"{r['median_tampo_sample_observe_ms']:.2f} "
        f"({r['tampo_sample_observe_pct_of_fixed_step']:.2f}%) | {r['extra_forwards_per_step']} |"
        for r in rows
    ]
    header = (
        f"Command: `{record['command']}`, {a.threads} thread(s), {record['machine']['cpu']}.\n\n"
    )
    a.out.with_suffix(".md").write_text(header + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return a.out


if __name__ == "__main__":
    main()
