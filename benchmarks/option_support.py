"""One-batch probe of the options at each testbed's SFT start (no training: a measurement of
what the first update sees, not evidence that an option helps).

    python -m benchmarks.option_support            # -> benchmarks/results/option_support/

Per testbed and seed: 32 prompts x 8 completions sampled at T = 1.0 from the cached SFT model
(it refuses to train one), GRPO advantages, the likelihoods at the paper's grid, then one
update of a fresh policy per option. Recorded: the mean sparsemax support (of 10), the
temperature the batch advantage prefers (argmax A_B), the least-squares slope of A_B over T,
the share of trajectories in all-equal groups (invisible to the paper's update; the batch
baseline sees them) and, for a two-bucket split by the group's own pass rate in this batch
(<= 0.5: "hard"), the slope of A_B over T in each bucket.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.option_methods import OPTION_CONFIGS, PAPER_TAMPO
from benchmarks.suite import SFT
from benchmarks.testbeds import TASKS
from benchmarks.testbeds.sft import build_model, config_key, default_cache_dir, train_pool
from tampo_core import PAPER_TEMPERATURES, TampoConfig, TempMetaPolicy, multi_temperature_loglik
from tampo_core.adapters.torch_loop import completion_logits, group_advantages, sample_completions
from tampo_core.contextual import ContextualTempMetaPolicy

OUT = Path(__file__).resolve().parent / "results" / "option_support"
PROMPTS, GROUP, TEMPERATURE = 32, 8, 1.0
PROBED = {"tampo": {}, **{m: c for m, c in OPTION_CONFIGS.items() if m != "tampo-fixedwarm"}}


def _cached_sft(task_name: str) -> torch.nn.Module:
    task, cfg = TASKS[task_name](), SFT[task_name]
    path = default_cache_dir() / f"{task.name}-{config_key(task, cfg)}.pt"
    if not path.exists():
        raise FileNotFoundError(f"no cached SFT model at {path}: run the suite once first")
    model = build_model(task, cfg)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def _slope(batch_advantage: np.ndarray) -> float:
    return float(np.polyfit(np.asarray(PAPER_TEMPERATURES), batch_advantage, 1)[0])


def probe(task_name: str, seed: int) -> list[dict[str, Any]]:
    """One batch of ``task_name`` and one update per option; one row per option."""
    task, model = TASKS[task_name](), _cached_sft(task_name)
    pool = train_pool(task, SFT[task_name])
    rng = np.random.default_rng(seed)
    problems = [
        pool[i] for i in rng.choice(len(pool), PROMPTS, replace=False) for _ in range(GROUP)
    ]
    prompt_ids = task.prompt_ids(problems)
    rollout = sample_completions(
        model,
        prompt_ids,
        temperature=TEMPERATURE,
        max_new_tokens=task.max_new_tokens,
        eos_token_id=task.eos_id,
        generator=torch.Generator().manual_seed(seed),
    )
    rewards = task.rewards(problems, rollout.completion_ids, rollout.completion_mask)
    advantages = group_advantages(rewards, GROUP)
    with torch.no_grad():
        logits = completion_logits(model, prompt_ids, rollout.completion_ids)
    loglik = multi_temperature_loglik(
        logits, rollout.completion_ids, PAPER_TEMPERATURES, mask=rollout.completion_mask
    )
    group_rate = rewards.view(-1, GROUP).mean(1)
    invisible = float((rewards.view(-1, GROUP).std(1) == 0).float().mean())
    hard = ["hard" if r <= 0.5 else "easy" for r in group_rate.tolist() for _ in range(GROUP)]
    rows = []
    for method, options in PROBED.items():
        config = TampoConfig(**PAPER_TAMPO, warmup_steps=0, **options)
        needs = config.meta_advantage != "given"
        stats = TempMetaPolicy(config=config).observe_loglik(
            loglik, advantages, rewards=rewards if needs else None
        )
        split = ContextualTempMetaPolicy(["easy", "hard"], config=config).observe_loglik(
            loglik, advantages, buckets=hard, rewards=rewards if needs else None
        )
        bucket_slope = {
            b: None if s is None else _slope(s.batch_advantage) for b, s in split.buckets.items()
        }
        rows.append(
            {
                "task": task_name,
                "seed": seed,
                "method": method,
                "support_size": float(stats.support_size),
                "preferred_T": PAPER_TEMPERATURES[int(np.argmax(stats.batch_advantage))],
                "slope": _slope(stats.batch_advantage),
                "mean_reward": float(rewards.mean()),
                "invisible_fraction": invisible,
                "slope_easy": bucket_slope["easy"],
                "slope_hard": bucket_slope["hard"],
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--tasks", nargs="*", default=list(SFT))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = [row for task in args.tasks for seed in range(args.seeds) for row in probe(task, seed)]
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.option_support " + shlex.join(argv or sys.argv[1:])
    (args.out / "option_support.json").write_text(
        json.dumps({"command": command, "rows": rows}, indent=1)
    )
    with (args.out / "option_support.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "command.txt").write_text(command + "\n")
    return args.out


if __name__ == "__main__":
    print(main())
