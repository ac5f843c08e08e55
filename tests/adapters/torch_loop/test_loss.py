"""The clipped policy loss uses log-probs at the sampling temperature."""

from __future__ import annotations

import pytest
import torch

from tampo_core.adapters.torch_loop import policy_loss, token_logprobs


def _batch(
    seed: int = 0, b: int = 5, n: int = 6, v: int = 9
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, n, v, generator=g) * 2.0
    tokens = torch.randint(0, v, (b, n), generator=g)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, 3:] = False
    mask[2, 1:] = False
    adv = torch.randn(b, generator=g)
    return logits, tokens, mask, adv


@pytest.mark.parametrize("t", [0.6, 1.0, 1.5])
def test_token_logprobs_are_log_softmax_of_logits_over_t(t: float) -> None:
    logits, tokens, _, _ = _batch()
    want = torch.log_softmax(logits.double() / t, -1).gather(-1, tokens[..., None])[..., 0]
    torch.testing.assert_close(
        token_logprobs(logits, tokens, t).double(), want, atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("t", [0.6, 1.3])
def test_on_policy_gradient_is_the_policy_gradient_at_the_sampling_temperature(t: float) -> None:
    logits, tokens, mask, adv = _batch()
    z = logits.clone().requires_grad_(True)
    policy_loss(z, tokens, mask, adv, t).loss.backward()
    z_ref = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(z_ref / t, -1).gather(-1, tokens[..., None])[..., 0]
    (-(adv[:, None] * logp * mask).sum() / mask.sum()).backward()
    torch.testing.assert_close(z.grad, z_ref.grad, atol=1e-6, rtol=1e-5)
    z_one = logits.clone().requires_grad_(True)
    policy_loss(z_one, tokens, mask, adv, 1.0).loss.backward()
    assert (z_one.grad - z.grad).abs().max() > 1e-3


def test_clipping_zeroes_the_gradient_outside_the_trust_region() -> None:
    logits, tokens, mask, _ = _batch()
    adv = torch.ones(logits.shape[0])
    logp = token_logprobs(logits, tokens, 1.0)
    old = logp - 0.5  # ratio = e^0.5 > 1.2 everywhere: positive advantages are clipped
    z = logits.clone().requires_grad_(True)
    out = policy_loss(z, tokens, mask, adv, 1.0, old_logprobs=old)
    out.loss.backward()
    assert out.clip_fraction == pytest.approx(1.0)
    assert z.grad.abs().max() == 0.0
    z2 = logits.clone().requires_grad_(True)
    wide = policy_loss(z2, tokens, mask, adv, 1.0, old_logprobs=old, clip_high=1.0)
    wide.loss.backward()
    assert wide.clip_fraction == 0.0 and z2.grad.abs().max() > 0.0


def test_aggregations_and_kl() -> None:
    logits, tokens, mask, adv = _batch()
    per_tok = -(adv[:, None] * torch.ones_like(mask, dtype=torch.float32))
    m = mask.float()
    token_mean = policy_loss(logits, tokens, mask, adv, 1.0).loss
    seq_mean = policy_loss(logits, tokens, mask, adv, 1.0, aggregation="sequence_mean").loss
    const = policy_loss(
        logits, tokens, mask, adv, 1.0, aggregation="constant_norm", max_len=10
    ).loss
    torch.testing.assert_close(token_mean, (per_tok * m).sum() / m.sum())
    torch.testing.assert_close(seq_mean, ((per_tok * m).sum(1) / m.sum(1)).mean())
    torch.testing.assert_close(const, (per_tok * m).sum() / (logits.shape[0] * 10))
    ref = token_logprobs(logits, tokens, 1.0) - 0.3
    with_kl = policy_loss(logits, tokens, mask, adv, 1.0, ref_logprobs=ref, kl_coef=0.1)
    k3 = torch.exp(torch.tensor(-0.3)) + 0.3 - 1.0
    assert with_kl.kl == pytest.approx(float(k3), rel=1e-4)
    torch.testing.assert_close(with_kl.loss, token_mean + 0.1 * k3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"aggregation": "sum"}, "aggregation"),
        ({"advantages": torch.zeros(3)}, "advantages"),
        ({"mask": torch.ones(5, 2, dtype=torch.bool)}, "mask"),
    ],
)
def test_bad_input_raises(kwargs: dict[str, object], match: str) -> None:
    logits, tokens, mask, adv = _batch()
    args = {"mask": mask, "advantages": adv, "temperature": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        policy_loss(logits, tokens, **args)
