import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tampo_core as tc
from tampo_core.metrics import temperature_label
from tampo_core.reference import ReferenceTampo, reference_batch_advantage, reference_loglik

K = 10
finite = st.floats(-20, 0, allow_nan=False, allow_infinity=False)


@st.composite
def batches(draw: st.DrawFn, num_temperatures: int = K) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 12))
    loglik = draw(arrays(np.float64, (n, num_temperatures), elements=finite))
    advantages = draw(arrays(np.float64, (n,), elements=st.floats(-3, 3)))
    return loglik, advantages


def snapshot(policy: tc.TempMetaPolicy) -> str:
    return json.dumps(policy.state_dict(), sort_keys=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(batches(), min_size=1, max_size=6), st.sampled_from([0.01, 0.05, 0.5, 1.0]))
def test_fast_policy_matches_the_reference(batch_list: list, alpha: float) -> None:
    cfg = tc.TampoConfig(ema_alpha=alpha, warmup_steps=0)
    policy, reference = tc.TempMetaPolicy(config=cfg), ReferenceTampo(cfg)
    for loglik, advantages in batch_list:
        stats = policy.observe_loglik(loglik, advantages)
        np.testing.assert_allclose(
            stats.batch_advantage,
            reference_batch_advantage(loglik.tolist(), advantages.tolist()),
            atol=1e-12,
        )
        reference.update(loglik.tolist(), advantages.tolist())
        np.testing.assert_allclose(policy.ema, reference.ema, atol=1e-12)
        assert abs(np.ptp(policy.ema) - np.ptp(reference.ema)) < 1e-12
        if np.ptp(reference.ema) > 1e-9:
            np.testing.assert_allclose(policy.probs, reference.probs(), atol=1e-9)
            if _well_separated(np.array(reference.probs()), cfg.top_p):
                kept = tc.nucleus_support(policy.probs, cfg.top_p)
                assert set(kept.tolist()) == set(reference.nucleus())


def _well_separated(probs: np.ndarray, top_p: float, gap: float = 1e-9) -> bool:
    """No near-ties and no cumulative mass near top_p: rounding cannot change the nucleus."""
    ordered = np.sort(probs)[::-1]
    return bool(
        (np.diff(ordered) < -gap).all() and (np.abs(np.cumsum(ordered) - top_p) > gap).all()
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(batches(), min_size=1, max_size=5))
def test_pi_is_a_finite_probability_vector_ordered_like_the_ema(batch_list: list) -> None:
    policy = tc.TempMetaPolicy(warmup_steps=0)
    for loglik, advantages in batch_list:
        policy.observe_loglik(loglik, advantages)
        pi, ema = policy.probs, policy.ema
        assert pi.shape == (K,) and np.isfinite(pi).all() and (pi >= 0).all()
        assert abs(pi.sum() - 1.0) < 1e-12
        if np.ptp(ema) >= 1e-12:
            assert pi[np.argmin(ema)] == 0.0
            order = np.argsort(ema, kind="stable")
            assert (np.diff(pi[order]) >= -1e-15).all()
        else:
            np.testing.assert_allclose(pi, 1.0 / K)


@settings(max_examples=40, deadline=None)
@given(st.lists(batches(), min_size=1, max_size=4), st.floats(1e-3, 1e3))
def test_scaling_advantages_leaves_pi_unchanged(batch_list: list, scale: float) -> None:
    plain, scaled = tc.TempMetaPolicy(), tc.TempMetaPolicy()
    for loglik, advantages in batch_list:
        plain.observe_loglik(loglik, advantages)
        scaled.observe_loglik(loglik, advantages * scale)
    if np.ptp(plain.ema) > 1e-9:
        np.testing.assert_allclose(plain.probs, scaled.probs, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(batches(), st.randoms(use_true_random=False))
def test_permuting_the_batch_leaves_pi_unchanged(batch: tuple, rnd) -> None:
    loglik, advantages = batch
    perm = list(range(len(advantages)))
    rnd.shuffle(perm)
    a, b = tc.TempMetaPolicy(), tc.TempMetaPolicy()
    a.observe_loglik(loglik, advantages)
    b.observe_loglik(loglik[perm], advantages[perm])
    np.testing.assert_allclose(a.ema, b.ema, atol=1e-15)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(2, 6),
    st.data(),
)
def test_group_centred_advantages_give_temperature_advantages_summing_to_zero(
    groups: int, group_size: int, data: st.DataObject
) -> None:
    n = groups * group_size
    loglik = data.draw(arrays(np.float64, (n, K), elements=finite))
    rewards = data.draw(arrays(np.float64, (groups, group_size), elements=st.floats(0, 1)))
    advantages = (rewards - rewards.mean(axis=1, keepdims=True)).reshape(-1)
    stats = tc.TempMetaPolicy().observe_loglik(loglik, advantages)
    assert abs(stats.batch_advantage.sum()) < 1e-12


