"""Two gloo processes on CPU: synchronised updates succeed together or fail together.

Every scenario runs in two real ranks under a guard (``run_ranks``): a gloo timeout of
``GLOO_TIMEOUT_S`` turns a stuck collective into an error, and the parent kills the ranks and
fails after ``GUARD_S``, so a regression fails instead of hanging. One spawn runs the whole
catch-and-continue suite (``CASES``, in order, each with fresh policies); a second one lets the
error propagate so that the failing rank's process stops.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import tampo_core as tc
from tampo_core.distributed import all_reduce_sum

K = 10
WORLD = 2
GLOO_TIMEOUT_S = 20
GUARD_S = 75


def _batches(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for n in (6, 4, 8):
        loglik = -rng.gamma(2.0, 1.0, size=(n, K))
        out.append((loglik, rng.normal(size=n)))
    return out


def _logits_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 5, 11, generator=gen) * 3
    tokens = torch.randint(0, 11, (4, 5), generator=gen)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1, 2:] = False
    mask[3] = False  # an empty trajectory, skipped on this rank
    return logits, tokens, mask, torch.randn(4, generator=gen)


def _snapshot(policy: tc.TempMetaPolicy) -> str:
    return json.dumps(policy.state_dict(), sort_keys=True)


def _outcome(policy: tc.TempMetaPolicy, call: Callable[[], Any]) -> dict[str, Any]:
    """Run one observe; report the error (if any) and whether the state stayed unchanged."""
    before = _snapshot(policy)
    try:
        call()
    except Exception as error:
        return {
            "error": type(error).__name__,
            "message": str(error),
            "unchanged": _snapshot(policy) == before,
        }
    return {"error": None, "message": "", "unchanged": _snapshot(policy) == before}


def _good(rank: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    return _batches(100 + rank)[step % 3]


# -- the scenarios, run in order on both ranks (each returns what the parent checks) ----------


def case_normal(rank: int) -> dict[str, Any]:
    policy = tc.TempMetaPolicy(warmup_steps=1, seed=11)
    temperatures = []
    for loglik, advantages in _batches(100 + rank):
        temperatures.append(policy.sample())
        policy.observe_loglik(loglik, advantages)
    logits, tokens, mask, advantages = _logits_batch(200 + rank)
    stats = policy.observe(logits, advantages, tokens=tokens, mask=mask)
    temperatures += [policy.sample() for _ in range(10)]
    unsynced = tc.TempMetaPolicy()
    unsynced.observe_loglik(*_batches(100 + rank)[0], sync=False)
    return {
        "probs": policy.probs.tolist(),
        "ema": policy.ema.tolist(),
        "temperatures": temperatures,
        "n": stats.num_trajectories,
        "skipped": stats.num_skipped,
        "unsynced_ema": unsynced.ema.tolist(),
    }


def _one_rank_bad(rank: int, bad_rank: int, bad_call: Callable[[tc.TempMetaPolicy], Any]) -> dict:
    """A good update, then one where ``bad_rank`` passes bad input, then a good one again."""
    policy = tc.TempMetaPolicy(warmup_steps=0, seed=3)
    policy.observe_loglik(*_good(rank, 0))
    policy.sample()
    if rank == bad_rank:
        outcome = _outcome(policy, lambda: bad_call(policy))
    else:
        outcome = _outcome(policy, lambda: policy.observe_loglik(*_good(rank, 1)))
    policy.observe_loglik(*_good(rank, 2))  # both carry on in step
    return {
        **outcome,
        "num_updates": policy.num_updates,
        "state": _snapshot(policy),
        "draws": [policy.sample() for _ in range(10)],
    }


def case_nan_advantage(rank: int) -> dict[str, Any]:
    loglik, advantages = _good(rank, 1)
    bad = advantages.copy()
    bad[1] = np.nan
    return _one_rank_bad(rank, 1, lambda p: p.observe_loglik(loglik, bad))


def case_nan_logits(rank: int) -> dict[str, Any]:
    logits, tokens, mask, advantages = _logits_batch(300)
    logits[2, 1, 3] = float("nan")
    return _one_rank_bad(rank, 0, lambda p: p.observe(logits, advantages, tokens=tokens, mask=mask))


def case_empty_batch(rank: int) -> dict[str, Any]:
    return _one_rank_bad(rank, 1, lambda p: p.observe_loglik(np.zeros((0, K)), []))


def case_wrong_type(rank: int) -> dict[str, Any]:
    loglik, _ = _good(rank, 1)
    return _one_rank_bad(rank, 1, lambda p: p.observe_loglik(loglik, "not advantages"))


def case_huge_advantage(rank: int) -> dict[str, Any]:
    loglik, advantages = _good(rank, 1)
    return _one_rank_bad(rank, 1, lambda p: p.observe_loglik(loglik, advantages * 0 + 1e308))


def case_invalid_sync(rank: int) -> dict[str, Any]:
    return _one_rank_bad(rank, 0, lambda p: p.observe_loglik(*_good(rank, 1), sync="yes"))


def case_masked_batch(rank: int) -> dict[str, Any]:
    """Every row of rank 1 has no valid token: not an error, its rows are counted as skipped."""
    policy = tc.TempMetaPolicy(warmup_steps=0)
    loglik, advantages = _good(rank, 0)
    num_tokens = np.full(len(advantages), 0 if rank == 1 else 3)
    stats = policy.observe_loglik(loglik, advantages, num_tokens=num_tokens)
    both_empty = _outcome(
        policy, lambda: policy.observe_loglik(loglik, advantages, num_tokens=0 * num_tokens)
    )
    return {
        "n": stats.num_trajectories,
        "skipped": stats.num_skipped,
        "ema": policy.ema.tolist(),
        "both_empty": both_empty,
    }


def _mismatch(rank: int, **rank1: Any) -> dict[str, Any]:
    policy = tc.TempMetaPolicy(**(rank1 if rank == 1 else {}))
    k = policy.config.num_temperatures
    outcome = _outcome(policy, lambda: policy.observe_loglik(np.zeros((2, k)), [1.0, -1.0]))
    return {**outcome, "num_updates": policy.num_updates}


def case_different_k(rank: int) -> dict[str, Any]:
    return _mismatch(rank, temperatures=(0.5, 1.0, 1.5))


def case_different_seed(rank: int) -> dict[str, Any]:
    return _mismatch(rank, seed=7)


def case_different_top_p(rank: int) -> dict[str, Any]:
    return _mismatch(rank, top_p=0.9)


def case_sync_false_on_one_rank(rank: int) -> dict[str, Any]:
    """Rank 0 updates alone; its next synchronised update pairs with rank 1's first one."""
    policy = tc.TempMetaPolicy(warmup_steps=0)
    policy.observe_loglik(*_good(rank, 0))
    if rank == 0:
        policy.observe_loglik(*_good(rank, 1), sync=False)
    outcome = _outcome(policy, lambda: policy.observe_loglik(*_good(rank, 2)))
    return {**outcome, "num_updates": policy.num_updates}


