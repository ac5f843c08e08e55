"""GPU benchmark of the multi-temperature log-likelihood kernels (one process, < 5 min).

    PYTHONUNBUFFERED=1 python -m benchmarks.kernel_gpu --out DIR      # one H100 / H200
    python -m benchmarks.kernel_gpu --tiny --out DIR                   # CPU smoke run, seconds

Run from the repository root; ``tampo_core`` must import there (numpy, pydantic). Needs
torch >= 2.3 (tested on 2.11 and 2.13); the K x ``F.linear_cross_entropy`` baseline needs its
chunked form (torch >= 2.13) and is recorded as skipped otherwise. ~2 min on an H200.

1. Correctness: every method and logits dtype against a float64 reference on a small slice of
   the benchmark inputs; a kernel (or fp32 baseline) outside its tolerance aborts the run.
2. Device numbers measured in the same run: HBM bandwidth (device-to-device copy) and bf16
   GEMM rate; the exp rate is the assumed ``--exp-rate`` (recorded as assumed).
3. Timings (CUDA events, warm-up, median of ``--repeats``) and peak extra memory
   (``max_memory_allocated`` minus allocated once inputs exist) per (path, N, K, method); the
   fused logits kernel is swept over chunk sizes (optionally under a CUDA graph). Every row is
   written (CSV + JSON) right after it is measured, failures included, so a timeout keeps data.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.kernel_baselines import (
    LOGITS_BASELINES,
    linear_cross_entropy_available,
    linear_cross_entropy_loop,
)
from benchmarks.kernel_candidates import compiled_chunk_stats_loglik, sdpa_lse_loglik
from tampo_core.loglik import budget
from tampo_core.loglik.hidden import default_sizes, multi_temperature_loglik_from_hidden
from tampo_core.loglik.logits import (
    _chunked_row_stats,
    default_chunk_rows,
    multi_temperature_loglik,
)
from tampo_core.loglik.reference import reference_multi_temperature_loglik
from tampo_core.loglik.tokens import PackedTokens

GRID = tuple(round(0.6 + 0.1 * i, 1) for i in range(10))
TEMPERATURE_SETS = {1: (1.0,), 4: (0.6, 0.9, 1.2, 1.5), 10: GRID}
LOGIT_STD = 3.0
GRAPH_METHOD = "fused_row_loop_cuda_graph"  # the chunk loop alone, captured; no packing/finish
STRATEGY_METHOD = "fused_row_loop"  # the chunk loop alone, eager, per exp-sum strategy
CANDIDATE_TOLERANCE = 1e-5  # a candidate path may replace the default only within this
CANDIDATES = ("sdpa_lse", "compiled_chunks")  # benchmarks/kernel_candidates.py
ACCURATE_SINGLE_T = ("naive_fp32_loop", "gather_logsumexp_loop", "selective_log_softmax_loop")
TOLERANCE = {  # max |error| vs float64 per sequence mean; beyond it the run aborts
    "fused": 2e-5,
    "fused_hidden": 2e-4,
    "naive_fp32_loop": 2e-4,
    "gather_logsumexp_loop": 2e-4,
    "selective_log_softmax_loop": 2e-4,
    "in_dtype_loop": 0.5,  # bf16/fp16 arithmetic: recorded, only gross bugs abort
    "linear_cross_entropy_loop": 0.5,  # divides hidden states by T in bf16
}
FIELDS = [
    "path",
    "method",
    "dtype",
    "n_valid",
    "k",
    "chunk_rows",
    "vocab_block",
    "status",
    "median_ms",
    "min_ms",
    "runs",
    "extra_mib",
    "roofline_ms",
    "x_roofline",
    "speedup_vs_naive",
]


@dataclass(frozen=True)
class Profile:
    vocab: int
    hidden: int
    sizes: tuple[int, ...]
    fused_only_sizes: tuple[int, ...]
    hidden_sizes: tuple[int, ...]
    ks: tuple[int, ...]
    chunk_sweep: tuple[int, ...]
    graph_chunks: tuple[int, ...]
    sdpa_chunks: tuple[int, ...]
    compile_chunks: tuple[int, ...]
    hidden_variants: tuple[tuple[int, int], ...]
    check_rows: int


FULL = Profile(
    vocab=151_936,
    hidden=4096,
    sizes=(4096, 16_384),
    fused_only_sizes=(65_536,),
    hidden_sizes=(4096, 16_384),
    ks=(1, 4, 10),
    chunk_sweep=(16, 32, 64, 128, 256, 512, 1024),
    graph_chunks=(16, 32, 64, 256, 1024),
    sdpa_chunks=(8, 32, 128),
    compile_chunks=(64, 256, 1024),
    hidden_variants=((512, 8192), (1024, 32_768), (2048, 16_384)),
    check_rows=64,
)
TINY = Profile(
    vocab=1000,
    hidden=64,
    sizes=(64, 128),
    fused_only_sizes=(256,),
    hidden_sizes=(64,),
    ks=(1, 4),
    chunk_sweep=(16, 64),
    graph_chunks=(16,),
    sdpa_chunks=(8,),
    compile_chunks=(64,),
    hidden_variants=((32, 128),),
    check_rows=16,
)


@dataclass
class Recorder:
    """Collects rows and rewrites ``kernel_gpu.{csv,json}`` after every row."""

    out: Path
    meta: dict
    rows: list[dict] = field(default_factory=list)

    def add(self, row: dict) -> None:
        full = {name: row.get(name) for name in FIELDS}
        self.rows.append(full)
        shown = {k: v for k, v in full.items() if v is not None}
        print("  " + json.dumps(shown), flush=True)
        self.flush()

    def flush(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "kernel_gpu.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        payload = {**self.meta, "results": self.rows}
        (self.out / "kernel_gpu.json").write_text(json.dumps(payload, indent=2) + "\n")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    """Per-call milliseconds (CUDA events on GPU, perf_counter on CPU) after one warm-up."""
    fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            samples.append(start.elapsed_time(stop))
        else:
            begin = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - begin) * 1e3)
    return samples


def extra_memory_mib(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak allocated bytes during one call minus those allocated before it (CUDA only)."""
    if device.type != "cuda":
        fn()
        return None
    synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del result
    return (peak - base) / 2**20