def test_worst_temperature_gets_zero_and_best_gets_the_most() -> None:
    policy = tc.TempMetaPolicy(warmup_steps=0)
    loglik = -np.abs(np.arange(K) - 7.0)[None, :].repeat(4, axis=0)  # preferred T = 1.3
    stats = policy.observe_loglik(loglik, [1.0, 1.0, -0.5, 0.25])
    assert stats.argmax_histogram.tolist() == [0] * 7 + [4] + [0] * 2
    assert stats.num_trajectories == 4 and stats.num_skipped == 0
    assert 1 <= stats.support_size <= K
    pi = policy.probs
    assert pi.argmax() == 7 and pi.min() == 0.0


def test_uniform_before_any_update_and_during_warmup() -> None:
    policy = tc.TempMetaPolicy(warmup_steps=3, seed=5)
    np.testing.assert_allclose(policy.probs, 1.0 / K)
    loglik = np.zeros((2, K))
    loglik[:, 0] = 1.0
    seen = set()
    for _ in range(3):
        assert policy.in_warmup
        seen.update(policy.sample() for _ in range(40))
        policy.observe_loglik(loglik, [1.0, 0.5])
    assert len(seen) == K  # uniform over all candidates while warming up
    assert not policy.in_warmup
    assert policy.probs[0] == 1.0
    assert {policy.sample() for _ in range(50)} == {0.6}


def test_draws_use_the_policys_own_generator_not_the_global_one() -> None:
    a, b = tc.TempMetaPolicy(seed=3), tc.TempMetaPolicy(seed=3)
    first = [a.sample() for _ in range(20)]
    np.random.seed(0)
    torch.manual_seed(0)
    np.random.rand(100)
    second = [b.sample() for _ in range(20)]
    assert first == second
    assert [tc.TempMetaPolicy(seed=4).sample() for _ in range(20)] != first


@settings(max_examples=20, deadline=None)
@given(st.lists(batches(), min_size=1, max_size=4), st.integers(0, 2**31), st.floats(0, 1))
def test_state_dict_round_trip_reproduces_the_following_samples(
    batch_list: list, seed: int, top_p: float
) -> None:
    cfg = tc.TampoConfig(seed=seed, top_p=top_p, warmup_steps=2)
    policy = tc.TempMetaPolicy(config=cfg)
    for loglik, advantages in batch_list:
        policy.sample()
        policy.observe_loglik(loglik, advantages)
    state = json.loads(json.dumps(policy.state_dict()))
    restored = tc.TempMetaPolicy(config=cfg)
    restored.load_state_dict(state)
    assert restored.metrics(detail=True) == policy.metrics(detail=True)
    assert [restored.sample() for _ in range(30)] == [policy.sample() for _ in range(30)]
    np.testing.assert_array_equal(restored.ema, policy.ema)


COMPACT_KEYS = {
    "tampo/temperature",
    "tampo/expected_temperature",
    "tampo/entropy",
    "tampo/support_size",
    "tampo/edge_fraction",
}


def test_metrics_are_a_flat_dict_of_floats() -> None:
    policy = tc.TempMetaPolicy(warmup_steps=0)
    policy.sample()
    policy.observe_loglik(np.linspace(-3, -1, K)[None, :].repeat(2, 0), [1.0, -1.0])
    metrics = policy.metrics(detail=True)
    for key in (
        "tampo/temperature",
        "tampo/prob/0.6",
        "tampo/prob/1.5",
        "tampo/entropy",
        "tampo/adv/1.0",
        "tampo/preferred/1.5",
        "tampo/support_size",
        "tampo/edge_fraction",
        "tampo/expected_temperature",
        "tampo/ema/0.7",
        "tampo/num_updates",
    ):
        assert key in metrics, key
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["tampo/preferred/1.5"] == 1.0
    assert metrics["tampo/edge_fraction"] == 1.0
    assert len(metrics) == 4 * K + 9


