import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tampo_core as tc
from tampo_core.reference import reference_sparsemax

rows = arrays(
    np.float64,
    st.tuples(st.integers(1, 5), st.integers(1, 12)),
    elements=st.floats(-50, 50, allow_nan=False, allow_infinity=False),
)


@given(rows)
def test_sparsemax_lands_on_the_simplex(x: np.ndarray) -> None:
    p = tc.sparsemax(x)
    assert p.shape == x.shape and p.dtype == np.float64
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)


@given(rows, st.floats(-1e3, 1e3))
def test_sparsemax_is_shift_invariant(x: np.ndarray, shift: float) -> None:
    np.testing.assert_allclose(tc.sparsemax(x + shift), tc.sparsemax(x), atol=1e-9)


@given(rows)
def test_sparsemax_matches_reference_and_torch(x: np.ndarray) -> None:
    expected = np.array([reference_sparsemax(row.tolist()) for row in x])
    np.testing.assert_allclose(tc.sparsemax(x), expected, atol=1e-12)
    np.testing.assert_allclose(tc.sparsemax(torch.from_numpy(x)).numpy(), expected, atol=1e-12)


@given(rows)
def test_sparsemax_keeps_order_and_gives_the_argmax_the_most(x: np.ndarray) -> None:
    p = tc.sparsemax(x)
    top = x.argmax(axis=-1)
    assert (p[np.arange(len(x)), top] == p.max(axis=-1)).all()
    assert (p[np.arange(len(x)), top] > 0).all()


def test_sparsemax_known_values() -> None:
    np.testing.assert_allclose(tc.sparsemax(np.array([1.0, 0.0, -5.0])), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(tc.sparsemax(np.array([0.1, 0.0])), [0.55, 0.45])
    np.testing.assert_allclose(tc.sparsemax(np.zeros(4)), [0.25] * 4)


def test_sparsemax_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        tc.sparsemax([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating"):
        tc.sparsemax(np.array([1, 2]))
    with pytest.raises(ValueError, match="K >= 1"):
        tc.sparsemax(np.zeros((2, 0)))
    with pytest.raises(TypeError, match="floating"):
        tc.sparsemax(torch.tensor([1, 2]))


@pytest.mark.parametrize(
    ("row", "shown"),
    [
        ([1.0, np.nan, 0.0], "nan"),
        ([1.0, np.inf, 0.0], "inf"),
        ([-np.inf, -np.inf, -np.inf], "-inf"),
    ],
)
@pytest.mark.parametrize("to_input", [np.array, torch.tensor], ids=["numpy", "torch"])
def test_sparsemax_refuses_nan_posinf_and_all_neginf_rows_alike(row, shown, to_input) -> None:
    x = to_input([[0.0, 1.0, 2.0], row])
    before = x.copy() if isinstance(x, np.ndarray) else x.clone()
    with pytest.raises(
        ValueError, match=rf"x: expected finite scores .*, got {shown} at index \[1, "
    ):
        tc.sparsemax(x)
    assert np.array_equal(np.asarray(x), np.asarray(before), equal_nan=True)


@pytest.mark.parametrize("to_input", [np.array, torch.tensor], ids=["numpy", "torch"])
def test_sparsemax_gives_neginf_scores_zero_probability(to_input) -> None:
    p = tc.sparsemax(to_input([[2.0, -np.inf, 2.0], [0.3, 0.1, -np.inf]]))
    np.testing.assert_allclose(np.asarray(p), [[0.5, 0.0, 0.5], [0.6, 0.4, 0.0]])


def test_sparsemax_refuses_meta_tensors() -> None:
    with pytest.raises(
        ValueError, match=r"x: expected a tensor .* with data, got a tensor on 'meta'"
    ):
        tc.sparsemax(torch.zeros(2, 3, device="meta"))
