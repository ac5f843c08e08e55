"""Start statistics of every testbed's supervised start policy, before any RL.

    python -m benchmarks.testbed_stats            # -> benchmarks/results/testbed_stats.{json,md}
    python -m benchmarks.testbed_stats --tasks wrong-mode --samples 4

Per task, on the fixed held-out set: greedy reward; the start curve E[R](T) (mean reward of
``--samples`` draws per problem at each grid temperature); the truncation rate (no ``<eos>``
within the length cap) and the loop rate (truncated with the last 4 tokens identical) per T;
the mean sparsemax support size of TAMPO's per-temperature likelihoods over T = 1.0 rollouts
(out of K); and, where the task has a wrong-mode subset, the greedy reward on it and off it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.suite import RESULTS, SFT, machine
from benchmarks.testbeds import TASKS, Problem, ShapedAddition, Task
from benchmarks.testbeds.evaluation import truncated
from benchmarks.testbeds.sft import eval_problems, load_or_train
from tampo_core import PAPER_TEMPERATURES
from tampo_core.adapters.torch_loop import completion_logits, sample_completions
from tampo_core.loglik import multi_temperature_loglik
from tampo_core.sparsemax import sparsemax

LOOP_TAIL = 4


def rollout_stats(
    task: Task, problems: list[Problem], ids: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    """Mean reward, truncation rate and loop rate of completions ids/mask int64/bool [N, L];
    for a wrong-mode task also the mean reward on its carry subset (``reward_on_trap``)."""
    rewards = task.rewards(problems, ids, mask)
    cut = truncated(task, ids, mask)
    tail = ids[:, -LOOP_TAIL:]
    looping = cut & (tail == tail[:, :1]).all(1) & (task.max_new_tokens >= 2 * LOOP_TAIL)
    out = {
        "reward": float(rewards.mean()),
        "truncation": float(cut.float().mean()),
        "loop": float(looping.float().mean()),
    }
    if isinstance(task, ShapedAddition) and task.trap_prob:
        trap = torch.tensor([task.is_trap(*p.numbers) for p in problems])
        out["reward_on_trap"] = float(rewards[trap].mean())
        out["reward_off_trap"] = float(rewards[~trap].mean())
    return out


@torch.no_grad()
def start_statistics(
    task: Task, model: torch.nn.Module, problems: list[Problem], samples: int, seed: int = 0
) -> dict[str, Any]:
    """The measurements described in the module docstring, for one task."""
    gen = torch.Generator().manual_seed(seed)
    prompts = task.prompt_ids(problems)
    greedy = sample_completions(
        model,
        prompts,
        temperature=0.0,
        max_new_tokens=task.max_new_tokens,
        eos_token_id=task.eos_id,
    )
    out: dict[str, Any] = {
        "greedy": rollout_stats(task, problems, greedy.completion_ids, greedy.completion_mask)
    }
    rows = [p for p in problems for _ in range(samples)]
    by_t = {}
    for t in PAPER_TEMPERATURES:
        r = sample_completions(
            model,
            task.prompt_ids(rows),
            temperature=t,
            max_new_tokens=task.max_new_tokens,
            eos_token_id=task.eos_id,
            generator=gen,
        )
        by_t[f"{t:g}"] = rollout_stats(task, rows, r.completion_ids, r.completion_mask)
        if t == 1.0:
            logits = completion_logits(model, task.prompt_ids(rows), r.completion_ids)
            ll = multi_temperature_loglik(
                logits, r.completion_ids, PAPER_TEMPERATURES, mask=r.completion_mask
            )
            weights = sparsemax(ll.loglik.double().numpy())
            out["support_size"] = float((weights > 0).sum(1).mean())
            out["argmax_T_histogram"] = np.bincount(
                ll.loglik.argmax(1).numpy(), minlength=len(PAPER_TEMPERATURES)
            ).tolist()
    out["by_temperature"] = by_t
    curve = {t: v["reward"] for t, v in by_t.items()}
    out["best_sampled_T"] = max(curve, key=curve.__getitem__)
    out["K"] = len(PAPER_TEMPERATURES)
    out["vocab_size"] = task.vocab_size
    if "reward_on_trap" in out["greedy"]:
        out["trap_fraction"] = float(np.mean([task.is_trap(*p.numbers) for p in problems]))
    return out


def markdown(stats: dict[str, dict[str, Any]]) -> str:
    temps = [f"{t:g}" for t in PAPER_TEMPERATURES]
    lines = [
        "| testbed | V | greedy R | "
        + " | ".join(f"E[R] T={t}" for t in temps)
        + " | best T | support (of K) | trunc. greedy / T=1 | loop T=1 |",
        "|---" * (len(temps) + 7) + "|",
    ]
    for name, s in stats.items():
        curve = " | ".join(f"{s['by_temperature'][t]['reward']:.3f}" for t in temps)
        lines.append(
            f"| {name} | {s['vocab_size']} | {s['greedy']['reward']:.3f} | {curve} | "
            f"{s['best_sampled_T']} | {s['support_size']:.2f} of {s['K']} | "
            f"{s['greedy']['truncation']:.3f} / {s['by_temperature']['1']['truncation']:.3f} | "
            f"{s['by_temperature']['1']['loop']:.3f} |"
        )
    traps = {n: s for n, s in stats.items() if "trap_fraction" in s}
    if traps:
        lines += [
            "",
            "Carry subset (where the wrong mode drops the carry): reward on it / elsewhere.",
            "",
            "| testbed | subset | greedy | " + " | ".join(f"T={t}" for t in temps) + " |",
            "|---" * (len(temps) + 3) + "|",
        ]
        for n, s in traps.items():
            cells = [s["by_temperature"][t] for t in temps]
            lines.append(
                f"| {n} | {s['trap_fraction']:.2f} | {s['greedy']['reward_on_trap']:.3f} / "
                f"{s['greedy']['reward_off_trap']:.3f} | "
                + " | ".join(
                    f"{c['reward_on_trap']:.3f} / {c['reward_off_trap']:.3f}" for c in cells
                )
                + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    ap.add_argument("--samples", type=int, default=8, help="draws per problem and temperature")
    ap.add_argument("--eval-size", type=int, default=512)
    ap.add_argument("--out", type=Path, default=RESULTS / "testbed_stats")
    ap.add_argument("--cache-dir", type=Path, help="SFT checkpoint cache")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    stats: dict[str, dict[str, Any]] = {}
    start = time.time()
    for name in a.tasks:
        t0 = time.time()
        print(f"{name}: supervised start (cached after the first time) ...", flush=True)
        task = TASKS[name]()
        model = load_or_train(task, SFT[name], a.cache_dir)
        print(f"{name}: measuring at {len(PAPER_TEMPERATURES)} temperatures ...", flush=True)
        stats[name] = start_statistics(task, model, eval_problems(task, a.eval_size), a.samples)
        stats[name]["sft"] = SFT[name].__dict__
        print(f"{name}: done in {time.time() - t0:.0f} s", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": shlex.join(
            ["python", "-m", "benchmarks.testbed_stats", *(argv or sys.argv[1:])]
        ),
        "wall_seconds": round(time.time() - start, 1),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": machine(),
        "eval_size": a.eval_size,
        "samples": a.samples,
    }
    (a.out / "testbed_stats.json").write_text(json.dumps({"meta": meta, "tasks": stats}, indent=1))
    (a.out / "testbed_stats.md").write_text(
        f"Produced by `{meta['command']}` ({meta['wall_seconds']:.0f} s, {meta['finished_utc']} "
        f"UTC). E[R](T): mean reward of {a.samples} draws per problem on {a.eval_size} held-out "
        "problems; support: mean sparsemax support of TAMPO's per-temperature mean likelihoods "
        "of T = 1.0 rollouts.\n\n" + markdown(stats)
    )
    print(f"-> {a.out / 'testbed_stats.md'}")
    return a.out / "testbed_stats.md"


if __name__ == "__main__":
    main()