def test_metrics_default_is_compact_and_a_subset_of_the_detail() -> None:
    policy = tc.TempMetaPolicy(warmup_steps=0)
    assert set(policy.metrics()) == {"tampo/expected_temperature", "tampo/entropy"}
    policy.sample()
    policy.observe_loglik(np.linspace(-3, -1, K)[None, :].repeat(2, 0), [1.0, -1.0])
    compact, detail = policy.metrics(), policy.metrics(detail=True)
    assert set(compact) == COMPACT_KEYS
    assert compact.items() <= detail.items()
    np.testing.assert_allclose(
        compact["tampo/expected_temperature"], np.dot(policy.probs, policy.temperatures)
    )


def test_every_temperature_label_has_one_format() -> None:
    temps = (1e-4, 0.6, 1.0, 2.0, 1e4)
    policy = tc.TempMetaPolicy(temperatures=temps, warmup_steps=0)
    policy.observe_loglik(np.zeros((1, len(temps))), [1.0])
    labels = {k.removeprefix("tampo/prob/") for k in policy.metrics(detail=True) if "/prob/" in k}
    assert labels == {"0.0001", "0.6", "1.0", "2.0", "10000.0"}
    assert [temperature_label(t) for t in temps] == ["0.0001", "0.6", "1.0", "2.0", "10000.0"]
    close = tc.TempMetaPolicy(temperatures=(0.6, 0.6000001), warmup_steps=0).metrics(detail=True)
    assert len([k for k in close if "/prob/" in k]) == 2  # "{:g}" would merge these two


def test_skipped_trajectories_are_counted_not_averaged() -> None:
    policy = tc.TempMetaPolicy()
    loglik = np.array([np.linspace(-2, -1, K), [np.nan] * K, np.linspace(-1, -2, K)])
    stats = policy.observe_loglik(loglik, [1.0, 100.0, -1.0], num_tokens=[3, 0, 5])
    assert (stats.num_trajectories, stats.num_skipped) == (2, 1)
    expected = reference_batch_advantage([loglik[0].tolist(), loglik[2].tolist()], [1.0, -1.0])
    np.testing.assert_allclose(stats.batch_advantage, expected, atol=1e-15)


def test_all_empty_batch_is_refused() -> None:
    policy = tc.TempMetaPolicy()
    before = snapshot(policy)
    with pytest.raises(ValueError, match="batch: expected at least one trajectory with a valid"):
        policy.observe_loglik(np.full((2, K), np.nan), [1.0, 1.0], num_tokens=[0, 0])
    assert snapshot(policy) == before


BAD_LOGLIK_CALLS = [
    (np.full((2, K), np.nan), [1.0, 1.0], ValueError, r"loglik\[0\]: expected finite"),
    (
        np.zeros((0, K)),
        [],
        ValueError,
        r"loglik: expected at least one trajectory, got an empty batch",
    ),
    (np.zeros((2, K - 1)), [1.0, 1.0], ValueError, r"shape \[N, K\] with K = 10"),
    (np.zeros(K), [1.0], ValueError, r"got shape \[10\]"),
    (np.zeros((2, K)), [1.0], ValueError, r"shape \[N\] = \[2\].*got shape \[1\]"),
    (
        np.zeros((2, K)),
        [1.0, np.nan],
        ValueError,
        r"advantages: expected finite values \(no NaN or inf\), got nan at index 1",
    ),
    (
        np.zeros((2, K)),
        [1.0, np.inf],
        ValueError,
        r"advantages: expected finite values \(no NaN or inf\), got inf at index 1",
    ),
    (np.zeros((2, K)), [True, False], TypeError, "advantages: expected real numbers"),
    (np.zeros((2, K)), "ab", TypeError, "advantages: expected a torch.Tensor"),
    (np.zeros((2, K), dtype=bool), [1.0, 1.0], TypeError, "loglik: expected real numbers"),
    (
        np.array([[0.0] * (K - 1) + [np.inf]] * 2),
        [1.0, 1.0],
        ValueError,
        r"loglik\[0\]: expected finite",
    ),
    (
        np.array([[0.0] * (K - 1) + [np.nan]] * 2),
        [1.0, 1.0],
        ValueError,
        r"loglik\[0\]: expected finite",
    ),
    (
        torch.zeros(2, K, dtype=torch.complex64),
        [1.0, 1.0],
        TypeError,
        "loglik: expected a real-valued tensor",
    ),
]


