"""Benchmark suite: GRPO at fixed temperatures and schedules vs TAMPO on the CPU testbeds.

    python -m benchmarks.suite --quick   # smoke run, < 5 min on 2 cores -> results/suite_quick
    python -m benchmarks.suite           # full suite, resumable -> results/suite_fair
    python -m benchmarks.suite --ablation top_p --ablation alpha   # TAMPO ablations on top
    python -m benchmarks.suite --ablation options --no-main        # options beyond the paper

Method names (--methods): sft, fixed-<T>, linear-<T0>-<T1>, cosine-<T0>-<T1>, staged,
uniform, e3, e3-anneal, tampo-w<warm-up steps>[-p<top_p>][-a<alpha>]; see benchmarks/methods.py.

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
import resource
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmarks.methods import check_method
from benchmarks.suite_report import MIN_VERDICT_SEEDS, write_report
from benchmarks.suite_run import ABLATIONS, MAIN_METHODS, RunSpec, run
from benchmarks.testbeds import TASKS
from benchmarks.testbeds.sft import SFTConfig, load_or_train

RESULTS = Path(__file__).resolve().parent / "results"
# SFT lengths put each model on a partial policy, chosen from supervised curves, never from RL
# results (held-out greedy pass@1: addition 0.10 at 300 steps; retrained on 2026-12-02, 500 steps
# gave 0.85, not the 0.16 of the first suite's cached checkpoint; countdown ~0.21; the shaped
# testbeds: benchmarks/results/testbed_stats).
SFT = {
    "addition": SFTConfig(steps=300, pool_size=6000),
    "countdown": SFTConfig(steps=2500),
    "wrong-mode": SFTConfig(steps=1500, pool_size=6000),
    "surface": SFTConfig(steps=1500, pool_size=6000),
    "loop": SFTConfig(steps=1500, pool_size=6000),
    "mixed": SFTConfig(steps=1500, pool_size=6000),
}
PROFILES: dict[str, dict[str, Any]] = {
    "full": {"seeds": 5, "tasks": tuple(TASKS), "run": {}, "out": RESULTS / "suite_fair"},
    "quick": {
        "seeds": 2,
        "tasks": ("wrong-mode", "mixed"),
        "out": RESULTS / "suite_quick",
        "run": {
            "steps": 60,
            "prompts_per_step": 16,
            "curve_every": 10,
            "curve_size": 128,
            "eval_size": 256,
            "eval_samples": 8,
            "ks": (4, 8),
        },
    },
    "smoke": {
        "seeds": 1,
        "tasks": ("countdown",),
        "out": RESULTS / "_scratch" / "suite_smoke",
        "sft": {"steps": 20, "pool_size": 500, "eval_size": 32},
        "methods": (
            "fixed-1.2",
            "linear-0.9-1.5",
            "cosine-0.9-1.5",
            "staged",
            "uniform",
            "e3-anneal",
            "tampo-w0",
            "tampo-w2",
            "sft",
        ),
        "run": {
            "steps": 4,
            "prompts_per_step": 4,
            "group_size": 4,
            "curve_every": 2,
            "curve_size": 16,
            "eval_size": 32,
            "eval_samples": 4,
            "ks": (4,),
        },
    },
}
SMOKE_BANNER = (
    "SMOKE RUN ({profile}): {seeds} seed(s), short runs. It checks that everything runs end to "
    "end; its numbers decide nothing (a verdict needs >= {min_seeds} paired seeds)."
)
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


def estimate(
    specs: list[RunSpec],
    out_dir: Path,
    cache: Path | None,
    workers: int,
    argv: Sequence[str] | None,
) -> dict[str, Any]:
    """Time one TAMPO seed-0 run per testbed (run now if not stored; stored runs keep
    their measured ``cpu_seconds``) and project the profile: sum over all its runs of their
    testbed's CPU time, divided by ``workers``, plus the supervised starts still to train.
    Written to ``<out>/estimate.json``; an estimate, not a measurement of the whole suite."""
    _init_worker()
    probes: dict[str, RunSpec] = {}
    for s in specs:
        if s.method.startswith("tampo-") and s.seed == 0:
            probes.setdefault(s.task, s)
    per_task: dict[str, float] = {}
    sft_seconds = 0.0
    for task, spec in probes.items():
        t0 = time.process_time()
        _prepare_sft((task, spec.sft, cache))
        sft_seconds += time.process_time() - t0
        if spec in pending([spec], out_dir):
            print(f"estimate: timing {task}/{spec.method}/seed0 ...", flush=True)
            _run_and_save((spec, out_dir, cache))
        per_task[task] = json.loads(spec.path(out_dir).read_text())["cpu_seconds"]
    todo = pending(specs, out_dir)
    cpu = sum(per_task[s.task] for s in todo if s.task in per_task)
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.suite", *(argv or sys.argv[1:])]),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "load_average": list(os.getloadavg()),
        "machine": machine(),
        "cpu_seconds_per_run_by_testbed": per_task,
        "supervised_start_cpu_seconds_this_call": round(sft_seconds, 1),
        "runs_total": len(specs),
        "runs_to_do": len(todo),
        "workers": workers,
        "projected_wall_minutes_on_idle_cores": round(cpu / max(workers, 1) / 60, 1),
        "note": "sft runs (evaluation only) are counted at their testbed's RL run time",
    }
    path = out_dir / "estimate.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished worker processes."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _method_arg(name: str) -> str:
    try:
        return check_method(name)
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 new testbeds, 2 seeds, 60 steps; decides nothing",
    )
    mode.add_argument("--smoke", action="store_true", help="tiny end-to-end check (seconds)")
    ap.add_argument(
        "--ablation",
        action="append",
        choices=sorted(ABLATIONS),
        default=[],
        help="add TAMPO variants (top_p: 0/0.5/0.7/0.9, alpha: 0.01/0.05/0.1; options: the "
        "options beyond the paper, benchmarks/option_methods.py; all with warm-up 10)",
    )
    ap.add_argument("--no-main", action="store_true", help="run only the ablation methods")
    ap.add_argument("--tasks", nargs="+", choices=list(TASKS), help="default: the profile's")
    ap.add_argument(
        "--methods",
        nargs="+",
        type=_method_arg,
        metavar="METHOD",
        help="override the method list; valid names: "
        + ", ".join(("sft", *MAIN_METHODS))
        + " or any of the forms above (refused before any work if unknown)",
    )
    ap.add_argument("--seeds", type=int, help="number of seeds (0..n-1)")
    ap.add_argument("--workers", type=int, default=2, help="processes (1 thread each)")
    ap.add_argument("--out", type=Path, help="results directory")
    ap.add_argument("--cache-dir", type=Path, help="SFT checkpoint cache")
    ap.add_argument("--report-only", action="store_true", help="only re-aggregate results")
    ap.add_argument(
        "--estimate",
        action="store_true",
        help="run one TAMPO seed-0 run per testbed (kept as results), then project the\n"
        "profile's wall time from their CPU times -> <out>/estimate.json",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    a = _parse_args(argv)
    profile = "quick" if a.quick else "smoke" if a.smoke else "full"
    prof = PROFILES[profile]
    out_dir: Path = a.out or prof["out"]
    methods = list(a.methods or prof.get("methods", ("sft", *MAIN_METHODS)))
    if a.no_main:
        methods = []
    for name in a.ablation:
        methods += [m for m in ABLATIONS[name] if m not in methods]
    seeds = range(a.seeds if a.seeds is not None else prof["seeds"])
    tasks = a.tasks or list(prof["tasks"])
    specs = build_specs(profile, tasks, methods, list(seeds))
    out_dir.mkdir(parents=True, exist_ok=True)
    banner = ""
    if profile != "full" or len(seeds) < MIN_VERDICT_SEEDS:
        banner = SMOKE_BANNER.format(profile=profile, seeds=len(seeds), min_seeds=MIN_VERDICT_SEEDS)
        print(banner, flush=True)
    if a.estimate:
        estimate(specs, out_dir, a.cache_dir, a.workers, argv)
        return {"estimate": out_dir / "estimate.json"}
    if not a.report_only:
        todo = pending(specs, out_dir)
        start, load_at_start = time.time(), list(os.getloadavg())
        print(f"{profile}: {len(specs)} runs, {len(todo)} to do -> {out_dir}", flush=True)
        sft_jobs = sorted({(s.task, s.sft, a.cache_dir) for s in todo}, key=lambda j: j[0])
        jobs = [(s, out_dir, a.cache_dir) for s in todo]
        if sft_jobs:
            print(f"supervised starts for {len(sft_jobs)} task(s) (cached after the first time)")
        if a.workers <= 1:
            _init_worker()
            for job in tqdm(sft_jobs, desc="sft", unit="task"):
                _prepare_sft(job)
            for job in tqdm(jobs, desc="runs", unit="run"):
                _run_and_save(job)
        else:
            with mp.get_context("spawn").Pool(a.workers, initializer=_init_worker) as pool:
                for _ in tqdm(
                    pool.imap_unordered(_prepare_sft, sft_jobs),
                    total=len(sft_jobs),
                    desc="sft",
                    unit="task",
                ):
                    pass
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
            "cpu_seconds_all_processes": round(_cpu_seconds(), 1),
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()),
            "machine": machine(),
            "run_config": {
                k: v
                for k, v in dataclasses.asdict(specs[0]).items()
                if k not in ("task", "method", "seed")
            }
            if specs
            else {},
            "task_params": {t: TASKS[t]().params for t in tasks},
        }
        log_path = out_dir / "invocations.json"
        history = json.loads(log_path.read_text()) if log_path.exists() else []
        log_path.write_text(json.dumps([*history, meta], indent=1))
    print("writing tables and plots ...", flush=True)
    paths = write_report(out_dir, ORDER, banner)
    for name, p in paths.items():
        print(f"{name}: {p}")
    if banner:
        print(banner)
    return paths


if __name__ == "__main__":
    main()
