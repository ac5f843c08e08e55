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

from benchmarks.diagnostics import plot_diagnostics
from benchmarks.option_methods import OPTION_METHODS

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


MIN_VERDICT_SEEDS = 5
ZERO_WIDTH = 1e-12  # CI half-widths at or below this are rounding noise of identical values
SETTING_ORDER = ("greedy", "T0.6", "T1.0", "own")


def split_metric(key: str) -> tuple[str, str]:
    """``"pass@4/T0.6"`` -> ``("pass@4", "T0.6")``."""
    metric, _, setting = key.partition("/")
    return metric, setting


def _setting_rank(setting: str) -> tuple[int, str]:
    return (SETTING_ORDER.index(setting) if setting in SETTING_ORDER else 2, setting)


def metric_keys(runs: list[dict[str, Any]]) -> list[str]:
    """Every ``<metric>/<setting>`` key in the runs, grouped by setting (greedy, T grid, own)."""
    keys = {k for r in runs for k in r["final"]}

    def rank(k: str) -> tuple[tuple[int, str], int, str]:
        metric, setting = split_metric(k)
        return _setting_rank(setting), metric == "truncation", metric

    return sorted(keys, key=rank)


def paired_verdict(diffs: Sequence[float]) -> tuple[float, float, str]:
    """(mean, 95% CI half-width, verdict) of paired per-seed differences (method - reference).

    Fewer than :data:`MIN_VERDICT_SEEDS` pairs: ``"n/a (N seeds)"``. A CI that excludes 0 is
    ``"better"`` / ``"worse"``; a zero-width CI (identical differences, half-width <=
    :data:`ZERO_WIDTH`) is never significant.
    """
    mean, half = mean_ci(diffs) if len(diffs) else (math.nan, math.nan)
    if len(diffs) < MIN_VERDICT_SEEDS:
        return mean, half, f"n/a ({len(diffs)} seeds)"
    if not half > ZERO_WIDTH:
        return mean, half, "no significant difference (zero-width CI)"
    if mean - half > 0:
        return mean, half, "better"
    if mean + half < 0:
        return mean, half, "worse"
    return mean, half, "no significant difference"


