"""CPU benchmark of the fused multi-temperature log-likelihood kernel against single-T loops.

    python -m benchmarks.kernel_cpu                 # V = 151,936, 512 tokens, K = 10 (~4 min)
    python -m benchmarks.kernel_cpu --vocab 4096 --tokens 64 --repeats 3   # smoke run

Checks every method against a float64 reference first, then times all methods interleaved in
one process (median of ``--repeats`` runs after a warm-up, fixed thread count), and measures
each method's peak extra memory in a fresh subprocess (peak RSS during one call minus RSS
once the inputs exist). Writes ``kernel_cpu.{csv,json,png}`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.kernel_baselines import naive_fp32_loop, selective_log_softmax_loop
from tampo_core.loglik.logits import default_chunk_rows, multi_temperature_loglik
from tampo_core.loglik.memory_probe import TensorMemoryProbe
from tampo_core.loglik.reference import reference_multi_temperature_loglik

RESULTS = Path(__file__).resolve().parent / "results"
TEMPERATURES = tuple(round(0.6 + 0.1 * i, 1) for i in range(10))
SEQUENCES = 4
LOGIT_STD = 3.0
CHUNK_SWEEP = (1, 2, 4, 8)
GOALS = {"speedup_vs_naive": 5.0, "speedup_vs_single_t": 2.0, "fused_over_floor": 2.5}


@dataclass(frozen=True)
class Inputs:
    """bf16 logits [B, L, V], int64 tokens [B, L], all-true mask [B, L], K temperatures."""

    logits: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    temps: tuple[float, ...]


def make_inputs(vocab: int, tokens: int, seed: int = 0) -> Inputs:
    """Gaussian logits (std 3) written to bf16 a few rows at a time (no fp32 [N, V] copy)."""
    if tokens % SEQUENCES:
        raise ValueError(f"--tokens: expected a multiple of {SEQUENCES}, got {tokens}")
    length = tokens // SEQUENCES
    gen = torch.Generator().manual_seed(seed)
    logits = torch.empty(SEQUENCES, length, vocab, dtype=torch.bfloat16)
    for b in range(SEQUENCES):
        for start in range(0, length, 4):
            rows = logits[b, start : start + 4]
            rows.copy_(torch.randn(rows.shape, generator=gen).mul_(LOGIT_STD))
    ids = torch.randint(0, vocab, (SEQUENCES, length), generator=gen)
    mask = torch.ones(SEQUENCES, length, dtype=torch.bool)
    return Inputs(logits, ids, mask, TEMPERATURES)


def exp_floor(inputs: Inputs, rows: int) -> None:
    """K passes of a bare ``exp`` over N * V fp32 values, in the fused kernel's chunk shape.

    ``torch.exp(src, out=dst)`` on a preallocated [rows, V] chunk of values in [-80, 0]
    (the fast-path range), repeated ``K * N / rows`` times: no allocation, no other op.
    """
    vocab = inputs.logits.shape[-1]
    n = inputs.mask.numel()
    src = torch.empty(rows, vocab).uniform_(-80.0, 0.0, generator=torch.Generator().manual_seed(1))
    dst = torch.empty_like(src)
    for _ in range(len(inputs.temps) * math.ceil(n / rows)):
        torch.exp(src, out=dst)


def method_table(vocab: int) -> dict[str, Callable[[Inputs], object]]:
    """Name -> callable; 'fused' is the kernel's default chunk, 'fused_cR' forces R rows."""
    default_rows = default_chunk_rows(torch.device("cpu"), vocab, torch.bfloat16)
    table: dict[str, Callable[[Inputs], object]] = {
        "naive_fp32_loop": lambda x: naive_fp32_loop(x.logits, x.tokens, x.mask, x.temps),
        "selective_log_softmax_x_K": lambda x: selective_log_softmax_loop(
            x.logits, x.tokens, x.mask, x.temps
        ),
        "fused": lambda x: multi_temperature_loglik(x.logits, x.tokens, x.temps, x.mask).loglik,
        "exp_floor": lambda x: exp_floor(x, default_rows),
    }
    for rows in CHUNK_SWEEP:
        table[f"fused_c{rows}"] = lambda x, r=rows: (
            multi_temperature_loglik(x.logits, x.tokens, x.temps, x.mask, chunk_size=r).loglik
        )
    return table