def measure(fn: Callable[[], object], device: torch.device, repeats: int) -> dict:
    """{'status', 'median_ms', 'min_ms', 'runs', 'extra_mib'}; OOM and errors become statuses."""
    try:
        extra = extra_memory_mib(fn, device)
        samples = time_ms(fn, device, repeats)
        return {
            "status": "ok",
            "median_ms": statistics.median(samples),
            "min_ms": min(samples),
            "runs": len(samples),
            "extra_mib": extra,
        }
    except torch.cuda.OutOfMemoryError:
        return {"status": "OOM"}
    except Exception as err:  # one method's failure must not end the run
        traceback.print_exc()
        return {"status": f"error: {type(err).__name__}: {err}"[:300]}
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def measure_bandwidth(device: torch.device, nbytes: int) -> float:
    """Bytes/s of a device-to-device copy (read + write counted)."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).normal_()
    dst = torch.empty_like(src)
    ms = statistics.median(time_ms(lambda: dst.copy_(src), device, 10))
    return 2 * nbytes / (ms / 1e3)


def measure_gemm_rate(device: torch.device, size: int) -> float:
    """FLOP/s of a square bf16 (fp32 on CPU) matmul."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    ms = statistics.median(time_ms(lambda: a @ b, device, 10))
    return 2 * size**3 / (ms / 1e3)


def random_logits(n: int, vocab: int, device: torch.device, seed: int) -> torch.Tensor:
    """bf16 [1, n, vocab] ~ N(0, LOGIT_STD^2), generated a slab at a time in bf16."""
    gen = torch.Generator(device=device).manual_seed(seed)
    logits = torch.empty(1, n, vocab, dtype=torch.bfloat16, device=device)
    for start in range(0, n, 4096):
        slab = logits[0, start : start + 4096]
        slab.copy_(torch.randn(slab.shape, generator=gen, device=device).mul_(LOGIT_STD))
    return logits


