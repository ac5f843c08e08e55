"""Adversarial state and numerics (issue 10, items 5, 10 and 18): one case per bad input.

Each ``load_state_dict`` case must raise ``ValueError`` naming the field, and leave the policy
byte-identical; each huge-advantage case must be refused before anything non-finite enters the
state; the logger cases check the compact default and the one label format.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tampo_core import TempMetaPolicy

K = 10


def _policy() -> TempMetaPolicy:
    policy = TempMetaPolicy(warmup_steps=0, seed=5)
    policy.sample()
    policy.observe_loglik(np.linspace(-2.0, -1.0, K)[None, :].repeat(3, 0), [1.0, -0.5, 0.25])
    return policy


def _snapshot(policy: TempMetaPolicy) -> str:
    return json.dumps(policy.state_dict(), sort_keys=True, allow_nan=False)


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], dict]:
    def apply(state: dict[str, Any]) -> dict[str, Any]:
        edited = copy.deepcopy(state)
        change(edited)
        return edited

    return apply


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], dict]:
    *parents, leaf = path.split(".")

    def change(state: dict[str, Any]) -> None:
        node = state
        for name in parents:
            node = node[name]
        node[leaf] = value

    return _edit(change)


def _drop(path: str) -> Callable[[dict[str, Any]], dict]:
    *parents, leaf = path.split(".")

    def change(state: dict[str, Any]) -> None:
        node = state
        for name in parents:
            node = node[name]
        del node[leaf]

    return _edit(change)


STATE_CASES = [
    # item 10: an EMA that makes probs NaN
    ("ema-pm1e308", _set("ema", [-1e308] * 5 + [1e308] * 5), r"ema\[0\]: expected a value with"),
    ("ema-inf", _set("ema", [float("inf")] * K), r"ema\[0\]: expected a finite real number"),
    ("ema-string", _set("ema", "0" * K), "ema: expected a list of floats"),
    ("ema-bool", _set("ema", [True] * K), r"ema\[0\]: expected a finite real number"),
    # item 10: last_stats of the wrong length, non-finite, negative or fractional
    ("stats-short-adv", _set("last_stats.batch_advantage", [0.0] * 3), "batch_advantage: exp"),
    (
        "stats-short-hist",
        _set("last_stats.argmax_histogram", [3]),
        "last_stats.argmax_histogram: expected 10 entries",
    ),
    (
        "stats-nan-adv",
        _set("last_stats.batch_advantage", [float("nan")] * K),
        r"last_stats.batch_advantage\[0\]: expected a finite real number, got nan",
    ),
    (
        "stats-nan-support",
        _set("last_stats.support_size", float("nan")),
        "last_stats.support_size: expected a finite real number, got nan",
    ),
    (
        "stats-support-range",
        _set("last_stats.support_size", 11.0),
        r"last_stats.support_size: expected a real number in \[1, 10\], got 11",
    ),
    (
        "stats-negative-count",
        _set("last_stats.num_trajectories", -3),
        "last_stats.num_trajectories: expected an int >= 1, got -3",
    ),
    (
        "stats-fractional-count",
        _set("last_stats.num_skipped", 1.5),
        "last_stats.num_skipped: expected an int >= 0, got float 1.5",
    ),
    (
        "stats-negative-hist",
        _set("last_stats.argmax_histogram", [-1] + [0] * 8 + [4]),
        r"last_stats.argmax_histogram\[0\]: expected an int >= 0, got -1",
    ),
    (
        "stats-hist-sum",
        _set("last_stats.argmax_histogram", [1] * K),
        "argmax_histogram: expected counts summing to num_trajectories = 3, got 10",
    ),
    ("stats-extra-field", _set("last_stats.extra", 1), "last_stats.extra: expected no such"),
    # item 10: RNG integers out of range escaped as a bare OverflowError
    (
        "rng-state-2^128",
        _set("rng.state", str(2**128)),
        r"rng.state: expected a decimal string of an int in \[0, 2\*\*128\)",
    ),
    ("rng-state-negative", _set("rng.state", "-1"), "rng.state: expected a decimal string"),
    ("rng-state-int", _set("rng.state", 5), "rng.state: expected a decimal string"),
    ("rng-inc-even", _set("rng.inc", "4"), "rng.inc: expected an odd increment"),
    ("rng-uinteger-2^32", _set("rng.uinteger", 2**32), r"rng.uinteger: expected an int in \["),
    ("rng-has-uint32-5", _set("rng.has_uint32", 5), "rng.has_uint32: expected 0 or 1, got 5"),
    ("rng-generator", _set("rng.bit_generator", "MT19937"), "rng.bit_generator: expected one"),
    ("rng-missing-inc", _drop("rng.inc"), "rng.inc: expected this field, got nothing"),
    # item 10: last_temperature that no sample can have returned
    (
        "last-temperature-negative",
        _set("last_temperature", -5.0),
        "last_temperature: expected None or one of the candidate temperatures",
    ),
    (
        "last-temperature-off-grid",
        _set("last_temperature", 0.65),
        "last_temperature: expected None or one of the candidate temperatures",
    ),
    # item 10: version must be the int it claims
    ("version-float", _set("version", 1.0), "version: expected an int >= 0, got float 1.0"),
    ("version-bool", _set("version", True), "version: expected an int >= 0, got bool True"),
    ("version-string", _set("version", "1"), "version: expected an int >= 0, got str '1'"),
    ("version-2", _set("version", 2), r"version: expected the int 1 \(this format\), got 2"),
    # item 10: counters
    ("num-updates-float", _set("num_updates", 1.0), "num_updates: expected an int >= 0"),
    ("num-updates-negative", _set("num_updates", -1), "num_updates: expected an int >= 0"),
    # item 10: unknown or missing top-level fields, a config from another policy
    ("extra-field", _set("surprise", 1), "surprise: expected no such field"),
    ("missing-ema", _drop("ema"), "ema: expected this field, got nothing"),
    ("config-top-p", _set("config.top_p", 0.9), r"config: expected this policy's config.*top_p"),
    ("config-invalid", _set("config.top_p", 2.0), r"config.top_p: expected a valid value"),
    ("not-a-dict", lambda state: [state], "state: expected a dict, got list"),
]


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [pytest.param(edit, pattern, id=name) for name, edit, pattern in STATE_CASES],
)
def test_a_malformed_state_is_refused_and_leaves_the_policy_unchanged(
    edit: Callable[[dict[str, Any]], Any], pattern: str
) -> None:
    policy = _policy()
    before = _snapshot(policy)
    bad = edit(json.loads(before))
    with pytest.raises(ValueError, match=r"^invalid TempMetaPolicy state_dict: .*" + pattern):
        policy.load_state_dict(bad)
    assert _snapshot(policy) == before


HUGE = [1e308, -1e308, 1.7976931348623157e308, 1e101]


@pytest.mark.parametrize("value", HUGE, ids=[f"advantage={v:g}" for v in HUGE])
def test_a_huge_finite_advantage_is_refused_before_it_reaches_the_ema(value: float) -> None:
    policy = _policy()
    before = _snapshot(policy)
    with pytest.raises(ValueError, match=r"advantages: expected values with \|x\| <= 1e\+100"):
        policy.observe_loglik(np.linspace(-2.0, -1.0, K)[None, :].repeat(2, 0), [value, 1.0])
    assert _snapshot(policy) == before
    assert np.isfinite(policy.probs).all()


def test_the_largest_accepted_advantages_keep_the_state_finite_and_loadable() -> None:
    policy = _policy()
    rows = np.stack([np.linspace(-2.0, -1.0, K), np.linspace(-1.0, -2.0, K)])
    for _ in range(3):
        policy.observe_loglik(rows, [1e100, -1e100])
        policy.observe_loglik(rows, [-1e100, 1e100])
    assert np.isfinite(policy.ema).all() and np.isfinite(policy.probs).all()
    state = json.loads(_snapshot(policy))  # allow_nan=False: the JSON is clean
    restored = TempMetaPolicy(warmup_steps=0, seed=5)
    restored.load_state_dict(state)
    assert [restored.sample() for _ in range(20)] == [policy.sample() for _ in range(20)]


def test_metrics_default_has_only_the_compact_keys() -> None:
    assert set(_policy().metrics()) == {
        "tampo/temperature",
        "tampo/expected_temperature",
        "tampo/entropy",
        "tampo/support_size",
        "tampo/edge_fraction",
    }


def test_temperature_labels_share_one_format() -> None:
    keys = _policy().metrics(detail=True)
    assert "tampo/prob/1.0" in keys and "tampo/prob/0.6" in keys
    assert "tampo/prob/1" not in keys
