"""Aggregate per-run JSON files into CSV/JSON/Markdown tables and PNG plots."""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """(mean, 95% CI half-width) with Student's t; half-width NaN for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return float(x.mean()), math.nan
    t = _T975[x.size - 2] if x.size - 1 <= len(_T975) else 1.96
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size))


def load_runs(out_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out_dir / "runs").glob("*/*/seed*.json"))]


def _method_order(methods: set[str], order: Sequence[str]) -> list[str]:
    known = [m for m in dict.fromkeys(order) if m in methods]
    return known + sorted(methods - set(known))


def _fmt(mean: float, half: float) -> str:
    return f"{mean:.3f}" if math.isnan(half) else f"{mean:.3f} ± {half:.3f}"


def summarise(runs: list[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (task, method, metric): mean, CI, seeds and the raw per-seed values."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["spec"]["task"], r["spec"]["method"])].append(r)
    rows = []
    for task in sorted({t for t, _ in groups}):
        for method in _method_order({m for t, m in groups if t == task}, order):
            rs = sorted(groups[(task, method)], key=lambda r: r["spec"]["seed"])
            extra = {
                "mean_train_T": [
                    float(np.mean(r["log"]["temperature"])) for r in rs if r["log"]["temperature"]
                ],
                "step_seconds": [r["median_step_seconds"] for r in rs if r["log"]["temperature"]],
            }
            metrics = {k: [r["final"][k] for r in rs] for k in rs[0]["final"]}
            for name, vals in {**metrics, **extra}.items():
                if not vals:
                    continue
                mean, half = mean_ci(vals)
                rows.append(
                    {
                        "task": task,
                        "method": method,
                        "metric": name,
                        "mean": mean,
                        "ci95": half,
                        "n": len(vals),
                        "seeds": [r["spec"]["seed"] for r in rs],
                        "values": vals,
                    }
                )
    return rows


def versus_best_fixed(runs: list[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Per task, method (neither fixed nor ``sft``) and metric: the best fixed T chosen after
    the fact on the evaluation set (an oracle sweep), and the method minus it, paired by seed
    (95% CI; uncorrected for the number of comparisons)."""
    by: dict[tuple[str, str], dict[int, dict[str, float]]] = defaultdict(dict)
    for r in runs:
        by[(r["spec"]["task"], r["spec"]["method"])][r["spec"]["seed"]] = r["final"]
    out = []
    for task in sorted({t for t, _ in by}):
        fixed = [m for t, m in by if t == task and m.startswith("fixed-")]
        others = [m for t, m in by if t == task and not m.startswith("fixed-") and m != "sft"]
        for method, metric in itertools.product(others if fixed else [], metrics):
            best = max(fixed, key=lambda m: np.mean([v[metric] for v in by[(task, m)].values()]))
            ours, theirs = by[(task, method)], by[(task, best)]
            seeds = sorted(set(ours) & set(theirs))
            mean, half = mean_ci([ours[s][metric] - theirs[s][metric] for s in seeds])
            verdict = (
                "n/a"
                if math.isnan(half)
                else "better"
                if mean - half > 0
                else "worse"
                if mean + half < 0
                else "no significant difference"
            )
            out.append(
                {
                    "task": task,
                    "method": method,
                    "metric": metric,
                    "best_fixed": best,
                    "best_fixed_mean": float(np.mean([theirs[s][metric] for s in seeds])),
                    "method_mean": float(np.mean([ours[s][metric] for s in seeds])),
                    "diff_mean": mean,
                    "diff_ci95": half,
                    "n": len(seeds),
                    "verdict": verdict,
                }
            )
    return out