def logits_methods(profile: Profile) -> dict[str, Callable[..., torch.Tensor]]:
    """Name -> fn(logits, tokens, mask, temps) for the correctness check of the logits path."""
    methods: dict[str, Callable[..., torch.Tensor]] = dict(LOGITS_BASELINES)
    methods["fused"] = lambda z, o, m, t: multi_temperature_loglik(z, o, t, m).loglik
    for rows in profile.chunk_sweep:
        methods[f"fused_c{rows}"] = lambda z, o, m, t, r=rows: (
            multi_temperature_loglik(z, o, t, m, chunk_size=r).loglik
        )
    return methods


def candidate_methods(profile: Profile, compile_: bool) -> dict[str, Callable[..., torch.Tensor]]:
    """Name -> fn(logits, tokens, mask, temps) for the candidate paths' correctness check."""
    methods: dict[str, Callable[..., torch.Tensor]] = {
        "sdpa_lse": lambda z, o, m, t: (
            sdpa_lse_loglik(z, o, t, m, chunk_size=min(profile.sdpa_chunks)).loglik
        )
    }
    if compile_:
        methods["compiled_chunks"] = lambda z, o, m, t: (
            compiled_chunk_stats_loglik(z, o, t, m, chunk_size=min(profile.compile_chunks)).loglik
        )
    return methods


def check_correctness(
    profile: Profile, device: torch.device, logits: torch.Tensor, compile_: bool = False
) -> dict:
    """Max |err| vs float64 for every method x dtype on a slice; raises SystemExit on failure.

    The candidate paths are recorded (``candidates``: error and whether it is within
    ``CANDIDATE_TOLERANCE``) without ending the run: their accuracy is one of the questions."""
    rows = profile.check_rows
    temps = GRID
    gen = torch.Generator(device=device).manual_seed(1)
    tokens = torch.randint(0, profile.vocab, (1, rows), device=device, generator=gen)
    mask = torch.ones(1, rows, dtype=torch.bool, device=device)
    errors: dict[str, float] = {}
    candidates: dict[str, dict] = {}
    failures = []
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        z = logits[:, :rows].to(dtype)
        want = reference_multi_temperature_loglik(z, tokens, temps, mask)
        for name, fn in candidate_methods(profile, compile_).items():
            key = f"{name}/{str(dtype).removeprefix('torch.')}"
            try:
                err = (fn(z, tokens, mask, temps).double() - want).abs().max().item()
                candidates[key] = {"max_abs_err": err, "exact": err <= CANDIDATE_TOLERANCE}
            except Exception as error:  # a candidate's failure is a result, not the end
                traceback.print_exc()
                candidates[key] = {"error": f"{type(error).__name__}: {error}"[:300]}
            print(f"  candidate {key:38s} {candidates[key]}", flush=True)
        for name, fn in logits_methods(profile).items():
            err = (fn(z, tokens, mask, temps).double() - want).abs().max().item()
            errors[f"{name}/{str(dtype).removeprefix('torch.')}"] = err
            limit = TOLERANCE["fused" if name.startswith("fused") else name]
            if not err <= limit:
                failures.append(f"{name} {dtype}: {err:.3g} > {limit}")
    hidden, weight = random_hidden(rows, profile, device, seed=2)
    want = reference_multi_temperature_loglik(
        (hidden.double() @ weight.double().T), tokens, temps, mask
    )
    hidden_methods = {
        "fused_hidden": lambda: (
            multi_temperature_loglik_from_hidden(hidden, weight, tokens, temps, mask).loglik
        )
    }
    if linear_cross_entropy_available():
        hidden_methods["linear_cross_entropy_loop"] = lambda: linear_cross_entropy_loop(
            hidden, weight, tokens, mask, temps
        )
    for name, fn in hidden_methods.items():
        err = (fn().double() - want).abs().max().item()
        errors[f"{name}/bfloat16"] = err
        if not err <= TOLERANCE[name]:
            failures.append(f"{name}: {err:.3g} > {TOLERANCE[name]}")
    for key, err in errors.items():
        print(f"  correctness {key:40s} max|err| vs fp64 = {err:.2e}", flush=True)
    return {"max_abs_err": errors, "failures": failures, "candidates": candidates}


