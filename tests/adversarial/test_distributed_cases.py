"""Adversarial distributed inputs (issue 10, items 1-3): one case per fault, on two gloo ranks.

Each bad input on one rank must make both ranks raise the same error in the same call, with
both states unchanged and no hang (the scenarios and the guard are those of
``tests.core.test_distributed``, run here in one spawn of their own).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.core.test_distributed import WORLD, both, run_ranks, run_suite, stopping_worker

ONE_RANK_FAILS = "observe: expected a valid batch on every rank, got 1 of 2 rank(s) failing, "
CONFIG_DIFFERS = "config: expected the same TampoConfig on every rank (seed included), got "
FAILS, DIFFERS = re.escape(ONE_RANK_FAILS), re.escape(CONFIG_DIFFERS)

CASES = [
    # item 1: faults that left one rank an update ahead of the other
    ("empty_batch", "ValueError", FAILS + r"rank 1: ValueError: loglik: expected at"),
    ("nan_logits", "ValueError", FAILS + r"rank 0: ValueError: loglik\[2\]: expected"),
    ("huge_advantage", "ValueError", FAILS + r"rank 1: ValueError: advantages: "),
    ("wrong_type", "TypeError", FAILS + r"rank 1: TypeError: advantages: expected"),
    ("invalid_sync", "TypeError", FAILS + r"rank 0: TypeError: sync: expected None"),
    (
        "sync_false_on_one_rank",
        "RuntimeError",
        r"observe: expected the same number of past updates on every rank, got rank 0: 2",
    ),
    # item 3: config differences crashed gloo (K) or silently diverged (seed)
    ("different_k", "ValueError", DIFFERS + r"1 differing field\(s\): temperatures: "),
    ("different_seed", "ValueError", DIFFERS + r"1 differing field\(s\): seed: "),
    ("different_top_p", "ValueError", DIFFERS + r"1 differing field\(s\): top_p: "),
]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return run_suite(tmp_path_factory.mktemp("adversarial"), tuple(name for name, *_ in CASES))


@pytest.mark.distributed
@pytest.mark.parametrize(
    ("name", "error", "pattern"), [pytest.param(*case, id=case[0]) for case in CASES]
)
def test_both_ranks_raise_the_same_error_with_their_state_unchanged(
    suite: list[dict[str, Any]], name: str, error: str, pattern: str
) -> None:
    rank0, rank1 = both(suite, name)
    assert rank0["message"] == rank1["message"]
    for outcome in (rank0, rank1):
        assert outcome["error"] == error and outcome["unchanged"]
        assert re.match(pattern, outcome["message"]), outcome["message"]
    if "state" in rank0:  # the ranks carried on in step after the failed call
        assert rank0["state"] == rank1["state"] and rank0["draws"] == rank1["draws"]


@pytest.mark.distributed
def test_item_2_the_failing_rank_stops_and_the_other_raises_instead_of_hanging(
    tmp_path: Path,
) -> None:
    codes = run_ranks(stopping_worker, tmp_path)
    assert all(code not in (0, None) for code in codes), codes
    errors = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert errors[0] == errors[1] and errors[0][0] == "ValueError"
    assert errors[0][1].startswith(ONE_RANK_FAILS + "rank 1: ValueError: advantages: ")