def summarise(runs: list[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (task, method, metric): mean, CI, seeds and the raw per-seed values;
    ``own_T`` is the mean sampled T of the last 10% of steps, ``mean_train_T`` of all."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["spec"]["task"], r["spec"]["method"])].append(r)
    rows = []
    for task in sorted({t for t, _ in groups}):
        for method in _method_order({m for t, m in groups if t == task}, order):
            rs = sorted(groups[(task, method)], key=lambda r: r["spec"]["seed"])
            trained = [r for r in rs if r["log"]["temperature"]]
            extra = {
                "own_T": [r["own_T"] for r in trained],
                "mean_train_T": [float(np.mean(r["log"]["temperature"])) for r in trained],
                "step_seconds": [r["median_step_seconds"] for r in trained],
            }
            metrics = {k: [r["final"][k] for r in rs if k in r["final"]] for k in metric_keys(rs)}
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


def finals_by_run(runs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[int, dict[str, float]]]:
    """(task, method) -> seed -> final metrics: the pairing key of every comparison."""
    by: dict[tuple[str, str], dict[int, dict[str, float]]] = defaultdict(dict)
    for r in runs:
        by[(r["spec"]["task"], r["spec"]["method"])][r["spec"]["seed"]] = r["final"]
    return by


def versus_best_fixed(runs: list[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Per task, method (neither fixed nor ``sft``) and metric (each evaluation setting on its
    own): the best fixed T chosen after the fact on the evaluation set (an oracle sweep), and
    the method minus it, paired by seed, with :func:`paired_verdict` (uncorrected for the
    number of comparisons). Truncation rates are not compared."""
    by = finals_by_run(runs)
    compared = [m for m in metrics if split_metric(m)[0] != "truncation"]
    out = []
    for task in sorted({t for t, _ in by}):
        fixed = [m for t, m in by if t == task and m.startswith("fixed-")]
        others = [m for t, m in by if t == task and not m.startswith("fixed-") and m != "sft"]
        for method, metric in itertools.product(others if fixed else [], compared):
            have = [m for m in fixed if all(metric in v for v in by[(task, m)].values())]
            if not have or not all(metric in v for v in by[(task, method)].values()):
                continue
            best = max(have, key=lambda m: np.mean([v[metric] for v in by[(task, m)].values()]))
            ours, theirs = by[(task, method)], by[(task, best)]
            seeds = sorted(set(ours) & set(theirs))
            mean, half, verdict = paired_verdict(
                [ours[s][metric] - theirs[s][metric] for s in seeds]
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


def _mark(v: dict[str, Any]) -> str:
    diff = _fmt(v["diff_mean"], v["diff_ci95"])
    if v["verdict"] in ("better", "worse"):
        return f"{diff} **{v['verdict']}**"
    if v["verdict"].startswith("n/a"):
        return f"{diff} {v['verdict']}"
    return diff


SETTING_TITLES = {
    "greedy": "greedy decoding (headline)",
    "own": "each model at its own training temperature (fixed: its T; adaptive and scheduled: "
    "the mean sampled T of its last 10% of steps)",
}


def markdown(
    rows: list[dict[str, Any]], versus: list[dict[str, Any]], metrics: Sequence[str]
) -> str:
    """Per task: the seeds and training temperatures, then per evaluation setting a table of
    every method and a table of every method minus the best fixed T."""
    settings = list(dict.fromkeys(split_metric(m)[1] for m in metrics))
    lines = []
    for task in sorted({r["task"] for r in rows}):
        cell = {(r["method"], r["metric"]): r for r in rows if r["task"] == task}
        methods = list(dict.fromkeys(r["method"] for r in rows if r["task"] == task))
        lines += [
            f"### {task}",
            "",
            "| method | seeds | own T (last 10% of steps) | mean training T | step s |",
            "|---|---|---|---|---|",
        ]
        for m in methods:
            n = max(r["n"] for r in rows if r["task"] == task and r["method"] == m)
            vals = [
                _fmt(cell[(m, c)]["mean"], cell[(m, c)]["ci95"]) if (m, c) in cell else "-"
                for c in ("own_T", "mean_train_T", "step_seconds")
            ]
            lines.append(f"| {m} | {n} | " + " | ".join(vals) + " |")
        lines.append("")
        for setting in settings:
            cols = [k for k in metrics if split_metric(k)[1] == setting]
            title = SETTING_TITLES.get(setting, f"sampled at T = {setting.removeprefix('T')}")
            lines += [
                f"#### {task}: {title}",
                "",
                "| method | " + " | ".join(split_metric(c)[0] for c in cols) + " |",
                "|---" * (len(cols) + 1) + "|",
            ]
            for m in methods:
                vals = [
                    _fmt(cell[(m, c)]["mean"], cell[(m, c)]["ci95"]) if (m, c) in cell else "-"
                    for c in cols
                ]
                lines.append(f"| {m} | " + " | ".join(vals) + " |")
            lines.append("")
            vs = {(v["method"], v["metric"]): v for v in versus if v["task"] == task}
            compared = [c for c in cols if any(k[1] == c for k in vs)]
            others = list(dict.fromkeys(k[0] for k in vs if k[1] in compared))
            if not others:
                continue
            best = ", ".join(
                f"{split_metric(c)[0]}: {vs[(others[0], c)]['best_fixed']}" for c in compared
            )
            lines += [
                f"Minus the best fixed T for each metric (picked after the fact: {best}), "
                f"paired by seed, 95% CI; a verdict needs >= {MIN_VERDICT_SEEDS} seeds; no "
                "correction for multiple comparisons:",
                "",
                "| method | " + " | ".join(split_metric(c)[0] for c in compared) + " |",
                "|---" * (len(compared) + 1) + "|",
            ]
            for m in others:
                marks = [_mark(vs[(m, c)]) if (m, c) in vs else "-" for c in compared]
                lines.append(f"| {m} | " + " | ".join(marks) + " |")
            lines.append("")
    return "\n".join(lines)


OPTION_REFERENCE = "tampo-w10"
"""The paper-default TAMPO row every option is paired with (same warm-up, seeds and compute)."""
OPTION_METRICS = ("pass@1/greedy", "pass@1/T1.0", "pass@16/T1.0")


def versus_reference(
    runs: list[dict[str, Any]], metric: str, methods: Sequence[str], reference: str
) -> list[dict[str, Any]]:
    """Per task and method in ``methods``: ``metric`` of the method minus ``reference``,
    paired by seed, with :func:`paired_verdict` (uncorrected for multiple comparisons)."""
    by = finals_by_run(runs)
    out = []
    for task in sorted({t for t, _ in by}):
        theirs = by.get((task, reference), {})
        for method in methods:
            ours = by.get((task, method), {})
            seeds = sorted(s for s in set(ours) & set(theirs) if metric in ours[s])
            if not seeds:
                continue
            mean, half, verdict = paired_verdict(
                [ours[s][metric] - theirs[s][metric] for s in seeds]
            )
            out.append(
                {
                    "task": task,
                    "method": method,
                    "reference": reference,
                    "metric": metric,
                    "diff_mean": mean,
                    "diff_ci95": half,
                    "n": len(seeds),
                    "verdict": verdict,
                }
            )
    return out


def options_markdown(
    runs: list[dict[str, Any]], versus: list[dict[str, Any]], options: Sequence[str]
) -> tuple[str, list[dict[str, Any]]]:
    """Tables of each option (rows) on each testbed (columns) minus paper-default TAMPO
    (:data:`OPTION_REFERENCE`) and minus the best fixed T, for each of :data:`OPTION_METRICS`;
    empty without option runs. Returns the markdown and the paired differences against TAMPO."""
    present = [m for m in options if any(r["spec"]["method"] == m for r in runs)]
    if not present:
        return "", []
    tasks = sorted({r["spec"]["task"] for r in runs if r["spec"]["method"] in present})
    paired = [
        v
        for metric in OPTION_METRICS
        for v in versus_reference(runs, metric, present, OPTION_REFERENCE)
    ]
    tables = {
        f"minus paper-default TAMPO ({OPTION_REFERENCE})": paired,
        "minus the best fixed T (picked after the fact per testbed and metric)": versus,
    }
    lines = [
        "## Options beyond the paper",
        "",
        f"Each option is `{OPTION_REFERENCE}` changed in one setting "
        "(`benchmarks/option_methods.py`); paired by seed, 95% CI, no correction for multiple "
        f"comparisons; a verdict needs >= {MIN_VERDICT_SEEDS} seeds.",
        "",
    ]
    lines += [
        "#### Mean sparsemax support size during training (of K = 10; mean over steps, then "
        "mean ± 95% CI over seeds; not recorded for the bucketed and adaptive-grid rows)",
        "",
        "| method | " + " | ".join(tasks) + " |",
        "|---" * (len(tasks) + 1) + "|",
    ]
    for m in (OPTION_REFERENCE, *present):
        cells = []
        for t in tasks:
            sizes = [
                float(np.mean(r["log"]["support_size"]))
                for r in runs
                if r["spec"]["task"] == t
                and r["spec"]["method"] == m
                and r["log"].get("support_size")
            ]
            cells.append(_fmt(*mean_ci(sizes)) if sizes else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    for metric in OPTION_METRICS:
        for title, entries in tables.items():
            cell = {(v["task"], v["method"]): v for v in entries if v["metric"] == metric}
            lines += [
                f"#### {metric}, {title}",
                "",
                "| option | " + " | ".join(tasks) + " |",
                "|---" * (len(tasks) + 1) + "|",
            ]
            for m in present:
                marks = [_mark(cell[(t, m)]) if (t, m) in cell else "-" for t in tasks]
                lines.append(f"| {m} | " + " | ".join(marks) + " |")
            lines.append("")
    return "\n".join(lines), paired


def persistence_markdown(runs: list[dict[str, Any]], order: Sequence[str]) -> str:
    """Per wrong-mode testbed: seed-mean held-out greedy pass@1 on the carry subset (where the
    start policy's likeliest answer is wrong) at each curve step, per method."""
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r["curve"] and "pass@1/greedy-carry" in r["curve"][0] and r["log"]["temperature"]:
            by[r["spec"]["task"]][r["spec"]["method"]].append(r)
    lines = []
    for task, methods in sorted(by.items()):
        steps = [c["step"] for c in next(iter(methods.values()))[0]["curve"]]
        lines += [
            f"### {task}: how long the wrong mode lasts",
            "",
            "Held-out greedy pass@1 on the carry subset (seed mean) after each number of steps:",
            "",
            "| method | " + " | ".join(str(x) for x in steps) + " |",
            "|---" * (len(steps) + 1) + "|",
        ]
        for m in _method_order(set(methods), order):
            vals = np.mean([[c["pass@1/greedy-carry"] for c in r["curve"]] for r in methods[m]], 0)
            lines.append(f"| {m} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
        lines.append("")
    return "\n".join(lines)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if x.size < width:
        return x
    return np.convolve(x, np.ones(width) / width, mode="valid")


def _is_ablation(method: str) -> bool:
    """TAMPO variants beyond the two main rows: top_p/alpha ablations and the options."""
    return method in OPTION_METHODS or (
        method.startswith("tampo-") and ("-p" in method or "-a" in method)
    )


def _style(method: str) -> dict[str, Any]:
    """Line style per method: fixed T in blues (darker = hotter), TAMPO thick red/magenta."""
    import matplotlib

    named = {
        "tampo-w10": ("tab:red", 2.4),
        "tampo-w0": ("tab:pink", 2.4),
        "linear-0.9-1.5": ("tab:purple", 1.4),
        "cosine-0.9-1.5": ("tab:brown", 1.4),
        "staged": ("tab:olive", 1.4),
        "uniform": ("tab:gray", 1.4),
        "e3": ("tab:orange", 1.4),
        "e3-anneal": ("gold", 1.4),
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
        "ls": "--" if _is_ablation(method) else "-",
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
            acc = np.mean([[c["pass@1/greedy"] for c in r["curve"]] for r in rs], axis=0)
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
    and its variants, when present), tampo_temperature_heatmap.png (seed-mean pi(T) per step
    of each TAMPO method, sampled T overlaid) and the diagnostics_<task>.png figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["spec"]["task"] for r in runs})
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by[(r["spec"]["task"], r["spec"]["method"])].append(r)
    ordered = {t: _method_order({m for task, m in by if task == t}, order) for t in tasks}
    paths = [out_dir / "learning_curves.png"]
    main = {t: [m for m in ms if not _is_ablation(m)] for t, ms in ordered.items()}
    _curves_figure(by, tasks, main, paths[-1])
    variants = {t: [m for m in ms if m.startswith("tampo-")] for t, ms in ordered.items()}
    if any(len(ms) > 2 for ms in variants.values()):
        paths.append(out_dir / "ablation_curves.png")
        _curves_figure(by, tasks, variants, paths[-1])

    panels = [(t, m) for t in tasks for m in variants[t] if not _is_ablation(m)]
    if panels:
        fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.2 * len(panels)), squeeze=False)
        for row, (task, method) in enumerate(panels):
            rs = by[(task, method)]
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
                title=f"{task} {method}: meta-policy pi(T) after each step (mean of {len(rs)} "
                "seeds)",
                xlabel="step",
                ylabel="T",
            )
            ax.legend(loc="upper right", fontsize=7)
            fig.colorbar(im, ax=ax, label="probability")
        fig.tight_layout()
        paths.append(out_dir / "tampo_temperature_heatmap.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths + plot_diagnostics(runs, out_dir)


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
        f"{c['wall_seconds_this_invocation'] / 60:.1f} min wall"
        + (
            f", {c['cpu_seconds_all_processes'] / 60:.1f} min CPU, load average (1/5/15 min) "
            f"{'/'.join(f'{x:.1f}' for x in c['load_average_at_start'])} at the start and "
            f"{'/'.join(f'{x:.1f}' for x in c['load_average_at_end'])} at the end"
            if "cpu_seconds_all_processes" in c
            else ""
        )
        + f", finished {c['finished_utc']} UTC)"
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


def write_report(out_dir: Path, order: Sequence[str], banner: str = "") -> dict[str, Path]:
    """Write results.csv, results.json, results.md (``banner`` first, in bold) and the plots;
    returns their paths."""
    runs = load_runs(out_dir)
    if not runs:
        raise FileNotFoundError(f"no run results under {out_dir / 'runs'}")
    metrics = metric_keys(runs)
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
    options_md, versus_tampo = options_markdown(runs, versus, OPTION_METHODS)
    paths["json"].write_text(
        json.dumps(
            {"summary": rows, "versus_best_fixed": versus, "options_versus_tampo": versus_tampo},
            indent=1,
        )
    )
    head = f"**{banner}**\n\n" if banner else ""
    paths["md"].write_text(
        head
        + _provenance(out_dir)
        + options_md
        + ("\n" if options_md else "")
        + markdown(rows, versus, metrics)
        + "\n"
        + persistence_markdown(runs, order)
    )
    for p in plot(runs, order, out_dir):
        paths[p.stem] = p
    return paths