def random_hidden(
    n: int, profile: Profile, device: torch.device, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """bf16 hidden [1, n, H] ~ N(0, 1) and LM head [V, H] scaled to logits of std ~3."""
    gen = torch.Generator(device=device).manual_seed(seed)
    hidden = torch.randn(1, n, profile.hidden, generator=gen, device=device).bfloat16()
    weight = torch.empty(profile.vocab, profile.hidden, dtype=torch.bfloat16, device=device)
    for start in range(0, profile.vocab, 8192):
        block = weight[start : start + 8192]
        noise = torch.randn(block.shape, generator=gen, device=device)
        block.copy_(noise.mul_(LOGIT_STD / math.sqrt(profile.hidden)))
    return hidden, weight


def row_loop(
    logits: torch.Tensor, tokens: torch.Tensor, temps: tuple[float, ...], rows: int, power: bool
) -> Callable[[], object]:
    """The fused kernel's chunk loop alone (no packing, no final mean) on all-valid inputs.

    Host-sync free, so it can be captured in a CUDA graph; ``power`` picks the exp-sum
    strategy (the kernel uses power sums off CPU, clamped exps on CPU).
    """
    n = tokens.shape[1]
    packed = PackedTokens(
        batch=torch.zeros(n, dtype=torch.long, device=logits.device),
        pos=torch.arange(n, device=logits.device),
        targets=tokens[0],
        counts=torch.full((1,), n, device=logits.device),
    )
    rows = min(rows, n)
    betas = [1.0 / t for t in temps]
    return lambda: _chunked_row_stats(logits, packed, betas, rows, power)


def graph_replay(
    logits: torch.Tensor, tokens: torch.Tensor, temps: tuple[float, ...], rows: int
) -> Callable[[], object]:
    """The kernel's chunk loop (power sums) captured once in a CUDA graph; returns replay."""
    loop = row_loop(logits, tokens, temps, rows, power=True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        loop()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loop()
    return graph.replay


def roofline_ms(n: int, k: int, vocab: int, device_info: dict, hidden: int | None) -> float:
    """One bf16 read of [n, V] logits at HBM speed (or, from hidden states, the GEMM at the
    measured bf16 rate) plus K n V exps at the exp rate."""
    exp_s = k * n * vocab / device_info["exp_rate_per_s"]
    if hidden is None:
        return (2 * n * vocab / device_info["hbm_bytes_per_s"] + exp_s) * 1e3
    return (2 * n * hidden * vocab / device_info["gemm_flop_per_s"] + exp_s) * 1e3


def finish_row(row: dict, roofline: float, naive_ms: float | None) -> dict:
    if row.get("status") == "ok":
        row["roofline_ms"] = roofline
        row["x_roofline"] = row["median_ms"] / roofline
        if naive_ms:
            row["speedup_vs_naive"] = naive_ms / row["median_ms"]
    return row


Variant = tuple[dict, Callable[[], object] | None]


def logits_variants(
    profile: Profile,
    device: torch.device,
    args: argparse.Namespace,
    z: torch.Tensor,
    tokens: torch.Tensor,
    temps: tuple[float, ...],
) -> list[Variant]:
    """(row fields, thunk) per method at one (N, K); thunk None means 'record as skipped'."""
    n = z.shape[1]
    mask = torch.ones(1, n, dtype=torch.bool, device=device)
    variants: list[Variant] = []
    for name, fn in LOGITS_BASELINES.items():
        if n in profile.fused_only_sizes:
            variants.append(({"method": name, "status": "skipped: fused-only size"}, None))
        else:
            variants.append(({"method": name}, lambda f=fn: f(z, tokens, mask, temps)))
    default = default_chunk_rows(device, profile.vocab, z.dtype)
    variants.append(
        (
            {"method": "fused_default", "chunk_rows": default},
            lambda: multi_temperature_loglik(z, tokens, temps, mask),
        )
    )
    for rows in profile.chunk_sweep:
        variants.append(
            (
                {"method": "fused", "chunk_rows": rows},
                lambda r=rows: multi_temperature_loglik(z, tokens, temps, mask, chunk_size=r),
            )
        )
    for rows in profile.sdpa_chunks:
        variants.append(
            (
                {"method": "sdpa_lse", "chunk_rows": rows},
                lambda r=rows: sdpa_lse_loglik(z, tokens, temps, mask, chunk_size=r),
            )
        )
    for rows in profile.compile_chunks:
        if not args.compile:
            variants.append(
                ({"method": "compiled_chunks", "status": "skipped: no --compile"}, None)
            )
            break
        variants.append(
            (
                {"method": "compiled_chunks", "chunk_rows": rows},
                lambda r=rows: compiled_chunk_stats_loglik(z, tokens, temps, mask, chunk_size=r),
            )
        )
    if len(temps) == max(profile.ks) and n in profile.sizes:
        for power in (True, False):
            variants.append(
                (
                    {
                        "method": f"{STRATEGY_METHOD}_{'power' if power else 'clamped'}",
                        "chunk_rows": default,
                    },
                    row_loop(z, tokens, temps, default, power),
                )
            )
        for rows in profile.graph_chunks:
            variants.append(
                (
                    {"method": GRAPH_METHOD, "chunk_rows": rows},
                    lambda r=rows: measure_graph(z, tokens, temps, r, device, args),
                )
            )
    return variants


def run_logits_path(
    profile: Profile,
    device: torch.device,
    logits: torch.Tensor,
    args: argparse.Namespace,
    recorder: Recorder,
    device_info: dict,
    deadline: float,
) -> None:
    gen = torch.Generator(device=device).manual_seed(3)
    for n in profile.sizes + profile.fused_only_sizes:
        z = logits[:, :n]
        tokens = torch.randint(0, profile.vocab, (1, n), device=device, generator=gen)
        for k in profile.ks:
            roof = roofline_ms(n, k, profile.vocab, device_info, None)
            base = {"path": "logits", "dtype": "bfloat16", "n_valid": n, "k": k}
            naive_ms = None
            for info, fn in logits_variants(profile, device, args, z, tokens, TEMPERATURE_SETS[k]):
                row = {**base, **info}
                if fn is None:
                    recorder.add(row)
                    continue
                if time.monotonic() > deadline:
                    recorder.add({**row, "status": "skipped: time budget"})
                    continue
                row.update(
                    fn() if info["method"] == GRAPH_METHOD else measure(fn, device, args.repeats)
                )
                if info["method"] == "naive_fp32_loop" and row["status"] == "ok":
                    naive_ms = row["median_ms"]
                recorder.add(finish_row(row, roof, naive_ms))


def measure_graph(
    z: torch.Tensor,
    tokens: torch.Tensor,
    temps: tuple[float, ...],
    rows: int,
    device: torch.device,
    args: argparse.Namespace,
) -> dict:
    if device.type != "cuda":
        return {"status": "skipped: CUDA graphs need a CUDA device"}
    if z.shape[1] % rows:
        return {"status": "skipped: N not a multiple of the chunk"}
    try:
        replay = graph_replay(z, tokens, temps, rows)
    except Exception as err:
        traceback.print_exc()
        return {"status": f"error: capture: {type(err).__name__}: {err}"[:300]}
    row = measure(replay, device, args.repeats)
    if row["status"] == "ok":
        row["extra_mib"] = None  # the graph's pool is allocated at capture time
    return row


def hidden_variants(
    profile: Profile,
    device: torch.device,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    tokens: torch.Tensor,
    temps: tuple[float, ...],
) -> list[Variant]:
    """(row fields, thunk) per hidden-path method at one (N, K)."""
    mask = torch.ones(tokens.shape, dtype=torch.bool, device=device)
    dtypes = (hidden.dtype, weight.dtype)
    rows0, block0 = default_sizes(device, profile.vocab, profile.hidden, dtypes, None)
    variants: list[Variant] = [
        (
            {
                "method": "gemm_then_fused",
                "chunk_rows": default_chunk_rows(device, profile.vocab, weight.dtype),
            },
            lambda: multi_temperature_loglik(
                (hidden[0] @ weight.T).unsqueeze(0), tokens, temps, mask
            ),
        ),
        (
            {"method": "fused_hidden_default", "chunk_rows": rows0, "vocab_block": block0},
            lambda: multi_temperature_loglik_from_hidden(hidden, weight, tokens, temps, mask),
        ),
    ]
    for rows, block in profile.hidden_variants:
        variants.append(
            (
                {"method": "fused_hidden", "chunk_rows": rows, "vocab_block": block},
                lambda r=rows, b=block: multi_temperature_loglik_from_hidden(
                    hidden, weight, tokens, temps, mask, chunk_size=r, vocab_block=b
                ),
            )
        )
    if linear_cross_entropy_available():
        variants.append(
            (
                {"method": "linear_cross_entropy_loop"},
                lambda: linear_cross_entropy_loop(hidden, weight, tokens, mask, temps),
            )
        )
    else:
        reason = f"skipped: no chunked F.linear_cross_entropy in torch {torch.__version__}"
        variants.append(({"method": "linear_cross_entropy_loop", "status": reason}, None))
    return variants


def run_hidden_path(
    profile: Profile,
    device: torch.device,
    args: argparse.Namespace,
    recorder: Recorder,
    device_info: dict,
    deadline: float,
) -> None:
    gen = torch.Generator(device=device).manual_seed(4)
    hidden_all, weight = random_hidden(max(profile.hidden_sizes), profile, device, seed=5)
    for n in profile.hidden_sizes:
        hidden = hidden_all[:, :n]
        tokens = torch.randint(0, profile.vocab, (1, n), device=device, generator=gen)
        for k in profile.ks:
            temps = TEMPERATURE_SETS[k]
            roof = roofline_ms(n, k, profile.vocab, device_info, profile.hidden)
            base = {"path": "hidden", "dtype": "bfloat16", "n_valid": n, "k": k}
            for info, fn in hidden_variants(profile, device, hidden, weight, tokens, temps):
                row = {**base, **info}
                if fn is None:
                    recorder.add(row)
                elif time.monotonic() > deadline:
                    recorder.add({**row, "status": "skipped: time budget"})
                else:
                    row.update(measure(fn, device, args.repeats))
                    recorder.add(finish_row(row, roof, None))


def summarise(rows: list[dict], k: int, n: int) -> dict:
    """Goals at (K, N): vs naive, vs the best accurate single-T loop, memory, roofline."""
    at = [r for r in rows if r["path"] == "logits" and r["k"] == k and r["n_valid"] == n]
    ok = [r for r in at if r["status"] == "ok"]
    fused = [r for r in ok if r["method"] in ("fused", "fused_default")]
    default = next((r for r in ok if r["method"] == "fused_default"), None)
    if default is None:
        return {"available": False}
    best = min(fused, key=lambda r: r["median_ms"])
    within = [
        r
        for r in fused
        if r["extra_mib"] is not None and r["extra_mib"] * 2**20 <= budget.CHUNK_BUDGET_BYTES * 1.05
    ]
    naive = next((r for r in ok if r["method"] == "naive_fp32_loop"), None)
    singles = [r for r in ok if r["method"] in ACCURATE_SINGLE_T]
    best_single = min(singles, key=lambda r: r["median_ms"]) if singles else None
    summary: dict = {
        "available": True,
        "k": k,
        "n_valid": n,
        "fused_default": {x: default[x] for x in ("chunk_rows", "median_ms", "extra_mib")},
        "fused_best": {x: best[x] for x in ("chunk_rows", "median_ms", "extra_mib")},
        "fused_best_within_budget": None
        if not within
        else {x: min(within, key=lambda r: r["median_ms"])[x] for x in ("chunk_rows", "median_ms")},
    }
    if naive:
        summary["speedup_vs_naive"] = {
            "value": naive["median_ms"] / default["median_ms"],
            "goal": 3,
        }
        if naive["extra_mib"] and default["extra_mib"] is not None:
            summary["memory_fraction_of_naive"] = {
                "value": default["extra_mib"] / naive["extra_mib"],
                "goal": 1 / 50,
            }
    in_dtype = next((r for r in ok if r["method"] == "in_dtype_loop"), None)
    if in_dtype:
        summary["speedup_vs_in_dtype_loop_inaccurate"] = (
            in_dtype["median_ms"] / default["median_ms"]
        )
    if best_single:
        summary["speedup_vs_best_single_t_x_k"] = {
            "baseline": best_single["method"],
            "value": best_single["median_ms"] / default["median_ms"],
            "goal": 1.5,
        }
    summary["x_roofline"] = {"value": default["x_roofline"], "goal": 10}
    summary["candidates"] = {}
    for name in CANDIDATES:
        tried = [r for r in ok if r["method"] == name]
        if tried:
            fastest = min(tried, key=lambda r: r["median_ms"])
            summary["candidates"][name] = {
                "chunk_rows": fastest["chunk_rows"],
                "median_ms": fastest["median_ms"],
                "extra_mib": fastest["extra_mib"],
                "speedup_vs_fused_default": default["median_ms"] / fastest["median_ms"],
                "x_roofline": fastest["x_roofline"],
            }
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (CPU smoke run)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--time-budget-s", type=float, default=240.0)
    parser.add_argument("--exp-rate", type=float, default=4e12, help="assumed exp/s")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the torch.compile candidate (Triton on CUDA, C++ on CPU; opt-in)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.time_budget_s
    profile = TINY if args.tiny else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("no CUDA device: run with --tiny for the CPU smoke run")
    meta: dict = {
        "command": " ".join(
            [sys.executable, "-m", "benchmarks.kernel_gpu", *(argv or sys.argv[1:])]
        ),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "python": platform.python_version(),
        "profile": "tiny" if args.tiny else "full",
        "logits": f"bfloat16 N(0, {LOGIT_STD}^2); temperatures K=1 {TEMPERATURE_SETS[1]}, "
        f"K=4 {TEMPERATURE_SETS[4]}, K=10 {GRID}",
        "chunk_budget_bytes": budget.CHUNK_BUDGET_BYTES,
    }
    print(f"device {meta['device']}, torch {torch.__version__}", flush=True)
    logits = random_logits(max(profile.sizes + profile.fused_only_sizes), profile.vocab, device, 0)
    recorder = Recorder(args.out, meta)
    print("correctness (float64 reference on a slice)", flush=True)
    meta["correctness"] = check_correctness(profile, device, logits, args.compile)
    recorder.flush()
    if meta["correctness"]["failures"]:
        raise SystemExit(f"correctness failed: {meta['correctness']['failures']}")
    meta["device_rates"] = {
        "hbm_bytes_per_s": measure_bandwidth(device, 2**30 if device.type == "cuda" else 2**24),
        "gemm_flop_per_s": measure_gemm_rate(device, 8192 if device.type == "cuda" else 256),
        "exp_rate_per_s": args.exp_rate,
        "exp_rate_source": "assumed (--exp-rate), not measured",
    }
    print(f"device rates {meta['device_rates']}", flush=True)
    run_logits_path(profile, device, logits, args, recorder, meta["device_rates"], deadline)
    del logits
    if device.type == "cuda":
        torch.cuda.empty_cache()
    run_hidden_path(profile, device, args, recorder, meta["device_rates"], deadline)
    goal_k, goal_n = max(profile.ks), profile.sizes[-1]
    meta["goals"] = summarise(recorder.rows, goal_k, goal_n)
    meta["elapsed_s"] = time.monotonic() - started
    recorder.flush()
    print(json.dumps(meta["goals"], indent=2), flush=True)
    print(f"done in {meta['elapsed_s']:.1f} s; wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
