"""The fused CPU kernel beside a CPU hog: fused vs naive, idle and contended, in one run.

    python -m benchmarks.kernel_contention       # V = 151,936, 512 tokens, K = 10, 2 threads
    python -m benchmarks.kernel_contention --vocab 4096 --tokens 64 --repeats 1   # smoke run

Four methods, bf16 and fp32 logits: ``fused`` (the kernel as shipped: on the calling thread
until a window of chunks loses time to preemption, then on worker threads for as long as that
lasts; ``tampo_core/loglik/workers.py``; its decision carries from call to call, so the first
``fused`` call of each phase, printed in round 1, is the one that switches),
``fused_regions`` (always the calling thread, each op its own multi-threaded parallel region:
the kernel before this change), ``fused_workers`` (always the worker threads) and
``naive_fp32_loop`` (``log_softmax(z.float() / T)`` per temperature).
Each is checked against float64 first, then timed round-robin (median of ``--repeats``), first
on the machine as it is ("idle"), then beside ``--hogs`` busy-looping processes ("hog").

The fair-share slowdown is what contention should cost: ``threads + hogs`` busy threads on
``cores`` cores give the kernel ``cores * threads / (threads + hogs)`` cores. The load average
(``uptime``) is recorded around every phase: the machine may be shared with other work.
Writes ``kernel_contention.{csv,json}`` under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from benchmarks.kernel_baselines import naive_fp32_loop
from benchmarks.kernel_cpu import Inputs, float64_reference, machine_description, make_inputs
from tampo_core.loglik import contention, workers
from tampo_core.loglik.logits import multi_temperature_loglik

RESULTS = Path(__file__).resolve().parent / "results"
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
HOG = "while True:\n    pass\n"


@contextlib.contextmanager
def schedule(name: str) -> Iterator[None]:
    """Pin the kernel's CPU chunk schedule (``tampo_core.loglik.workers.SCHEDULE``)."""
    saved = workers.SCHEDULE
    workers.SCHEDULE = name
    try:
        yield
    finally:
        workers.SCHEDULE = saved


def fused_with(name: str) -> Callable[[Inputs], torch.Tensor]:
    def run(x: Inputs) -> torch.Tensor:
        with schedule(name):
            return multi_temperature_loglik(x.logits, x.tokens, x.temps, x.mask).loglik

    return run


METHODS: dict[str, Callable[[Inputs], torch.Tensor]] = {
    "fused": fused_with("auto"),
    "fused_regions": fused_with("caller"),
    "fused_workers": fused_with("workers"),
    "naive_fp32_loop": lambda x: naive_fp32_loop(x.logits, x.tokens, x.mask, x.temps),
}


@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[list[int]]:
    """``count`` busy-looping Python processes for the duration (their pids)."""
    procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(count)]
    try:
        time.sleep(0.5)  # let the scheduler see them
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def time_round_robin(
    inputs: dict[str, Inputs], repeats: int, label: str
) -> dict[tuple[str, str], list[float]]:
    """Seconds per call of every (dtype, method), interleaved round by round."""
    times: dict[tuple[str, str], list[float]] = {}
    for round_index in range(repeats):
        for dtype, x in inputs.items():
            for name, fn in METHODS.items():
                start = time.perf_counter()
                fn(x)
                times.setdefault((dtype, name), []).append(time.perf_counter() - start)
        summary = ", ".join(f"{d}/{n}={t[-1]:.2f}s" for (d, n), t in times.items())
        print(f"  {label} round {round_index + 1}/{repeats}: {summary}", flush=True)
    return times