def case_foreign_collective(rank: int) -> dict[str, Any]:
    """Rank 0's collective is not an update but has the packed length: rank 1 must notice."""
    policy = tc.TempMetaPolicy(warmup_steps=0)
    policy.observe_loglik(*_good(rank, 0))
    if rank == 0:
        all_reduce_sum(np.zeros(tc.TemperatureAdvantageSums.zeros(K).pack().shape[0] + 2 * WORLD))
        return {"num_updates": policy.num_updates}
    outcome = _outcome(policy, lambda: policy.observe_loglik(*_good(rank, 1)))
    return {**outcome, "num_updates": policy.num_updates}


CASES: dict[str, Callable[[int], dict[str, Any]]] = {
    name.removeprefix("case_"): value
    for name, value in list(globals().items())
    if name.startswith("case_")
}


def _init(rank: int, init_file: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=GLOO_TIMEOUT_S),
    )


def _suite_worker(rank: int, init_file: str, out_dir: str, names: tuple[str, ...]) -> None:
    """Run the named ``CASES`` in order; write the results after each one."""
    _init(rank, init_file)
    results: dict[str, Any] = {}
    try:
        for name in names:
            results[name] = CASES[name](rank)
            Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def stopping_worker(rank: int, init_file: str, out_dir: str) -> None:
    """Rank 1's bad batch is not caught: its process stops; rank 0 must raise, not hang."""
    _init(rank, init_file)
    policy = tc.TempMetaPolicy()
    loglik, advantages = _good(rank, 0)
    if rank == 1:
        advantages = advantages * np.nan
    try:
        policy.observe_loglik(loglik, advantages)
    except Exception as error:
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps([type(error).__name__, str(error)]))
        raise
    finally:
        dist.destroy_process_group()


