"""Benchmark suite: GRPO at fixed temperatures and schedules vs TAMPO on the CPU testbeds.

    python -m benchmarks.suite --quick   # < 5 min on 2 cores -> benchmarks/results/suite_quick
    python -m benchmarks.suite           # full suite (~1 h on 2 quiet cores)
    python -m benchmarks.suite --ablation top_p --ablation alpha   # TAMPO ablations on top

One JSON per (task, method, seed) under ``<out>/runs``; an interrupted suite resumes by
skipping runs already present (their configuration hash must match).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmarks.suite_report import write_report
from benchmarks.suite_run import ABLATIONS, MAIN_METHODS, RunSpec, run
from benchmarks.testbeds import TASKS
from benchmarks.testbeds.sft import SFTConfig, load_or_train

RESULTS = Path(__file__).resolve().parent / "results"
# SFT lengths put each model on a partial policy (held-out greedy pass@1 ~0.16 for addition,
# ~0.20 for countdown), chosen once from supervised curves, never from RL results.
SFT = {
    "addition": SFTConfig(steps=500, pool_size=6000),
    "countdown": SFTConfig(steps=2500),
    "wrong-mode": SFTConfig(steps=1500, pool_size=6000),
    "surface": SFTConfig(steps=1500, pool_size=6000),
    "loop": SFTConfig(steps=1500, pool_size=6000),
    "mixed": SFTConfig(steps=1500, pool_size=6000),
}
PROFILES: dict[str, dict[str, Any]] = {
    "full": {"seeds": 5, "run": {}, "out": RESULTS / "suite"},
    "quick": {
        "seeds": 2,
        "out": RESULTS / "suite_quick",
        "run": {
            "steps": 60,
            "prompts_per_step": 16,
            "warmup_steps": 5,
            "curve_every": 10,
            "curve_size": 128,
            "eval_size": 256,
            "eval_samples": 8,
            "ks": (4, 8),
        },
    },
    "smoke": {
        "seeds": 1,
        "out": RESULTS / "_scratch" / "suite_smoke",
        "sft": {"steps": 20, "pool_size": 500, "eval_size": 32},
        "methods": ("fixed-1.2", "linear-0.9-1.5", "uniform", "e3", "tampo", "sft"),
        "run": {
            "steps": 4,
            "prompts_per_step": 4,
            "group_size": 4,
            "warmup_steps": 2,
            "curve_every": 2,
            "curve_size": 16,
            "eval_size": 32,
            "eval_samples": 4,
            "ks": (4,),
        },
    },
}
ORDER = ("sft", *MAIN_METHODS, *(m for ms in ABLATIONS.values() for m in ms))


def build_specs(
    profile: str, tasks: Sequence[str], methods: Sequence[str], seeds: Sequence[int]
) -> list[RunSpec]:
    prof = PROFILES[profile]
    specs = []
    for method in methods:
        for seed in seeds:
            for task in tasks:
                sft = dataclasses.replace(SFT[task], **prof.get("sft", {}))
                specs.append(RunSpec(task=task, method=method, seed=seed, sft=sft, **prof["run"]))
    return specs


def _init_worker() -> None:
    torch.set_num_threads(1)


def _prepare_sft(args: tuple[str, SFTConfig, Path | None]) -> str:
    task, cfg, cache = args
    load_or_train(TASKS[task](), cfg, cache)
    return task


def _run_and_save(args: tuple[RunSpec, Path, Path | None]) -> str:
    spec, out_dir, cache = args
    record = run(spec, cache)
    path = spec.path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)
    return f"{spec.task}/{spec.method}/seed{spec.seed}"


def pending(specs: list[RunSpec], out_dir: Path) -> list[RunSpec]:
    """Specs without a stored result; a stored result from another configuration is an error."""
    todo = []
    for s in specs:
        p = s.path(out_dir)
        if not p.exists():
            todo.append(s)
        elif json.loads(p.read_text())["key"] != s.key():
            raise SystemExit(
                f"{p} was produced with a different configuration; use another --out or delete it"
            )
    return todo


def machine() -> dict[str, Any]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small configuration (< 5 min)")
    mode.add_argument("--smoke", action="store_true", help="tiny end-to-end check (seconds)")
    ap.add_argument(
        "--ablation",
        action="append",
        choices=sorted(ABLATIONS),
        default=[],
        help="add TAMPO variants (top_p: 0/0.5/0.7/0.9, alpha: 0.01/0.05/0.1)",
    )
    ap.add_argument("--no-main", action="store_true", help="run only the ablation methods")
    ap.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    ap.add_argument("--methods", nargs="+", help="override the method list")
    ap.add_argument("--seeds", type=int, help="number of seeds (0..n-1)")
    ap.add_argument("--workers", type=int, default=2, help="processes (1 thread each)")
    ap.add_argument("--out", type=Path, help="results directory")
    ap.add_argument("--cache-dir", type=Path, help="SFT checkpoint cache")
    ap.add_argument("--report-only", action="store_true", help="only re-aggregate results")
    a = ap.parse_args(argv)
    profile = "quick" if a.quick else "smoke" if a.smoke else "full"
    prof = PROFILES[profile]
    out_dir: Path = a.out or prof["out"]
    methods = list(a.methods or prof.get("methods", ("sft", *MAIN_METHODS)))
    if a.no_main:
        methods = []
    for name in a.ablation:
        methods += [m for m in ABLATIONS[name] if m not in methods]
    seeds = range(a.seeds if a.seeds is not None else prof["seeds"])
    specs = build_specs(profile, a.tasks, methods, list(seeds))
    out_dir.mkdir(parents=True, exist_ok=True)
    if not a.report_only:
        todo = pending(specs, out_dir)
        start = time.time()
        print(f"{profile}: {len(specs)} runs, {len(todo)} to do -> {out_dir}", flush=True)
        sft_jobs = sorted({(s.task, s.sft, a.cache_dir) for s in todo}, key=lambda j: j[0])
        jobs = [(s, out_dir, a.cache_dir) for s in todo]
        if a.workers <= 1:
            _init_worker()
            for job in sft_jobs:
                _prepare_sft(job)
            for job in tqdm(jobs, desc="runs", unit="run"):
                _run_and_save(job)
        else:
            with mp.get_context("spawn").Pool(a.workers, initializer=_init_worker) as pool:
                list(pool.imap_unordered(_prepare_sft, sft_jobs))
                for _ in tqdm(
                    pool.imap_unordered(_run_and_save, jobs),
                    total=len(jobs),
                    desc="runs",
                    unit="run",
                ):
                    pass
        meta = {
            "command": shlex.join(
                [
                    Path(sys.executable).name,
                    "-m",
                    "benchmarks.suite",
                    *(argv if argv is not None else sys.argv[1:]),
                ]
            ),
            "profile": profile,
            "workers": a.workers,
            "runs_done_now": len(todo),
            "wall_seconds_this_invocation": round(time.time() - start, 1),
            "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "machine": machine(),
            "run_config": {
                k: v
                for k, v in dataclasses.asdict(specs[0]).items()
                if k not in ("task", "method", "seed")
            }
            if specs
            else {},
            "task_params": {t: TASKS[t]().params for t in a.tasks},
        }
        log_path = out_dir / "invocations.json"
        history = json.loads(log_path.read_text()) if log_path.exists() else []
        log_path.write_text(json.dumps([*history, meta], indent=1))
    paths = write_report(out_dir, ORDER)
    for name, p in paths.items():
        print(f"{name}: {p}")
    return paths


if __name__ == "__main__":
    main()
