"""Report rules: verdicts need >= 5 paired seeds, zero-width CIs are never significant, the
best fixed T is picked per metric and evaluation setting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from benchmarks.diagnostics import RecordingMetaPolicy
from benchmarks.suite_report import (
    MIN_VERDICT_SEEDS,
    markdown,
    metric_keys,
    options_markdown,
    paired_verdict,
    persistence_markdown,
    summarise,
    versus_best_fixed,
)
from benchmarks.suite_run import own_temperature
from tampo_core import PAPER_TEMPERATURES, TempMetaPolicy
from tampo_core.loglik import multi_temperature_loglik
from tampo_core.sparsemax import sparsemax


def test_fewer_than_five_seeds_gives_no_verdict_however_large_the_gap() -> None:
    assert MIN_VERDICT_SEEDS == 5
    for n in range(5):
        _, _, verdict = paired_verdict([-0.5 + 0.001 * i for i in range(n)])
        assert verdict == f"n/a ({n} seeds)"


def test_zero_width_interval_is_never_significant() -> None:
    mean, half, verdict = paired_verdict([-0.1] * 6)
    assert mean == pytest.approx(-0.1) and half == pytest.approx(0.0, abs=1e-15)
    assert verdict == "no significant difference (zero-width CI)"


def test_verdict_follows_the_paired_t_interval() -> None:
    assert paired_verdict([0.10, 0.11, 0.09, 0.10, 0.12])[2] == "better"
    assert paired_verdict([-0.10, -0.11, -0.09, -0.10, -0.12])[2] == "worse"
    assert paired_verdict([0.1, -0.1, 0.05, -0.05, 0.0])[2] == "no significant difference"
    mean, half, _ = paired_verdict([0.1, 0.2, 0.3, 0.4, 0.5])
    sd = np.std([0.1, 0.2, 0.3, 0.4, 0.5], ddof=1)
    assert mean == pytest.approx(0.3) and half == pytest.approx(2.776 * sd / np.sqrt(5))


def _run(task: str, method: str, seed: int, final: dict[str, float], temps: list[float]) -> Any:
    return {
        "spec": {"task": task, "method": method, "seed": seed},
        "final": final,
        "log": {"temperature": temps},
        "own_T": own_temperature(temps) if temps else None,
        "median_step_seconds": 0.1,
    }


def test_best_fixed_is_picked_per_evaluation_setting_and_paired_by_seed() -> None:
    runs = []
    for seed in range(5):
        # fixed-0.6 is best greedy, fixed-1.5 best at T = 1.0: the comparison must not mix them
        runs.append(_run("t", "fixed-0.6", seed, {"pass@1/greedy": 0.8, "pass@1/T1.0": 0.3}, [0.6]))
        runs.append(_run("t", "fixed-1.5", seed, {"pass@1/greedy": 0.5, "pass@1/T1.0": 0.6}, [1.5]))
        tampo = {"pass@1/greedy": 0.7 + 0.01 * seed, "pass@1/T1.0": 0.6}
        runs.append(_run("t", "tampo-w0", seed, tampo, [0.9] * 9 + [1.2]))
        runs.append(_run("t", "sft", seed, {"pass@1/greedy": 0.1, "pass@1/T1.0": 0.1}, []))
    keys = metric_keys(runs)
    assert keys == ["pass@1/greedy", "pass@1/T1.0"]
    vs = {v["metric"]: v for v in versus_best_fixed(runs, keys)}
    assert {v["method"] for v in vs.values()} == {"tampo-w0"}
    assert vs["pass@1/greedy"]["best_fixed"] == "fixed-0.6"
    assert vs["pass@1/greedy"]["diff_mean"] == pytest.approx(-0.08)
    assert vs["pass@1/greedy"]["verdict"] == "worse"
    assert vs["pass@1/T1.0"]["best_fixed"] == "fixed-1.5"
    assert vs["pass@1/T1.0"]["verdict"] == "no significant difference (zero-width CI)"
    rows = summarise(runs, ["sft", "fixed-0.6", "fixed-1.5", "tampo-w0"])
    own = {r["method"]: r["mean"] for r in rows if r["metric"] == "own_T"}
    assert own == pytest.approx({"fixed-0.6": 0.6, "fixed-1.5": 1.5, "tampo-w0": 1.2})
    md = markdown(rows, versus_best_fixed(runs, keys), keys)
    assert "#### t: greedy decoding (headline)" in md and "#### t: sampled at T = 1.0" in md
    assert "**worse**" in md


def test_options_are_paired_with_paper_tampo_and_the_best_fixed_t_per_testbed() -> None:
    runs = []
    for seed in range(5):
        for task in ("a", "b"):
            runs.append(_run(task, "fixed-0.6", seed, {"pass@1/greedy": 0.8}, [0.6]))
            runs.append(_run(task, "tampo-w10", seed, {"pass@1/greedy": 0.7 + 0.01 * seed}, [1.0]))
        runs.append(_run("a", "tampo-sum", seed, {"pass@1/greedy": 0.75 + 0.01 * seed}, [1.0]))
        runs.append(_run("b", "tampo-sum", seed, {"pass@1/greedy": 0.7 + 0.02 * seed}, [1.0]))
    for r in runs:
        if r["spec"]["method"] == "tampo-sum" and r["spec"]["task"] == "a":
            r["log"]["support_size"] = [3.0, 5.0]
    versus = versus_best_fixed(runs, ["pass@1/greedy"])
    md, paired = options_markdown(runs, versus, ["tampo-sum", "tampo-x10"])
    assert "| tampo-w10 | - | - |" in md and "| tampo-sum | 4.000 ± 0.000 | - |" in md
    by_task = {v["task"]: v for v in paired if v["metric"] == "pass@1/greedy"}
    assert by_task["a"]["diff_mean"] == pytest.approx(0.05)
    assert by_task["a"]["verdict"] == "no significant difference (zero-width CI)"
    assert by_task["b"]["diff_mean"] == pytest.approx(0.02) and by_task["b"]["verdict"] == "better"
    assert "| option | a | b |" in md and "tampo-x10" not in md  # no runs: no row
    assert "#### pass@1/greedy, minus paper-default TAMPO (tampo-w10)" in md
    assert "| tampo-sum | -0.030 " in md  # minus fixed-0.6 on a: 0.77 - 0.8
    assert options_markdown(runs, versus, ["tampo-x10"]) == ("", [])


def test_own_temperature_is_the_mean_of_the_last_tenth_of_steps() -> None:
    assert own_temperature([1.0] * 90 + [0.6] * 10) == pytest.approx(0.6)
    assert own_temperature([1.0] * 90 + [0.6] * 5 + [1.2] * 5) == pytest.approx(0.9)
    assert own_temperature([0.7, 1.3]) == pytest.approx(1.3)


def test_recording_policy_updates_exactly_like_observe_and_splits_preferred_t_by_sign() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, 12, generator=g) * 3
    tokens = torch.randint(0, 12, (8, 5), generator=g)
    mask = torch.ones(8, 5, dtype=torch.bool)
    mask[7] = False  # no valid token: skipped, counted in neither histogram
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 0.0, 2.0, -2.0, 3.0])
    plain = TempMetaPolicy(warmup_steps=0, seed=1)
    rec = RecordingMetaPolicy(TempMetaPolicy(warmup_steps=0, seed=1))
    want = plain.observe(logits, adv, tokens=tokens, mask=mask)
    got = rec.observe(logits, adv, tokens=tokens, mask=mask)
    np.testing.assert_array_equal(got.batch_advantage, want.batch_advantage)
    np.testing.assert_array_equal(rec.inner.probs, plain.probs)
    assert rec.sample() == plain.sample()
    ll = multi_temperature_loglik(logits, tokens, PAPER_TEMPERATURES, mask=mask).loglik[:7]
    best = ll.argmax(1).numpy()
    pos = np.bincount(best[[0, 2, 5]], minlength=10)
    neg = np.bincount(best[[1, 3, 6]], minlength=10)
    assert rec.record["preferred_pos"] == [pos.tolist()]
    assert rec.record["preferred_neg"] == [neg.tolist()]
    support = (sparsemax(ll.double().numpy()) > 0).sum(1).mean()
    assert rec.record["support_size"] == [pytest.approx(support)]
    temps = np.asarray(PAPER_TEMPERATURES)
    slope = np.polyfit(temps, want.batch_advantage, 1)[0]
    assert rec.record["advantage_slope"] == [pytest.approx(slope)]
    assert rec.record["expected_T"] == [pytest.approx(float(plain.probs @ temps))]


def test_persistence_table_averages_the_carry_subset_curve_over_seeds() -> None:
    runs = []
    for seed, (a, b) in enumerate([(0.1, 0.5), (0.3, 0.7)]):
        r = _run("wrong-mode", "fixed-0.6", seed, {"pass@1/greedy": 0.5}, [0.6])
        r["curve"] = [
            {"step": 0, "pass@1/greedy": 0.5, "pass@1/greedy-carry": a},
            {"step": 10, "pass@1/greedy": 0.6, "pass@1/greedy-carry": b},
        ]
        runs.append(r)
    other = _run("addition", "fixed-0.6", 0, {"pass@1/greedy": 0.5}, [0.6])
    other["curve"] = [{"step": 0, "pass@1/greedy": 0.5}]
    md = persistence_markdown([*runs, other], ["fixed-0.6"])
    assert "### wrong-mode: how long the wrong mode lasts" in md and "addition" not in md
    assert "| fixed-0.6 | 0.20 | 0.60 |" in md