def run_ranks(worker: Callable[..., None], tmp_path: Path, *extra: Any) -> list[int | None]:
    """Start ``worker(rank, init_file, out_dir, *extra)`` on both ranks, wait at most
    ``GUARD_S`` in all, kill survivors; the exit codes."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    context = mp.get_context("spawn")
    processes = [
        context.Process(target=worker, args=(rank, str(tmp_path / "init"), str(tmp_path), *extra))
        for rank in range(WORLD)
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + GUARD_S
    for process in processes:
        process.join(max(deadline - time.monotonic(), 0.0))
    hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    assert not hung, f"ranks {hung} still running after {GUARD_S} s: a collective hangs"
    return [process.exitcode for process in processes]


def run_suite(out: Path, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Run the named cases on two ranks under the guard; each rank's results."""
    codes = run_ranks(_suite_worker, out, names)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert codes == [0, 0], (codes, {r: list(ranks[r]) for r in range(WORLD)})
    return ranks


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return run_suite(tmp_path_factory.mktemp("suite"), tuple(CASES))


def both(suite: list[dict[str, Any]], name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    assert all(name in ranks for ranks in suite), f"case {name} did not complete on every rank"
    return suite[0][name], suite[1][name]


@pytest.mark.distributed
def test_two_gloo_ranks_hold_the_identical_distribution(suite: list[dict[str, Any]]) -> None:
    rank0, rank1 = both(suite, "normal")
    assert rank0["probs"] == rank1["probs"]
    assert rank0["ema"] == rank1["ema"]
    assert rank0["temperatures"] == rank1["temperatures"]
    assert rank0["n"] == 6 and rank0["skipped"] == 2
    assert rank0["unsynced_ema"] != rank1["unsynced_ema"]

    # The synchronised result equals one process seeing both ranks' data at once.
    single = tc.TempMetaPolicy(warmup_steps=1, seed=11)
    for step in range(3):
        loglik = np.concatenate([_batches(100 + r)[step][0] for r in range(WORLD)])
        advantages = np.concatenate([_batches(100 + r)[step][1] for r in range(WORLD)])
        single.observe_loglik(loglik, advantages)
    parts = [_logits_batch(200 + r) for r in range(WORLD)]
    single.observe(
        torch.cat([p[0] for p in parts]),
        torch.cat([p[3] for p in parts]),
        tokens=torch.cat([p[1] for p in parts]),
        mask=torch.cat([p[2] for p in parts]),
    )
    np.testing.assert_allclose(rank0["ema"], single.ema, rtol=1e-12, atol=1e-15)


ONE_RANK_BAD = [
    ("nan_advantage", 1, "ValueError", r"rank 1: ValueError: advantages: expected finite values"),
    ("nan_logits", 0, "ValueError", r"rank 0: ValueError: loglik\[2\]: expected finite"),
    ("empty_batch", 1, "ValueError", r"rank 1: ValueError: loglik: expected at least one"),
    ("wrong_type", 1, "TypeError", r"rank 1: TypeError: advantages: expected a torch.Tensor"),
    ("huge_advantage", 1, "ValueError", r"rank 1: ValueError: advantages: expected values with"),
    ("invalid_sync", 0, "TypeError", r"rank 0: TypeError: sync: expected None or a bool"),
]


@pytest.mark.distributed
@pytest.mark.parametrize(("name", "bad_rank", "error", "reason"), ONE_RANK_BAD)
def test_a_bad_batch_on_one_rank_makes_every_rank_raise_the_same_error(
    suite: list[dict[str, Any]], name: str, bad_rank: int, error: str, reason: str
) -> None:
    rank0, rank1 = both(suite, name)
    for outcome in (rank0, rank1):
        assert outcome["error"] == error
        assert outcome["message"].startswith(
            "observe: expected a valid batch on every rank, got 1 of 2 rank(s) failing, "
        )
        assert re.search(reason, outcome["message"]), outcome["message"]
        assert outcome["message"].endswith("no rank's state changed")
        assert outcome["unchanged"]
    assert rank0["message"] == rank1["message"]
    # Both carried on in step: the same state and the same draws afterwards.
    assert rank0["num_updates"] == rank1["num_updates"] == 2
    assert rank0["state"] == rank1["state"]
    assert rank0["draws"] == rank1["draws"]


@pytest.mark.distributed
def test_a_rank_whose_rows_are_all_masked_only_adds_skipped_rows(
    suite: list[dict[str, Any]],
) -> None:
    rank0, rank1 = both(suite, "masked_batch")
    assert (rank0["n"], rank0["skipped"]) == (rank1["n"], rank1["skipped"]) == (6, 6)
    assert rank0["ema"] == rank1["ema"]
    for outcome in (rank0["both_empty"], rank1["both_empty"]):
        assert outcome["error"] == "ValueError" and outcome["unchanged"]
        assert outcome["message"].startswith("batch: expected at least one trajectory")
        assert "none (12 skipped)" in outcome["message"]


@pytest.mark.distributed
@pytest.mark.parametrize(
    ("name", "field", "values"),
    [
        ("different_k", "temperatures", "rank 1 [0.5, 1.0, 1.5]"),
        ("different_seed", "seed", "seed: rank 0 0, rank 1 7"),
        ("different_top_p", "top_p", "top_p: rank 0 0.7, rank 1 0.9"),
    ],
)
def test_a_config_difference_is_refused_on_every_rank_naming_the_field(
    suite: list[dict[str, Any]], name: str, field: str, values: str
) -> None:
    rank0, rank1 = both(suite, name)
    for outcome in (rank0, rank1):
        assert outcome["error"] == "ValueError" and outcome["unchanged"]
        assert outcome["num_updates"] == 0
        assert outcome["message"].startswith(
            "config: expected the same TampoConfig on every rank (seed included), got 1 "
            f"differing field(s): {field}: "
        )
        assert values in outcome["message"]
    assert rank0["message"] == rank1["message"]


@pytest.mark.distributed
def test_sync_false_on_one_rank_is_detected_at_the_next_synchronised_update(
    suite: list[dict[str, Any]],
) -> None:
    rank0, rank1 = both(suite, "sync_false_on_one_rank")
    for outcome in (rank0, rank1):
        assert outcome["error"] == "RuntimeError" and outcome["unchanged"]
        assert outcome["message"].startswith(
            "observe: expected the same number of past updates on every rank, got rank 0: 2, "
            "rank 1: 1 (a rank updated alone"
        )
    assert (rank0["num_updates"], rank1["num_updates"]) == (2, 1)


@pytest.mark.distributed
def test_a_foreign_collective_of_the_same_length_is_not_taken_for_an_update(
    suite: list[dict[str, Any]],
) -> None:
    rank0, rank1 = both(suite, "foreign_collective")
    assert rank1["error"] == "RuntimeError" and rank1["unchanged"]
    assert rank1["message"].startswith(
        "observe: expected every rank in the same synchronised update, got no valid status "
        "from rank(s) [0] of 2"
    )
    assert rank0["num_updates"] == rank1["num_updates"] == 1


@pytest.mark.distributed
def test_when_the_failing_rank_stops_the_other_raises_instead_of_hanging(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    codes = run_ranks(stopping_worker, tmp_path)
    assert all(code not in (0, None) for code in codes), codes
    errors = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert errors[0] == errors[1]
    assert errors[0][0] == "ValueError"
    assert "rank 1: ValueError: advantages: expected finite values" in errors[0][1]
    assert time.monotonic() - started < GLOO_TIMEOUT_S + 30  # no wait for a gloo timeout


def test_sync_true_without_a_process_group_is_refused() -> None:
    policy = tc.TempMetaPolicy()
    with pytest.raises(RuntimeError, match=r"initialised torch\.distributed"):
        policy.observe_loglik(np.zeros((1, K)), [1.0], sync=True)
    assert policy.num_updates == 0


def test_an_invalid_sync_value_is_refused_without_a_process_group() -> None:
    policy = tc.TempMetaPolicy()
    with pytest.raises(TypeError, match=r"sync: expected None or a bool, got 'yes'"):
        policy.observe_loglik(np.zeros((1, K)), [1.0], sync="yes")  # type: ignore[arg-type]
    assert policy.num_updates == 0