@pytest.mark.parametrize(("loglik", "advantages", "error", "match"), BAD_LOGLIK_CALLS)
def test_invalid_observe_loglik_raises_and_leaves_state_byte_identical(
    loglik, advantages, error, match
) -> None:
    policy = tc.TempMetaPolicy(warmup_steps=0)
    policy.observe_loglik(np.linspace(-2, -1, K)[None, :], [1.0])
    policy.sample()
    before, ema_bytes = snapshot(policy), policy.ema.tobytes()
    with pytest.raises(error, match=match):
        policy.observe_loglik(loglik, advantages)
    assert snapshot(policy) == before and policy.ema.tobytes() == ema_bytes


def test_invalid_state_dict_is_refused_and_leaves_state_untouched() -> None:
    policy = tc.TempMetaPolicy(warmup_steps=0)
    policy.observe_loglik(np.linspace(-2, -1, K)[None, :], [1.0])
    good = policy.state_dict()
    before = snapshot(policy)
    other = tc.TempMetaPolicy(top_p=0.9).state_dict()
    broken_ema = {**good, "ema": [float("nan")] * K}
    short_ema = {**good, "ema": [0.0] * 3}
    for bad, match in [
        (other, r"config: expected this policy's config, got .*top_p"),
        (broken_ema, r"ema\[0\]: expected a finite real number, got nan"),
        (short_ema, "ema: expected 10 finite floats"),
        ({**good, "version": 99}, "version: expected the int 1"),
        ({**good, "num_updates": -1}, "num_updates: expected an int >= 0, got -1"),
        ({k: v for k, v in good.items() if k != "rng"}, "rng: expected this field"),
        ("nope", "state: expected a dict"),
    ]:
        with pytest.raises(ValueError, match=match):
            policy.load_state_dict(bad)  # type: ignore[arg-type]
        assert snapshot(policy) == before


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([1.0, 0.7, 1.3]))
def test_observe_on_logits_matches_the_reference_pipeline(seed: int, source_t: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 4, 6, generator=gen) * 4
    tokens = torch.randint(0, 6, (3, 4), generator=gen)
    mask = torch.rand(3, 4, generator=gen) > 0.3
    mask[:, 0] = True
    advantages = torch.randn(3, generator=gen, dtype=torch.float64)
    cfg = tc.TampoConfig(temperatures=(0.3, 0.8, 1.0, 2.5), warmup_steps=0)
    policy, reference = tc.TempMetaPolicy(config=cfg), ReferenceTampo(cfg)
    policy.observe(
        logits / source_t, advantages, tokens=tokens, mask=mask, source_temperature=source_t
    )
    loglik = reference_loglik(
        logits.double().tolist(), tokens.tolist(), mask.tolist(), cfg.temperatures
    )
    reference.update(loglik, advantages.tolist())
    np.testing.assert_allclose(policy.ema, reference.ema, atol=1e-7)


def test_observe_skips_empty_rows_and_refuses_nan_logits() -> None:
    logits = torch.randn(3, 4, 6)
    tokens = torch.randint(0, 6, (3, 4))
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    policy = tc.TempMetaPolicy()
    stats = policy.observe(logits, [1.0, 5.0, -1.0], tokens=tokens, mask=mask)
    assert (stats.num_trajectories, stats.num_skipped) == (2, 1)
    before = snapshot(policy)
    poisoned = logits.clone()
    poisoned[2, 1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"loglik\[2\]: expected finite likelihoods"):
        policy.observe(poisoned, [1.0, 5.0, -1.0], tokens=tokens, mask=mask)
    with pytest.raises(ValueError, match=r"shape \[N\] = \[3\]"):
        policy.observe(logits, [1.0, 5.0], tokens=tokens, mask=mask)
    with pytest.raises(ValueError, match=r"shape \[B, L, V\]"):
        policy.observe(logits[0], [1.0], tokens=tokens[0], mask=mask[0])
    with pytest.raises(ValueError, match="source_temperature: expected a finite real number > 0"):
        policy.observe(logits, [1.0, 5.0, -1.0], tokens=tokens, source_temperature=0.0)
    with pytest.raises((ValueError, TypeError), match="tokens"):
        policy.observe(logits, [1.0, 5.0, -1.0], tokens=tokens.float(), mask=mask)
    with pytest.raises((ValueError, TypeError), match="mask"):
        policy.observe(logits, [1.0, 5.0, -1.0], tokens=tokens, mask=mask[:, :2])
    assert snapshot(policy) == before