def float64_reference(inputs: Inputs) -> torch.Tensor:
    """float64 [B, K], one sequence at a time to bound the float64 temporaries."""
    return torch.cat(
        [
            reference_multi_temperature_loglik(
                inputs.logits[b : b + 1], inputs.tokens[b : b + 1], inputs.temps
            )
            for b in range(inputs.logits.shape[0])
        ]
    )


def check_correctness(inputs: Inputs, methods: dict[str, Callable[[Inputs], object]]) -> dict:
    """Max |error| vs float64 of every method that returns log-likelihoods; abort on mismatch."""
    want = float64_reference(inputs)
    errors = {}
    for name, fn in methods.items():
        if name == "exp_floor":
            continue
        got = fn(inputs)
        assert isinstance(got, torch.Tensor)
        err = (got.double() - want).abs().max().item()
        errors[name] = err
        limit = 1e-5 if name.startswith("fused") else 1e-4
        if not err <= limit:
            raise SystemExit(f"correctness: {name} max |err| {err:.3g} > {limit}; aborting")
        print(f"  correctness {name:28s} max|err| vs fp64 = {err:.2e}", flush=True)
    return errors


def time_methods(
    inputs: Inputs, methods: dict[str, Callable[[Inputs], object]], repeats: int
) -> dict[str, list[float]]:
    """Seconds per call for every method, interleaved round by round after one warm-up each."""
    for fn in methods.values():
        fn(inputs)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_index in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn(inputs)
            times[name].append(time.perf_counter() - start)
        summary = ", ".join(f"{n}={t[-1]:.3f}s" for n, t in times.items())
        print(f"  round {round_index + 1}/{repeats}: {summary}", flush=True)
    return times


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def peak_tensor_mib(inputs: Inputs, fn: Callable[[Inputs], object]) -> float:
    """Most MiB of tensors allocated by ``fn`` alive at once (op-level probe, see memory_probe)."""
    probe = TensorMemoryProbe([inputs.logits, inputs.tokens, inputs.mask])
    with probe:
        fn(inputs)
    return probe.peak_live / 2**20


def child_extra_memory(method: str, args: argparse.Namespace) -> None:
    """Subprocess body: print the peak RSS growth (MiB) of one call of ``method``.

    Linux: the peak (VmHWM) is reset to the current RSS by writing 5 to /proc/self/clear_refs
    once the inputs exist, so the import and input-generation peaks do not hide the method's.
    Elsewhere: ``ru_maxrss`` growth (a lower bound). A call on tiny inputs first pages in the
    code and one-off state, which would otherwise count as a few MiB for every method.
    """
    torch.set_num_threads(args.threads)
    fn = method_table(args.vocab)[method]
    fn(make_inputs(min(args.vocab, 64), 2 * SEQUENCES, seed=1))
    inputs = make_inputs(args.vocab, args.tokens)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        before, source = _proc_status_kib("VmRSS"), "VmHWM"
    except OSError:
        before, source = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
    fn(inputs)
    if source == "VmHWM":
        after = _proc_status_kib("VmHWM")
    else:
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"extra_mib": (after - before) / 1024, "source": source}))


def measure_extra_memory(method: str, args: argparse.Namespace) -> tuple[float, str]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.kernel_cpu",
        "--child",
        method,
        "--vocab",
        str(args.vocab),
        "--tokens",
        str(args.tokens),
        "--threads",
        str(args.threads),
    ]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["extra_mib"]), str(result["source"])


