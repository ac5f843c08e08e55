"""AdaptiveGridTempMetaPolicy: the documented edge rule, bounded range and K, probabilities that
sum to 1 through every move, and a state that round-trips."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tampo_core as tc
from tampo_core.adaptive_grid import AdaptiveGridTempMetaPolicy

CFG = tc.TampoConfig(warmup_steps=0)


def toward(policy: AdaptiveGridTempMetaPolicy, edge: str) -> tuple[np.ndarray, list[float]]:
    """A batch whose positive trajectory prefers the given edge of the current grid."""
    k = len(policy.temperatures)
    target = 0 if edge == "low" else k - 1
    loglik = np.stack([-np.abs(np.arange(k) - target), -np.abs(np.arange(k) - (k - 1 - target))])
    return loglik * 0.05, [1.0, -1.0]


def test_without_an_edge_run_it_is_the_plain_policy() -> None:
    adaptive, plain = (
        AdaptiveGridTempMetaPolicy(CFG, grid_patience=3),
        tc.TempMetaPolicy(config=CFG),
    )
    rng = np.random.default_rng(0)
    for _ in range(2):
        loglik, advantages = -rng.gamma(2.0, 1.0, size=(6, 10)), rng.normal(size=6)
        adaptive.observe_loglik(loglik, advantages)
        plain.observe_loglik(loglik, advantages)
    assert adaptive.ema.tobytes() == plain.ema.tobytes()
    assert adaptive.temperatures == plain.temperatures
    assert [adaptive.sample() for _ in range(20)] == [plain.sample() for _ in range(20)]


def test_a_high_edge_run_extends_then_shifts_the_grid_within_its_bounds() -> None:
    policy = AdaptiveGridTempMetaPolicy(
        CFG, grid_patience=2, max_temperature=1.8, max_candidates=11
    )
    policy.observe_loglik(*toward(policy, "high"))
    assert policy.temperatures == CFG.temperatures and policy.edge_run == ("high", 1)
    edge_ema = policy.ema[-1]
    policy.observe_loglik(*toward(policy, "high"))
    assert policy.temperatures == (*CFG.temperatures, 1.6)  # extended at the edge's spacing
    assert policy.ema[-1] == policy.ema[-2]  # the new candidate starts at the edge's EMA
    assert policy.ema[-2] != edge_ema  # (the second update moved the edge's EMA first)
    for _ in range(2):
        policy.observe_loglik(*toward(policy, "high"))
    assert policy.temperatures == tuple(round(0.7 + 0.1 * k, 9) for k in range(11))  # shifted
    for _ in range(10):
        policy.observe_loglik(*toward(policy, "high"))
    assert policy.temperatures[-1] == 1.8 and len(policy.temperatures) == 11
    assert policy.metrics()["tampo/grid_max"] == 1.8


def test_a_low_edge_run_extends_downward_and_an_interior_argmax_resets_the_count() -> None:
    policy = AdaptiveGridTempMetaPolicy(CFG, grid_patience=2, min_temperature=0.5)
    policy.observe_loglik(*toward(policy, "low"))
    middle = np.stack([-np.abs(np.arange(10) - 5)] * 2) * 0.05
    policy.observe_loglik(middle, [1.0, 1.0])
    assert policy.edge_run == (None, 0) and policy.temperatures == CFG.temperatures
    for _ in range(4):
        policy.observe_loglik(*toward(policy, "low"))
    assert policy.temperatures[0] == 0.5 and len(policy.temperatures) == 11  # range bound


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(["low", "high", "random"]), min_size=1, max_size=25),
    st.integers(1, 3),
    st.integers(10, 13),
    st.integers(0, 2**16),
)
def test_probabilities_sum_to_one_and_the_grid_stays_bounded(moves, patience, max_k, seed) -> None:
    policy = AdaptiveGridTempMetaPolicy(
        CFG, grid_patience=patience, min_temperature=0.4, max_temperature=1.9, max_candidates=max_k
    )
    rng = np.random.default_rng(seed)
    for move in moves:
        if move == "random":
            k = len(policy.temperatures)
            policy.observe_loglik(-rng.gamma(2.0, 1.0, size=(4, k)), rng.normal(size=4))
        else:
            policy.observe_loglik(*toward(policy, move))
        grid, pi = np.array(policy.temperatures), policy.probs
        assert pi.shape == grid.shape and (pi >= 0).all() and abs(pi.sum() - 1.0) < 1e-12
        assert (np.diff(grid) > 0).all() and grid[0] >= 0.4 and grid[-1] <= 1.9
        assert 10 <= grid.shape[0] <= max_k
        assert policy.sample() in policy.temperatures


def test_state_round_trips_across_moves_and_refuses_other_settings() -> None:
    policy = AdaptiveGridTempMetaPolicy(CFG, grid_patience=1, max_candidates=12)
    for edge in ("high", "high", "high", "low"):
        policy.sample()
        policy.observe_loglik(*toward(policy, edge))
    assert len(policy.temperatures) == 12
    text = json.dumps(policy.state_dict())
    restored = AdaptiveGridTempMetaPolicy(CFG, grid_patience=1, max_candidates=12)
    restored.load_state_dict(json.loads(text))
    assert json.dumps(restored.state_dict()) == text
    assert [restored.sample() for _ in range(20)] == [policy.sample() for _ in range(20)]
    other = AdaptiveGridTempMetaPolicy(CFG, grid_patience=2, max_candidates=12)
    before = json.dumps(other.state_dict())
    with pytest.raises(ValueError, match="invalid AdaptiveGridTempMetaPolicy state_dict: settings"):
        other.load_state_dict(json.loads(text))
    assert json.dumps(other.state_dict()) == before


def test_bad_settings_are_refused() -> None:
    fixed = tc.TampoConfig(warmup="fixed", warmup_temperature=1.0)
    for kwargs, match in [
        ({"config": fixed}, "config.warmup: expected 'uniform'"),
        ({"grid_patience": 0}, "grid_patience: expected an int >= 1"),
        ({"min_temperature": 0.7}, "range: expected min_temperature <= 0.6"),
        ({"max_candidates": 9}, "max_candidates: expected an int >= 10"),
        ({"max_temperature": float("nan")}, "max_temperature: expected a finite"),
    ]:
        with pytest.raises(ValueError, match=match):
            AdaptiveGridTempMetaPolicy(**kwargs)
