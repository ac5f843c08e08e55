"""The driver-side join of likelihoods and advantages (plain torch; runs without verl too)."""

from __future__ import annotations

import pytest
import torch

from tampo_core.adapters.verl import _seam
from tampo_core.adapters.verl.join import align_loglik, trajectory_advantages


def test_trajectory_advantage_is_the_first_response_token_and_zero_without_tokens():
    advantages = torch.tensor([[0.5, 0.5, 0.0], [-1.0, -1.0, -1.0], [3.0, 3.0, 3.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]])
    assert trajectory_advantages(advantages, mask).tolist() == [0.5, -1.0, 0.0]
    with pytest.raises(ValueError, match="same"):
        trajectory_advantages(advantages, mask[:, :2])


def test_align_reorders_by_content_and_refuses_unknown_samples():
    input_ids = torch.tensor([[1, 2, 3], [4, 5, 6], [1, 2, 3], [7, 8, 9]])
    keys = _seam.row_keys(input_ids)
    loglik = torch.arange(8, dtype=torch.float32).view(4, 2)
    counts = torch.tensor([1, 2, 3, 4])
    same = align_loglik(loglik, counts, keys, keys)
    assert same[0] is loglik and same[1] is counts
    order = [3, 1, 0, 2]
    moved, moved_counts = align_loglik(loglik, counts, keys, [keys[i] for i in order])
    assert moved[:, 0].tolist() == [6.0, 2.0, 4.0, 0.0] or moved[:, 0].tolist() == [
        6.0,
        2.0,
        0.0,
        4.0,
    ]
    assert moved_counts[:2].tolist() == [4, 2]
    assert sorted(moved_counts[2:].tolist()) == [1, 3], "duplicates keep one row each"
    with pytest.raises(RuntimeError, match="no likelihoods"):
        align_loglik(loglik, counts, keys, _seam.row_keys(input_ids + 1))
    with pytest.raises(RuntimeError, match="did not see this batch"):
        align_loglik(loglik, counts, keys, keys[:3])