def markdown(
    rows: list[dict[str, Any]], versus: list[dict[str, Any]], metrics: Sequence[str]
) -> str:
    cols = [*metrics, "mean_train_T"]
    lines = []
    for task in sorted({r["task"] for r in rows}):
        cell = {(r["method"], r["metric"]): r for r in rows if r["task"] == task}
        methods = list(dict.fromkeys(r["method"] for r in rows if r["task"] == task))
        lines += [
            f"### {task}",
            "",
            "| method | seeds | " + " | ".join(cols) + " |",
            "|---" * (len(cols) + 2) + "|",
        ]
        for m in methods:
            n = next(r["n"] for r in rows if r["task"] == task and r["method"] == m)
            vals = [
                _fmt(cell[(m, c)]["mean"], cell[(m, c)]["ci95"]) if (m, c) in cell else "-"
                for c in cols
            ]
            lines.append(f"| {m} | {n} | " + " | ".join(vals) + " |")
        lines.append("")
        vs = [v for v in versus if v["task"] == task and v["method"] == "tampo"]
        if vs:
            lines += [
                "TAMPO minus the best fixed temperature (picked per metric on the "
                "evaluation set, paired by seed):",
                "",
                "| metric | best fixed | best fixed mean | TAMPO mean | TAMPO - best | verdict |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {v['metric']} | {v['best_fixed']} | {v['best_fixed_mean']:.3f} | "
                f"{v['method_mean']:.3f} | {_fmt(v['diff_mean'], v['diff_ci95'])} | "
                f"{'TAMPO ' if v['verdict'] in ('better', 'worse') else ''}{v['verdict']} |"
                for v in vs
            ]
            lines.append("")
        cells = {(v["method"], v["metric"]): v for v in versus if v["task"] == task}
        others = list(dict.fromkeys(v["method"] for v in versus if v["task"] == task))
        if others:
            lines += [
                "Every method minus the best fixed temperature for that metric (paired by "
                "seed, 95% CI; * = CI excludes 0; no correction for multiple comparisons):",
                "",
                "| method | " + " | ".join(metrics) + " |",
                "|---" * (len(metrics) + 1) + "|",
            ]
            for m in others:
                marks = []
                for c in metrics:
                    v = cells[(m, c)]
                    star = "*" if v["verdict"] in ("better", "worse") else ""
                    marks.append(f"{v['diff_mean']:+.3f} ± {v['diff_ci95']:.3f}{star}")
                lines.append(f"| {m} | " + " | ".join(marks) + " |")
            lines.append("")
    return "\n".join(lines)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if x.size < width:
        return x
    return np.convolve(x, np.ones(width) / width, mode="valid")


def _style(method: str) -> dict[str, Any]:
    """Line style per method: fixed T in blues (darker = hotter), TAMPO thick red."""
    import matplotlib

    named = {
        "tampo": ("tab:red", 2.4),
        "linear-0.9-1.5": ("tab:purple", 1.4),
        "uniform": ("tab:gray", 1.4),
        "e3": ("tab:orange", 1.4),
        "sft": ("black", 1.0),
    }
    if method in named:
        color, lw = named[method]
    elif method.startswith("fixed-"):
        t = float(method.removeprefix("fixed-"))
        color, lw = matplotlib.colormaps["Blues"](0.35 + 0.6 * (t - 0.6) / 0.9), 1.4
    else:
        color, lw = None, 1.2
    return {
        "color": color,
        "lw": lw,
        "label": method,
        "ls": "--" if method.startswith("tampo-") else "-",
    }


