import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tampo_core as tc
from tampo_core.reference import reference_nucleus

weights = arrays(np.float64, st.integers(2, 12), elements=st.floats(0, 10)).filter(
    lambda w: w.sum() > 0
)
top_ps = st.floats(0.0, 1.0)


@given(weights, top_ps)
def test_nucleus_matches_reference_and_is_a_prefix(w: np.ndarray, top_p: float) -> None:
    probs = w / w.sum()
    kept = tc.nucleus_support(probs, top_p)
    assert kept.tolist() == reference_nucleus(probs.tolist(), top_p)
    assert 1 <= len(kept) <= len(probs)
    outside = np.setdiff1d(np.arange(len(probs)), kept)
    if outside.size:
        assert probs[kept].min() >= probs[outside].max()
        assert probs[kept].sum() >= top_p - 1e-12


@given(weights, top_ps, st.integers(0, 2**32))
def test_nucleus_sample_stays_in_the_kept_prefix(w: np.ndarray, top_p: float, seed: int) -> None:
    probs = w / w.sum()
    kept = set(tc.nucleus_support(probs, top_p).tolist())
    rng = np.random.default_rng(seed)
    for _ in range(20):
        index = tc.nucleus_sample(probs, top_p, rng)
        assert index in kept
        assert probs[index] > 0


@given(weights, st.integers(0, 2**32))
def test_top_p_zero_is_the_argmax_with_ties_to_the_lower_temperature(
    w: np.ndarray, seed: int
) -> None:
    probs = w / w.sum()
    rng = np.random.default_rng(seed)
    assert tc.nucleus_sample(probs, 0.0, rng) == int(np.argmax(probs))


def test_ties_go_to_the_lower_temperature() -> None:
    probs = np.array([0.1, 0.3, 0.3, 0.3])
    assert tc.nucleus_support(probs, 0.0).tolist() == [1]
    assert tc.nucleus_support(probs, 0.5).tolist() == [1, 2]


@pytest.mark.parametrize("top_p", [0.3, 0.7, 0.9, 1.0])
def test_empirical_frequencies_match_the_truncated_distribution(top_p: float) -> None:
    probs = np.array([0.05, 0.3, 0.25, 0.0, 0.15, 0.2, 0.05])
    expected = tc.nucleus_distribution(probs, top_p)
    rng = np.random.default_rng(1234)
    draws = 40_000
    counts = np.bincount([tc.nucleus_sample(probs, top_p, rng) for _ in range(draws)], minlength=7)
    assert (counts[expected == 0] == 0).all()
    sigma = np.sqrt(expected * (1 - expected) / draws)
    assert (np.abs(counts / draws - expected) <= 5 * sigma + 1e-12).all(), (counts, expected)


def test_nucleus_distribution_is_a_renormalised_prefix() -> None:
    probs = np.array([0.1, 0.4, 0.2, 0.3])
    np.testing.assert_allclose(tc.nucleus_distribution(probs, 0.7), [0, 4 / 7, 0, 3 / 7])
    np.testing.assert_allclose(tc.nucleus_distribution(probs, 0.0), [0, 1, 0, 0])
    np.testing.assert_allclose(tc.nucleus_distribution(probs, 1.0), probs)
