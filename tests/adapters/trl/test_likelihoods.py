"""Per-position likelihoods and their masked means equal the kernel's row means."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from tampo_core.adapters.trl.likelihoods import (
    cat_loglik,
    cat_token_loglik,
    mean_over_mask,
    token_loglik_from_hidden,
)
from tampo_core.loglik import multi_temperature_loglik_from_hidden

TEMPS = (0.5, 1.0, 1.7)


def _inputs() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 6, 8, generator=generator)
    weight = torch.randn(13, 8, generator=generator)
    bias = torch.randn(13, generator=generator)
    tokens = torch.randint(0, 13, (4, 6), generator=generator)
    attended = torch.ones(4, 6, dtype=torch.bool)
    attended[0, 4:] = False
    attended[3] = False
    return hidden, weight, bias, tokens, attended


def test_masked_means_equal_the_kernels_row_means() -> None:
    hidden, weight, bias, tokens, attended = _inputs()
    recorded = token_loglik_from_hidden(hidden, weight, tokens, attended, TEMPS, bias, 2.0)
    assert torch.equal(recorded.recorded, attended)
    assert torch.isnan(recorded.values[~attended]).all()
    loss_mask = attended.clone()
    loss_mask[1, 2] = False  # a tool token: recorded, then masked out
    result = mean_over_mask(recorded, loss_mask)
    expected = multi_temperature_loglik_from_hidden(
        hidden, weight, tokens, TEMPS, mask=loss_mask, bias=bias, logit_scale=2.0
    )
    assert result.num_tokens.dtype == torch.int64
    assert result.num_tokens.tolist() == expected.num_tokens.tolist() == [4, 5, 6, 0]
    torch.testing.assert_close(result.loglik[:3], expected.loglik[:3], rtol=1e-6, atol=1e-6)


def test_a_nan_hidden_state_in_the_mask_stays_non_finite() -> None:
    hidden, weight, bias, tokens, attended = _inputs()
    hidden[2, 1] = torch.nan
    result = mean_over_mask(
        token_loglik_from_hidden(hidden, weight, tokens, attended, TEMPS, bias, 1.0), attended
    )
    assert torch.isnan(result.loglik[2]).all() and result.num_tokens[2] == 6
    assert torch.isfinite(result.loglik[:2]).all()


def test_a_loss_mask_outside_the_scored_positions_fails_loudly() -> None:
    hidden, weight, bias, tokens, attended = _inputs()
    recorded = token_loglik_from_hidden(hidden, weight, tokens, attended, TEMPS, bias, 1.0)
    with pytest.raises(RuntimeError, match=r"got 8 unscored position\(s\)"):
        mean_over_mask(recorded, torch.ones(4, 6, dtype=torch.bool))
    with pytest.raises(RuntimeError, match=r"expected shape \[4, 6\]"):
        mean_over_mask(recorded, torch.ones(4, 5, dtype=torch.bool))


def test_concatenation_keeps_rows_and_counts() -> None:
    hidden, weight, bias, tokens, attended = _inputs()
    parts = [
        token_loglik_from_hidden(hidden[r], weight, tokens[r], attended[r], TEMPS, bias, 1.0)
        for r in (slice(0, 1), slice(1, 4))
    ]
    whole = token_loglik_from_hidden(hidden, weight, tokens, attended, TEMPS, bias, 1.0)
    joined = cat_token_loglik(parts)
    assert torch.equal(joined.recorded, whole.recorded)
    torch.testing.assert_close(joined.values, whole.values, equal_nan=True)
    means = cat_loglik([mean_over_mask(p, p.recorded) for p in parts])
    torch.testing.assert_close(means.num_tokens, mean_over_mask(whole, attended).num_tokens)