def _curves_figure(
    by: dict[tuple[str, str], list[dict[str, Any]]],
    tasks: list[str],
    methods_of: dict[str, list[str]],
    path: Path,
) -> None:
    """One row per task: training reward, held-out greedy pass@1, sampling temperature."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tasks), 3, figsize=(16, 4.2 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        for method in methods_of[task]:
            rs = by[(task, method)]
            style = _style(method)
            steps = [c["step"] for c in rs[0]["curve"]]
            acc = np.mean([[c["greedy_pass@1"] for c in r["curve"]] for r in rs], axis=0)
            if method == "sft":
                axes[row, 1].axhline(acc[0], ls=":", color="black", lw=1.0, label="sft (start)")
                continue
            axes[row, 1].plot(steps, acc, **style)
            rew = np.mean([r["log"]["reward"] for r in rs], axis=0)
            axes[row, 0].plot(_smooth(rew, 10), **style)
            temp = np.mean([r["log"]["temperature"] for r in rs], axis=0)
            axes[row, 2].plot(_smooth(temp, 5), **style)
        axes[row, 0].set(
            title=f"{task}: training reward at its own T (10-step mean)", xlabel="step"
        )
        axes[row, 1].set(title=f"{task}: held-out greedy pass@1 (seed mean)", xlabel="step")
        axes[row, 2].set(title=f"{task}: sampling temperature (seed mean)", xlabel="step")
        axes[row, 1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(runs: list[dict[str, Any]], order: Sequence[str], out_dir: Path) -> list[Path]:
    """learning_curves.png (every method but the TAMPO ablations), ablation_curves.png (TAMPO
    and its variants, when present) and tampo_temperature_heatmap.png (seed-mean pi(T) per
    step, sampled T overlaid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["spec"]["task"] for r in runs})
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by[(r["spec"]["task"], r["spec"]["method"])].append(r)
    ordered = {t: _method_order({m for task, m in by if task == t}, order) for t in tasks}
    paths = [out_dir / "learning_curves.png"]
    main = {t: [m for m in ms if not m.startswith("tampo-")] for t, ms in ordered.items()}
    _curves_figure(by, tasks, main, paths[-1])
    variants = {t: [m for m in ms if m.startswith("tampo")] for t, ms in ordered.items()}
    if any(len(ms) > 1 for ms in variants.values()):
        paths.append(out_dir / "ablation_curves.png")
        _curves_figure(by, tasks, variants, paths[-1])

    tampo_tasks = [t for t in tasks if by.get((t, "tampo"))]
    if tampo_tasks:
        fig, axes = plt.subplots(
            len(tampo_tasks), 1, figsize=(11, 3.6 * len(tampo_tasks)), squeeze=False
        )
        for row, task in enumerate(tampo_tasks):
            rs = by[(task, "tampo")]
            temps = rs[0]["temperatures"]
            probs = np.mean([r["log"]["probs"] for r in rs], axis=0).T
            ax = axes[row, 0]
            im = ax.imshow(
                probs,
                aspect="auto",
                origin="lower",
                cmap="viridis",
                extent=(-0.5, probs.shape[1] - 0.5, -0.5, len(temps) - 0.5),
            )
            sampled = np.mean([r["log"]["temperature"] for r in rs], axis=0)
            ax.plot(
                (sampled - temps[0]) / (temps[1] - temps[0]),
                color="white",
                lw=0.8,
                label="sampled T (seed mean)",
            )
            ax.set_yticks(range(len(temps)), [f"{t:.1f}" for t in temps])
            ax.set(
                title=f"{task}: TAMPO meta-policy pi(T) after each step (mean of {len(rs)} seeds)",
                xlabel="step",
                ylabel="T",
            )
            ax.legend(loc="upper right", fontsize=7)
            fig.colorbar(im, ax=ax, label="probability")
        fig.tight_layout()
        paths.append(out_dir / "tampo_temperature_heatmap.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _provenance(out_dir: Path) -> str:
    """Markdown lines naming the commands, machine and run configuration behind the results."""
    log = out_dir / "invocations.json"
    if not log.exists():
        return ""
    calls = json.loads(log.read_text())
    m = calls[-1]["machine"]
    lines = ["Produced by (run from the repository root):", ""]
    lines += [
        f"- `{c['command']}` ({c['runs_done_now']} runs, "
        f"{c['wall_seconds_this_invocation'] / 60:.1f} min, finished {c['finished_utc']} UTC)"
        for c in calls
    ]
    cfg = calls[-1].get("run_config", {})
    shown = {k: v for k, v in cfg.items() if k != "sft"}
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"torch {m['torch']}, {m['platform']}.",
        "",
        f"Run configuration: `{json.dumps(shown)}`.",
        "",
    ]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, order: Sequence[str]) -> dict[str, Path]:
    """Write results.csv, results.json, results.md and the plots; returns their paths."""
    runs = load_runs(out_dir)
    if not runs:
        raise FileNotFoundError(f"no run results under {out_dir / 'runs'}")
    metrics = list(runs[0]["final"])
    rows = summarise(runs, order)
    rank = {m: i for i, m in enumerate(dict.fromkeys(order))}
    versus = sorted(
        versus_best_fixed(runs, metrics), key=lambda v: (v["task"], rank.get(v["method"], 99))
    )
    paths = {
        "csv": out_dir / "results.csv",
        "json": out_dir / "results.json",
        "md": out_dir / "results.md",
    }
    with paths["csv"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "method", "metric", "mean", "ci95", "n", "values"])
        for r in rows:
            w.writerow(
                [
                    r["task"],
                    r["method"],
                    r["metric"],
                    f"{r['mean']:.6f}",
                    f"{r['ci95']:.6f}",
                    r["n"],
                    " ".join(f"{v:.6f}" for v in r["values"]),
                ]
            )
    paths["json"].write_text(json.dumps({"summary": rows, "versus_best_fixed": versus}, indent=1))
    paths["md"].write_text(_provenance(out_dir) + markdown(rows, versus, metrics))
    for p in plot(runs, order, out_dir):
        paths[p.stem] = p
    return paths
