"""The options beyond the paper: each reduces to the paper at its default and matches the
reference written from its equation."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydantic import ValidationError

import tampo_core as tc
from tampo_core.reference import ReferenceTampo, reference_nucleus

K = 10
finite = st.floats(-20, 0, allow_nan=False, allow_infinity=False)


@st.composite
def counted_batches(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Likelihoods [N, K], advantages, token counts >= 1 and rewards [N]."""
    n = draw(st.integers(1, 12))
    loglik = draw(arrays(np.float64, (n, K), elements=finite))
    advantages = draw(arrays(np.float64, (n,), elements=st.floats(-3, 3)))
    num_tokens = draw(arrays(np.int64, (n,), elements=st.integers(1, 200)))
    rewards = draw(arrays(np.float64, (n,), elements=st.sampled_from([0.0, 0.5, 1.0])))
    return loglik, advantages, num_tokens, rewards


def snapshot(policy: tc.TempMetaPolicy) -> str:
    return json.dumps(policy.state_dict(), sort_keys=True)


def test_option_defaults_are_the_paper() -> None:
    cfg = tc.TampoConfig()
    assert (cfg.likelihood, cfg.sparsemax_scale) == ("mean", 1.0)
    assert (cfg.warmup, cfg.warmup_temperature, cfg.meta_advantage) == ("uniform", None, "given")


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"likelihood": "max"}, ["likelihood", "'mean' or 'sum'"]),
        ({"sparsemax_scale": 0.0}, ["sparsemax_scale: expected a finite real number > 0", "0.0"]),
        ({"sparsemax_scale": -2}, ["sparsemax_scale: expected a finite real number > 0", "-2"]),
        ({"sparsemax_scale": float("inf")}, ["sparsemax_scale: expected a finite", "inf"]),
        ({"warmup": "linear"}, ["warmup", "'uniform' or 'fixed'"]),
        ({"warmup": "fixed"}, ["warmup_temperature: expected one of the candidate", "got None"]),
        (
            {"warmup": "fixed", "warmup_temperature": 1.05},
            ["warmup_temperature: expected one of the candidate", "got 1.05"],
        ),
        ({"warmup_temperature": 1.0}, ["warmup_temperature: expected None with warmup='uniform'"]),
        ({"meta_advantage": "batch"}, ["meta_advantage", "'given' or 'batch_baseline'"]),
    ],
)
def test_invalid_options_name_field_value_and_rule(kwargs: dict, fragments: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        tc.TampoConfig(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@settings(max_examples=40, deadline=None)
@given(st.lists(counted_batches(), min_size=1, max_size=4))
def test_explicit_defaults_and_unit_counts_reduce_to_the_paper_bit_for_bit(batch_list) -> None:
    paper = tc.TempMetaPolicy(warmup_steps=0)
    explicit = tc.TempMetaPolicy(
        config=tc.TampoConfig(
            warmup_steps=0, likelihood="mean", sparsemax_scale=1.0, meta_advantage="given"
        )
    )
    summed_unit = tc.TempMetaPolicy(config=tc.TampoConfig(warmup_steps=0, likelihood="sum"))
    for loglik, advantages, num_tokens, _ in batch_list:
        paper.observe_loglik(loglik, advantages)
        explicit.observe_loglik(loglik, advantages, num_tokens=num_tokens)
        summed_unit.observe_loglik(loglik, advantages, num_tokens=np.ones_like(num_tokens))
    assert paper.ema.tobytes() == explicit.ema.tobytes() == summed_unit.ema.tobytes()
    assert paper.metrics() == explicit.metrics()


@settings(max_examples=30, deadline=None)
@given(st.lists(counted_batches(), min_size=1, max_size=4), st.integers(1, 50))
def test_sum_with_equal_lengths_is_the_mean_scaled_by_that_length(batch_list, length) -> None:
    summed = tc.TempMetaPolicy(config=tc.TampoConfig(likelihood="sum"))
    scaled = tc.TempMetaPolicy(config=tc.TampoConfig(sparsemax_scale=float(length)))
    for loglik, advantages, num_tokens, _ in batch_list:
        summed.observe_loglik(loglik, advantages, num_tokens=np.full_like(num_tokens, length))
        scaled.observe_loglik(loglik, advantages)
    np.testing.assert_allclose(summed.ema, scaled.ema, rtol=1e-12, atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(counted_batches(), min_size=1, max_size=4),
    st.sampled_from(["mean", "sum"]),
    st.sampled_from([0.1, 1.0, 10.0, 100.0]),
    st.sampled_from(["given", "batch_baseline"]),
)
def test_options_match_the_reference(batch_list, likelihood, scale, meta_advantage) -> None:
    cfg = tc.TampoConfig(
        warmup_steps=0,
        likelihood=likelihood,
        sparsemax_scale=scale,
        meta_advantage=meta_advantage,
    )
    policy, reference = tc.TempMetaPolicy(config=cfg), ReferenceTampo(cfg)
    largest = 1.0  # sparsemax rounds relative to the magnitude of its inputs
    for loglik, advantages, num_tokens, rewards in batch_list:
        given_rewards = rewards if meta_advantage == "batch_baseline" else None
        policy.observe_loglik(loglik, advantages, num_tokens=num_tokens, rewards=given_rewards)
        reference.update(
            loglik.tolist(), advantages.tolist(), num_tokens.tolist(), rewards.tolist()
        )
        factor = scale * (float(num_tokens.max()) if likelihood == "sum" else 1.0)
        largest = max(largest, float(np.abs(loglik).max()) * factor)
        np.testing.assert_allclose(policy.ema, reference.ema, rtol=1e-9, atol=1e-13 * largest)
    if np.ptp(reference.ema) > 1e-9 * largest:
        np.testing.assert_allclose(policy.probs, reference.probs(), atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(counted_batches(), st.floats(1.0, 1e3))
def test_larger_scale_never_grows_the_support_and_keeps_the_preferred_temperature(
    batch, scale: float
) -> None:
    loglik, advantages, num_tokens, _ = batch
    plain = tc.TempMetaPolicy().observe_loglik(loglik, advantages, num_tokens=num_tokens)
    sharp = tc.TempMetaPolicy(config=tc.TampoConfig(sparsemax_scale=scale)).observe_loglik(
        loglik, advantages, num_tokens=num_tokens
    )
    summed = tc.TempMetaPolicy(config=tc.TampoConfig(likelihood="sum")).observe_loglik(
        loglik, advantages, num_tokens=num_tokens
    )
    assert sharp.support_size <= plain.support_size + 1e-12
    assert summed.support_size <= plain.support_size + 1e-12
    assert sharp.argmax_histogram.tolist() == plain.argmax_histogram.tolist()
    assert summed.argmax_histogram.tolist() == plain.argmax_histogram.tolist()


def test_sum_needs_token_counts_and_takes_them_from_the_kernel() -> None:
    policy = tc.TempMetaPolicy(config=tc.TampoConfig(likelihood="sum"))
    before = snapshot(policy)
    with pytest.raises(ValueError, match="num_tokens: expected the \\[N\\] valid-token counts"):
        policy.observe_loglik(np.zeros((2, K)), [1.0, -1.0])
    assert snapshot(policy) == before
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=gen) * 3
    tokens = torch.randint(0, 7, (3, 5), generator=gen)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, 2:] = False
    advantages = torch.tensor([1.0, -0.5, 0.25])
    stats = policy.observe(logits, advantages, tokens=tokens, mask=mask)
    loglik = tc.multi_temperature_loglik(logits, tokens, tc.PAPER_TEMPERATURES, mask=mask)
    reference = ReferenceTampo(policy.config)
    reference.update(
        loglik.loglik.double().tolist(), advantages.tolist(), loglik.num_tokens.tolist()
    )
    np.testing.assert_allclose(policy.ema, reference.ema, rtol=1e-12)
    assert stats.num_trajectories == 3


def test_a_scale_that_overflows_is_refused_and_leaves_the_state() -> None:
    policy = tc.TempMetaPolicy(config=tc.TampoConfig(sparsemax_scale=1e308))
    before = snapshot(policy)
    with pytest.raises(ValueError, match=r"sparsemax input\[0\]: expected finite values"):
        policy.observe_loglik(np.full((1, K), -10.0), [1.0])
    assert snapshot(policy) == before


def test_fixed_warmup_returns_the_fixed_temperature_without_using_the_generator() -> None:
    data = [(np.linspace(-2, -1, K)[None, :].repeat(2, 0), [1.0, -0.5])] * 2
    fixed = tc.TempMetaPolicy(
        config=tc.TampoConfig(warmup="fixed", warmup_temperature=1.2, warmup_steps=2, seed=4)
    )
    none = tc.TempMetaPolicy(warmup_steps=0, seed=4)
    for loglik, advantages in data:
        assert fixed.in_warmup
        assert {fixed.sample() for _ in range(30)} == {1.2}
        fixed.observe_loglik(loglik, advantages)
        none.observe_loglik(loglik, advantages)
    assert not fixed.in_warmup
    assert [fixed.sample() for _ in range(40)] == [none.sample() for _ in range(40)]
    assert ReferenceTampo(fixed.config).sample_support() == [6]


@pytest.mark.parametrize("warmup", ["uniform", "fixed"])
def test_zero_warmup_steps_use_the_meta_policy_from_the_first_draw(warmup: str) -> None:
    kwargs = {"warmup_temperature": 1.5} if warmup == "fixed" else {}
    cfg = tc.TampoConfig(warmup_steps=0, warmup=warmup, **kwargs)
    policy, reference = tc.TempMetaPolicy(config=cfg), ReferenceTampo(cfg)
    assert not policy.in_warmup
    # pi_0 is uniform; its 0.7-nucleus is the 7 lowest temperatures (ties to the lower one).
    allowed = {cfg.temperatures[k] for k in reference.sample_support()}
    assert reference.sample_support() == reference_nucleus([1.0 / K] * K, 0.7) == list(range(7))
    seen = {policy.sample() for _ in range(200)}
    assert seen == allowed and 1.5 not in seen


def test_uniform_warmup_draws_are_unchanged_by_the_option() -> None:
    paper = tc.TempMetaPolicy(seed=9)
    explicit = tc.TempMetaPolicy(config=tc.TampoConfig(seed=9, warmup="uniform"))
    assert [paper.sample() for _ in range(50)] == [explicit.sample() for _ in range(50)]


def test_batch_baseline_sees_groups_whose_rewards_are_all_equal() -> None:
    # Two groups of 3: all solved (preferring T = 0.6), all failed (preferring T = 1.5).
    cold, hot = -np.abs(np.arange(K) - 0.0), -np.abs(np.arange(K) - 9.0)
    loglik = np.stack([cold] * 3 + [hot] * 3) * 0.05
    rewards = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    group_advantages = np.zeros(6)  # (r - group mean) / std: all zero
    given = tc.TempMetaPolicy(warmup_steps=0).observe_loglik(loglik, group_advantages)
    assert not given.batch_advantage.any()
    policy = tc.TempMetaPolicy(
        config=tc.TampoConfig(warmup_steps=0, meta_advantage="batch_baseline")
    )
    stats = policy.observe_loglik(loglik, group_advantages, rewards=rewards)
    assert stats.batch_advantage.argmax() == 0 and stats.batch_advantage.argmin() == K - 1
    assert abs(stats.batch_advantage.sum()) < 1e-12  # centred over the batch
    assert policy.probs.argmax() == 0 and policy.probs[-1] == 0.0


def test_batch_baseline_ignores_skipped_rows_and_checks_its_rewards() -> None:
    policy = tc.TempMetaPolicy(config=tc.TampoConfig(meta_advantage="batch_baseline"))
    loglik = np.array([np.linspace(-2, -1, K), [np.nan] * K, np.linspace(-1, -2, K)])
    stats = policy.observe_loglik(loglik, [0.0] * 3, num_tokens=[3, 0, 5], rewards=[1.0, 50, 0])
    reference = ReferenceTampo(policy.config)
    reference.update([loglik[0].tolist(), loglik[2].tolist()], [0.0, 0.0], None, [1.0, 0.0])
    np.testing.assert_allclose(stats.batch_advantage * 0.05, reference.ema, rtol=1e-12)
    before = snapshot(policy)
    for rewards, error, match in [
        (None, ValueError, "rewards: expected \\[N\\] rewards with meta_advantage='batch_"),
        ([1.0, 0.0], ValueError, r"rewards: expected shape \[N\] = \[3\]"),
        ([1.0, np.nan, 0.0], ValueError, r"rewards: expected finite values.*got nan at index 1"),
        ([1.0, 0.0, 1e101], ValueError, r"rewards: expected values with \|x\| <= 1e\+100"),
    ]:
        with pytest.raises(error, match=match):
            policy.observe_loglik(loglik, [0.0] * 3, num_tokens=[3, 0, 5], rewards=rewards)
    assert snapshot(policy) == before
    paper = tc.TempMetaPolicy()
    with pytest.raises(ValueError, match="rewards: expected None with meta_advantage='given'"):
        paper.observe_loglik(loglik[:1], [1.0], rewards=[1.0])
    assert paper.num_updates == 0


def test_state_round_trips_with_options_and_refuses_another_option_set() -> None:
    cfg = tc.TampoConfig(
        likelihood="sum",
        sparsemax_scale=3.0,
        warmup="fixed",
        warmup_temperature=0.9,
        warmup_steps=1,
        meta_advantage="batch_baseline",
    )
    policy = tc.TempMetaPolicy(config=cfg)
    policy.sample()
    loglik = np.linspace(-2, -1, K)[None, :].repeat(2, 0)
    policy.observe_loglik(loglik, [0.0, 0.0], num_tokens=[4, 6], rewards=[1.0, 0.0])
    restored = tc.TempMetaPolicy(config=cfg)
    restored.load_state_dict(json.loads(json.dumps(policy.state_dict())))
    assert snapshot(restored) == snapshot(policy)
    assert [restored.sample() for _ in range(20)] == [policy.sample() for _ in range(20)]
    with pytest.raises(ValueError, match=r"config.*likelihood"):
        tc.TempMetaPolicy(config=cfg.model_copy(update={"likelihood": "mean"})).load_state_dict(
            policy.state_dict()
        )


WORLD = 2


def _rank_batch(rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(40 + rank)
    n = 5 + rank
    return (
        -rng.gamma(2.0, 1.0, size=(n, K)),
        rng.normal(size=n),
        rng.integers(1, 30, size=n),
        rng.integers(0, 2, size=n).astype(np.float64),
    )


BASELINE_SUM = tc.TampoConfig(meta_advantage="batch_baseline", likelihood="sum", warmup_steps=0)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        policy = tc.TempMetaPolicy(config=BASELINE_SUM)
        loglik, advantages, num_tokens, rewards = _rank_batch(rank)
        policy.observe_loglik(loglik, advantages, num_tokens=num_tokens, rewards=rewards)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(policy.ema.tolist()))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_batch_baseline_is_global_across_ranks(tmp_path: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    emas = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert emas[0] == emas[1]
    parts = [_rank_batch(r) for r in range(WORLD)]
    single = tc.TempMetaPolicy(config=BASELINE_SUM)
    single.observe_loglik(
        *(np.concatenate([p[i] for p in parts]) for i in range(2)),
        num_tokens=np.concatenate([p[2] for p in parts]),
        rewards=np.concatenate([p[3] for p in parts]),
    )
    np.testing.assert_allclose(emas[0], single.ema, rtol=1e-12, atol=1e-15)