def machine_description(threads: int) -> dict:
    model = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "torch_threads": threads,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["method"] for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    medians = [r["median_s"] for r in rows]
    low = [r["median_s"] - r["min_s"] for r in rows]
    high = [r["max_s"] - r["median_s"] for r in rows]
    ax_t.barh(names, medians, xerr=[low, high], color="tab:blue")
    ax_t.set_xscale("log")
    ax_t.set_xlabel("seconds per call (median, min-max bars)")
    height = 0.4
    positions = range(len(rows))
    rss = [max(r["extra_mib"], 0.01) for r in rows]
    tensors = [max(r["peak_tensor_mib"], 0.01) for r in rows]
    ax_m.barh([p - height / 2 for p in positions], rss, height, label="peak RSS growth")
    ax_m.barh([p + height / 2 for p in positions], tensors, height, label="peak live tensors")
    ax_m.set_yticks(list(positions), names)
    ax_m.set_xscale("log")
    ax_m.set_xlabel("peak extra memory, MiB (floored at 0.01)")
    ax_m.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--tokens", type=int, default=512, help="valid tokens (4 sequences)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_extra_memory(args.child, args)
        return
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    inputs = make_inputs(args.vocab, args.tokens)
    methods = method_table(args.vocab)
    k, n, vocab = len(inputs.temps), inputs.mask.numel(), args.vocab
    print(f"V={vocab} N={n} K={k} threads={args.threads} load={load_before}", flush=True)
    errors = check_correctness(inputs, methods)
    times = time_methods(inputs, methods, args.repeats)
    memory, memory_source, tensor_memory = {}, "", {}
    for name, fn in methods.items():
        memory[name], memory_source = measure_extra_memory(name, args)
        tensor_memory[name] = peak_tensor_mib(inputs, fn)
        print(
            f"  memory {name:28s} RSS +{memory[name]:.1f} MiB, "
            f"tensors {tensor_memory[name]:.1f} MiB",
            flush=True,
        )
    load_after = os.getloadavg()
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        rows.append(
            {
                "method": name,
                "median_s": median,
                "min_s": min(samples),
                "max_s": max(samples),
                "runs": len(samples),
                "ns_per_token_vocab_temperature": median / (n * vocab * k) * 1e9,
                "extra_mib": memory[name],
                "peak_tensor_mib": tensor_memory[name],
                "max_abs_err_vs_fp64": errors.get(name),
            }
        )
    med = {r["method"]: r["median_s"] for r in rows}
    achieved = {
        "speedup_vs_naive": med["naive_fp32_loop"] / med["fused"],
        "speedup_vs_single_t": med["selective_log_softmax_x_K"] / med["fused"],
        "fused_over_floor": med["fused"] / med["exp_floor"],
    }
    goals = {
        name: {
            "goal": goal,
            "value": achieved[name],
            "met": achieved[name] <= goal if name == "fused_over_floor" else achieved[name] >= goal,
        }
        for name, goal in GOALS.items()
    }
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "benchmarks.kernel_cpu"])
    command += " " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    report = {
        "command": command.strip(),
        "config": {
            "vocab": vocab,
            "valid_tokens": n,
            "sequences": SEQUENCES,
            "temperatures": list(inputs.temps),
            "logits": f"bfloat16, N(0, {LOGIT_STD}^2)",
            "repeats": args.repeats,
            "default_cpu_chunk_rows": default_chunk_rows(
                torch.device("cpu"), vocab, torch.bfloat16
            ),
        },
        "machine": machine_description(args.threads),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "memory_method": f"extra_mib: peak RSS growth over one call in a fresh subprocess "
        f"({memory_source}); peak_tensor_mib: most bytes of tensors allocated by the call alive "
        "at once (TorchDispatchMode probe, tampo_core/loglik/memory_probe.py)",
        "results": rows,
        "goals": goals,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "kernel_cpu.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "kernel_cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    title = f"CPU, V={vocab}, N={n}, K={k}, {args.threads} thread(s), bf16 logits"
    write_plot(rows, args.out / "kernel_cpu.png", title)
    for row in rows:
        print(
            f"{row['method']:28s} {row['median_s']:8.3f} s  "
            f"{row['ns_per_token_vocab_temperature']:6.3f} ns/(tok*V*K)  "
            f"RSS +{row['extra_mib']:.1f} MiB  tensors {row['peak_tensor_mib']:.1f} MiB"
        )
    for name, goal in goals.items():
        status = "met" if goal["met"] else "MISSED"
        print(f"goal {name}: {goal['value']:.2f} (goal {goal['goal']}) {status}")
    print(f"load average before {load_before}, after {load_after}")


if __name__ == "__main__":
    main()