def fair_share_slowdown(threads: int, hogs: int, cores: int) -> float:
    """Slowdown when ``threads + hogs`` busy threads share ``cores`` cores equally."""
    usable = min(threads, cores)
    share = min(usable, cores * threads / (threads + hogs))
    return usable / share


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--tokens", type=int, default=512, help="valid tokens (4 sequences)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--hogs", type=int, default=1, help="busy-looping processes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cores = len(os.sched_getaffinity(0))
    base = make_inputs(args.vocab, args.tokens)
    inputs = {
        name: Inputs(base.logits.to(dtype), base.tokens, base.mask, base.temps)
        for name, dtype in DTYPES.items()
    }
    n, k = base.mask.numel(), len(base.temps)
    print(f"V={args.vocab} N={n} K={k} threads={args.threads} hogs={args.hogs} cores={cores}")
    errors = {}
    for dtype, x in inputs.items():
        want = float64_reference(x)
        for name, fn in METHODS.items():
            errors[(dtype, name)] = float((fn(x).double() - want).abs().max())
            if not errors[(dtype, name)] < 1e-4:
                raise SystemExit(f"{dtype}/{name}: max |error| {errors[(dtype, name)]:.3g}")
    phases: dict[str, dict] = {}
    for phase in ("idle", "hog"):
        before = uptime()
        with cpu_hogs(args.hogs if phase == "hog" else 0):
            times = time_round_robin(inputs, args.repeats, phase)
        phases[phase] = {"uptime_before": before, "uptime_after": uptime(), "times": times}
        print(f"  {phase}: {before} -> {phases[phase]['uptime_after']}", flush=True)
    rows = []
    medians: dict[tuple[str, str, str], float] = {}
    for phase, record in phases.items():
        for (dtype, name), samples in record["times"].items():
            medians[(phase, dtype, name)] = statistics.median(samples)
            rows.append(
                {
                    "phase": phase,
                    "dtype": dtype,
                    "method": name,
                    "median_s": statistics.median(samples),
                    "min_s": min(samples),
                    "max_s": max(samples),
                    "runs": len(samples),
                    "max_abs_err_vs_fp64": errors[(dtype, name)],
                }
            )
    ratios = {}
    for dtype in DTYPES:
        entry: dict[str, float] = {}
        for phase in phases:
            naive = medians[(phase, dtype, "naive_fp32_loop")]
            entry[f"{phase}_naive_over_fused"] = naive / medians[(phase, dtype, "fused")]
            entry[f"{phase}_naive_over_fused_regions"] = (
                naive / medians[(phase, dtype, "fused_regions")]
            )
        for name in METHODS:
            entry[f"{name}_hog_over_idle"] = (
                medians[("hog", dtype, name)] / medians[("idle", dtype, name)]
            )
        ratios[dtype] = entry
    fair = fair_share_slowdown(args.threads, args.hogs, cores)
    command = " ".join(
        shlex.quote(a)
        for a in [sys.executable, "-m", "benchmarks.kernel_contention", *(argv or sys.argv[1:])]
    )
    report = {
        "command": command,
        "config": {
            "vocab": args.vocab,
            "valid_tokens": n,
            "temperatures": list(base.temps),
            "repeats": args.repeats,
            "threads": args.threads,
            "hogs": args.hogs,
            "cores": cores,
            "min_parallel_elements": workers.MIN_PARALLEL_ELEMENTS,
            "lost_share": contention.LOST_SHARE,
            "check_chunks": workers.CHECK_CHUNKS,
            "process_wide_counters": contention.process_wide(),
        },
        "machine": machine_description(args.threads),
        "phases": "idle: no hog started by this benchmark (other work on the machine shows in "
        "the uptime lines); hog: the same beside --hogs busy-looping processes",
        "uptime": {
            phase: {k: v for k, v in r.items() if k != "times"} for phase, r in phases.items()
        },
        "fair_share_slowdown": fair,
        "ratios": ratios,
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "kernel_contention.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "kernel_contention.json").write_text(json.dumps(report, indent=2) + "\n")
    for row in rows:
        print(
            f"{row['phase']:5s} {row['dtype']:5s} {row['method']:16s} {row['median_s']:8.3f} s"
            f"  (max |err| vs fp64 {row['max_abs_err_vs_fp64']:.1e})"
        )
    for dtype, entry in ratios.items():
        print(
            f"{dtype}: naive/fused idle {entry['idle_naive_over_fused']:.2f}x, "
            f"hog {entry['hog_naive_over_fused']:.2f}x; hog/idle: fused "
            f"{entry['fused_hog_over_idle']:.2f}x, fused_regions "
            f"{entry['fused_regions_hog_over_idle']:.2f}x, fused_workers "
            f"{entry['fused_workers_hog_over_idle']:.2f}x, naive "
            f"{entry['naive_fp32_loop_hog_over_idle']:.2f}x (fair share {fair:.2f}x)"
        )
    print(f"command: {command}")


if __name__ == "__main__":
    main()
