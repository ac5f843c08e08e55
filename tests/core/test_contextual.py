"""ContextualTempMetaPolicy: per-bucket TAMPO states equal independent policies on disjoint
data; the pooled back-off, warm-up, state and cross-rank sync; the difficulty bucketer."""

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

import tampo_core as tc
from tampo_core import distributed
from tampo_core.contextual import ContextualTempMetaPolicy
from tampo_core.difficulty import DifficultyBucketer

K = 10
LABELS = ("easy", 3, "hard")
finite = st.floats(-20, 0, allow_nan=False, allow_infinity=False)


@st.composite
def labelled_batches(draw: st.DrawFn) -> tuple:
    """Likelihoods [N, K], advantages, counts (some 0), rewards and one label per row."""
    n = draw(st.integers(1, 14))
    loglik = draw(arrays(np.float64, (n, K), elements=finite))
    advantages = draw(arrays(np.float64, (n,), elements=st.floats(-3, 3)))
    counts = draw(arrays(np.int64, (n,), elements=st.sampled_from([0, 1, 4, 9, 30])))
    counts[draw(st.integers(0, n - 1))] = 5  # at least one counted trajectory
    rewards = draw(arrays(np.float64, (n,), elements=st.sampled_from([0.0, 1.0])))
    labels = draw(st.lists(st.sampled_from(LABELS), min_size=n, max_size=n))
    return loglik, advantages, counts, rewards, labels


def snapshot(policy: ContextualTempMetaPolicy) -> str:
    return json.dumps(policy.state_dict(), sort_keys=True)


OPTION_SETS = [
    {},
    {"likelihood": "sum", "sparsemax_scale": 3.0},
    {"meta_advantage": "batch_baseline"},
    {"meta_advantage": "batch_baseline", "likelihood": "sum", "ema_alpha": 0.3},
]


@settings(max_examples=60, deadline=None)
@given(st.lists(labelled_batches(), min_size=1, max_size=5), st.sampled_from(OPTION_SETS))
def test_bucket_states_equal_independent_policies_on_disjoint_data(batch_list, options) -> None:
    cfg = tc.TampoConfig(warmup_steps=0, **options)
    policy = ContextualTempMetaPolicy(LABELS, config=cfg)
    pooled = tc.TempMetaPolicy(config=cfg)
    alone = {label: tc.TempMetaPolicy(config=cfg) for label in LABELS}
    baseline = cfg.meta_advantage == "batch_baseline"
    exact = not baseline  # the baseline is summed in another order: equal to rounding
    for loglik, advantages, counts, rewards, labels in batch_list:
        rw = rewards if baseline else None
        stats = policy.observe_loglik(
            loglik, advantages, buckets=labels, num_tokens=counts, rewards=rw
        )
        pooled.observe_loglik(loglik, advantages, num_tokens=counts, rewards=rw)
        for label in LABELS:
            rows = np.array([x == label for x in labels])
            if (counts[rows] > 0).any():
                alone[label].observe_loglik(
                    loglik[rows],
                    advantages[rows],
                    num_tokens=counts[rows],
                    rewards=None if rw is None else rw[rows],
                )
            else:
                assert stats.buckets[label] is None
    for label, independent in [(None, pooled), *alone.items()]:
        assert policy.num_updates(label) == independent.num_updates
        if exact:
            assert policy.ema(label).tobytes() == independent.ema.tobytes()
        else:
            np.testing.assert_allclose(policy.ema(label), independent.ema, rtol=1e-9, atol=1e-12)
        mine, theirs = policy.last_stats(label), independent.last_stats
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert mine.num_trajectories == theirs.num_trajectories
            assert mine.num_skipped == theirs.num_skipped
            assert mine.support_size == pytest.approx(theirs.support_size, abs=1e-12)
            assert mine.argmax_histogram.tolist() == theirs.argmax_histogram.tolist()


def _preferring(index: int, n: int) -> np.ndarray:
    return np.stack([-np.abs(np.arange(K) - index) * 0.05] * n)


def test_buckets_back_off_to_the_pooled_distribution_until_min_updates() -> None:
    cfg = tc.TampoConfig(warmup_steps=0, top_p=0.0)
    policy = ContextualTempMetaPolicy(["easy", "hard"], config=cfg, min_bucket_updates=2)
    # easy: the positive-advantage trajectory prefers 0.6; hard: prefers 1.5.
    loglik = np.concatenate([_preferring(0, 2), _preferring(9, 2), _preferring(9, 1)])
    advantages = [1.0, -1.0, 1.0, -1.0, 2.0]
    labels = ["easy", "easy", "hard", "hard", "hard"]
    loglik[1], loglik[3] = _preferring(9, 1)[0], _preferring(0, 1)[0]
    for step in range(3):
        assert policy.backs_off("easy") == (step < 2)
        if step < 2:
            np.testing.assert_array_equal(policy.sampling_probs("hard"), policy.probs())
        policy.observe_loglik(loglik, advantages, buckets=labels)
    assert policy.probs("easy").argmax() == 0 and policy.probs("hard").argmax() == K - 1
    assert policy.sample(["easy", "hard", "hard", "easy"]) == [0.6, 1.5, 1.5, 0.6]
    assert policy.last_temperatures == [0.6, 1.5, 1.5, 0.6]
    metrics = policy.metrics()
    assert metrics["tampo/bucket/easy/backs_off"] == 0.0
    hot, cold = (metrics[f"tampo/bucket/{b}/expected_temperature"] for b in ("hard", "easy"))
    assert hot > 1.2 > 0.9 > cold
    assert all(isinstance(v, float) for v in metrics.values())
    always_pooled = ContextualTempMetaPolicy(["easy", "hard"], config=cfg, min_bucket_updates=99)
    for _ in range(3):
        always_pooled.observe_loglik(loglik, advantages, buckets=labels)
    pooled_t = cfg.temperatures[int(always_pooled.probs().argmax())]
    assert always_pooled.sample(["easy", "hard"]) == [pooled_t, pooled_t]


def test_warmup_follows_the_config_for_every_group() -> None:
    uniform = ContextualTempMetaPolicy([0, 1], config=tc.TampoConfig(warmup_steps=1, seed=2))
    assert uniform.in_warmup
    assert len(set(uniform.sample([0, 1] * 100))) == K
    fixed_cfg = tc.TampoConfig(warmup_steps=1, warmup="fixed", warmup_temperature=1.1)
    fixed = ContextualTempMetaPolicy([0, 1], config=fixed_cfg, min_bucket_updates=0)
    assert set(fixed.sample([0, 1, 1])) == {1.1}
    fixed.observe_loglik(_preferring(0, 2), [1.0, -1.0], buckets=[0, 1])
    assert not fixed.in_warmup


def test_state_is_one_json_document_that_round_trips_exactly() -> None:
    cfg = tc.TampoConfig(warmup_steps=1, seed=7, meta_advantage="batch_baseline")
    policy = ContextualTempMetaPolicy(LABELS, config=cfg, min_bucket_updates=1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        policy.sample(["easy", 3])
        policy.observe_loglik(
            -rng.gamma(2.0, 1.0, size=(6, K)),
            rng.normal(size=6),
            buckets=["easy", "easy", 3, 3, "easy", 3],
            rewards=rng.integers(0, 2, size=6).astype(float),
        )
    text = json.dumps(policy.state_dict())
    restored = ContextualTempMetaPolicy(LABELS, config=cfg, min_bucket_updates=1)
    restored.load_state_dict(json.loads(text))
    assert json.dumps(restored.state_dict()) == text
    assert restored.metrics() == policy.metrics()
    groups = ["hard", "easy", 3] * 10
    assert restored.sample(groups) == policy.sample(groups)
    before = snapshot(restored)
    good = json.loads(text)
    for bad, match in [
        ({**good, "buckets": ["easy", "3", "hard"]}, "buckets: expected this policy's"),
        ({**good, "min_bucket_updates": 2}, "min_bucket_updates: expected this policy's 1"),
        ({**good, "config": tc.TampoConfig().model_dump(mode="json")}, "config: expected this"),
        ({**good, "per_bucket": good["per_bucket"][:2]}, "per_bucket: expected 3 bucket"),
        ({**good, "pooled": {**good["pooled"], "ema": [0.0] * 3}}, "ema: expected 10"),
        ({**good, "kind": "TempMetaPolicy"}, "state: expected version 1 of a Contextual"),
        ({**good, "last_temperatures": [1.0, None]}, r"last_temperatures\[1\]: expected"),
        ({**good, "last_temperatures": [1.05]}, "last_temperatures: expected candidate"),
        ({**good, "pooled": {**good["pooled"], "ema": [1e300] * 10}}, r"ema\[0\]: expected"),
        ({**good, "per_bucket": [{}, {}, {}]}, "a bucket state must hold exactly"),
        ("nope", "state: expected a dict"),
    ]:
        with pytest.raises(ValueError, match=match):
            restored.load_state_dict(bad)  # type: ignore[arg-type]
        assert snapshot(restored) == before


def test_bad_labels_are_refused_and_leave_the_state() -> None:
    for buckets, error, match in [
        ([], ValueError, "buckets: expected at least one bucket label"),
        (["a", "a"], ValueError, "buckets: expected unique labels"),
        ([True, 2], TypeError, r"buckets\[0\]: expected a str or int label"),
        ("ab", TypeError, "buckets: expected a sequence"),
        ([1.5], TypeError, r"buckets\[0\]: expected a str or int label"),
    ]:
        with pytest.raises(error, match=match):
            ContextualTempMetaPolicy(buckets)
    with pytest.raises(ValueError, match="min_bucket_updates: expected an int >= 0"):
        ContextualTempMetaPolicy([0], min_bucket_updates=-1)
    policy = ContextualTempMetaPolicy(["a", "b"], config=tc.TampoConfig(warmup_steps=0))
    policy.observe_loglik(_preferring(2, 2), [1.0, -1.0], buckets=["a", "b"])
    before = snapshot(policy)
    with pytest.raises(ValueError, match=r"buckets\[1\]: expected labels among the declared"):
        policy.sample(["a", "c"])
    with pytest.raises(ValueError, match=r"buckets\[0\]: expected labels among the declared"):
        policy.observe_loglik(_preferring(2, 1), [1.0], buckets=["z"])
    with pytest.raises(ValueError, match=r"buckets: expected \[2\] labels"):
        policy.observe_loglik(_preferring(2, 2), [1.0, 0.0], buckets=["a"])
    with pytest.raises(ValueError, match="buckets: expected at least one label"):
        policy.sample([])
    with pytest.raises(ValueError, match=r"batch: expected at least one trajectory.*2 skipped"):
        policy.observe_loglik(
            np.full((2, K), np.nan), [1, 1], buckets=["a", "b"], num_tokens=[0, 0]
        )
    with pytest.raises(ValueError, match=r"loglik\[0\]: expected finite likelihoods"):
        policy.observe_loglik(np.full((2, K), np.nan), [1, 1], buckets=["a", "b"])
    with pytest.raises(ValueError, match="rewards: expected None"):
        policy.observe_loglik(_preferring(2, 1), [1.0], buckets=["a"], rewards=[1.0])
    with pytest.raises(RuntimeError, match=r"initialised torch\.distributed"):
        policy.observe_loglik(_preferring(2, 1), [1.0], buckets=["a"], sync=True)
    assert snapshot(policy) == before


def test_observe_on_logits_equals_observe_loglik_of_the_kernel() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 5, 9, generator=gen) * 2
    tokens = torch.randint(0, 9, (4, 5), generator=gen)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[2] = False
    advantages = torch.tensor([1.0, -1.0, 3.0, 0.5])
    labels = torch.tensor([0, 1, 1, 0])
    cfg = tc.TampoConfig(likelihood="sum", warmup_steps=0)
    a, b = (
        ContextualTempMetaPolicy([0, 1], config=cfg),
        ContextualTempMetaPolicy([0, 1], config=cfg),
    )
    stats = a.observe(logits, advantages, tokens=tokens, mask=mask, buckets=labels)
    loglik = tc.multi_temperature_loglik(logits, tokens, cfg.temperatures, mask=mask)
    b.observe_loglik(loglik, advantages, buckets=[0, 1, 1, 0])
    assert snapshot(a) == snapshot(b)
    assert stats.pooled.num_skipped == 1 and stats.buckets[1].num_trajectories == 1


WORLD = 2
SYNC_CFG = tc.TampoConfig(warmup_steps=0, meta_advantage="batch_baseline", likelihood="sum")


def _rank_batch(rank: int, step: int) -> tuple:
    rng = np.random.default_rng(100 * rank + step)
    n = 6 + rank
    labels = rng.choice(["a", "b", "c"], size=n).tolist()
    if rank == 0:
        labels = [x if x != "c" else "a" for x in labels]  # "c" only ever on rank 1
    return (
        -rng.gamma(2.0, 1.0, size=(n, K)),
        rng.normal(size=n),
        rng.integers(0, 20, size=n),
        rng.integers(0, 2, size=n).astype(np.float64),
        labels,
    )


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    calls = []
    real = distributed.all_reduce_sum
    distributed.all_reduce_sum = lambda values: calls.append(values.shape) or real(values)
    try:
        policy = ContextualTempMetaPolicy(["a", "b", "c"], config=SYNC_CFG)
        for step in range(3):
            loglik, advantages, counts, rewards, labels = _rank_batch(rank, step)
            counts[0] = max(counts[0], 1)
            policy.observe_loglik(
                loglik, advantages, buckets=labels, num_tokens=counts, rewards=rewards
            )
        good_calls, before = len(calls), json.dumps(policy.state_dict())
        loglik, advantages, counts, rewards, labels = _rank_batch(rank, 3)
        if rank == 1:
            labels[0] = "zzz"  # a bad batch on one rank: both raise, neither hangs or updates
        try:
            policy.observe_loglik(loglik, advantages, buckets=labels, rewards=rewards)
            failure = None
        except ValueError as error:
            failure = str(error)
        Path(out_dir, f"rank{rank}.json").write_text(
            json.dumps(
                {
                    "state": json.loads(before),
                    "calls": good_calls,
                    "failure": failure,
                    "unchanged": json.dumps(policy.state_dict()) == before,
                }
            )
        )
    finally:
        distributed.all_reduce_sum = real
        dist.destroy_process_group()


@pytest.mark.distributed
def test_ranks_hold_the_same_buckets_with_one_all_reduce_per_observe(tmp_path: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0]["calls"] == ranks[1]["calls"] == 3
    for r in ranks:
        assert r["unchanged"] and "rank 1" in r["failure"] and "buckets[0]" in r["failure"], r
    strip = [{k: v for k, v in r["state"].items() if k != "rng"} for r in ranks]
    assert strip[0] == strip[1]
    single = ContextualTempMetaPolicy(["a", "b", "c"], config=SYNC_CFG)
    for step in range(3):
        parts = [_rank_batch(r, step) for r in range(WORLD)]
        for part in parts:
            part[2][0] = max(part[2][0], 1)
        single.observe_loglik(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            buckets=[x for p in parts for x in p[4]],
            num_tokens=np.concatenate([p[2] for p in parts]),
            rewards=np.concatenate([p[3] for p in parts]),
        )
    restored = ContextualTempMetaPolicy(["a", "b", "c"], config=SYNC_CFG)
    restored.load_state_dict(ranks[0]["state"])
    for label in (None, "a", "b", "c"):
        assert restored.num_updates(label) == single.num_updates(label)
        np.testing.assert_allclose(restored.ema(label), single.ema(label), rtol=1e-12, atol=1e-15)


def test_difficulty_buckets_follow_running_pass_rates() -> None:
    bucketer = DifficultyBucketer(3, rate_alpha=0.5)
    assert bucketer.labels == (0, 1, 2) and bucketer.edges == pytest.approx((1 / 3, 2 / 3))
    assert bucketer.buckets(["new"]) == [1]  # the prior rate 0.5
    bucketer.update(["p", "p", "q", "q", 7, 7], [1, 1, 0, 0, 1, 0])
    assert (bucketer.rate("p"), bucketer.rate("q"), bucketer.rate(7)) == (1.0, 0.0, 0.5)
    assert bucketer.buckets(["q", 7, "p"]) == [0, 1, 2]
    bucketer.update(["p", "p"], np.array([0.0, 0.0]))
    assert bucketer.rate("p") == 0.5  # 1.0 + 0.5 * (0.0 - 1.0)
    assert bucketer.buckets(["p"]) == [1]
    edge = DifficultyBucketer(2, edges=[0.25])
    edge.update(["x", "y"], [0.25, 0.5])
    assert edge.buckets(["x", "y"]) == [0, 1]  # bucket b holds (e_{b-1}, e_b]


def test_quantile_buckets_split_the_prompts_seen() -> None:
    bucketer = DifficultyBucketer(2, mode="quantile")
    bucketer.update(["a"], [1.0])
    assert bucketer.edges == (0.5,)  # fewer prompts than buckets: the fixed edges
    keys = [f"k{i}" for i in range(8)]
    bucketer.update(keys, [i / 10 for i in range(8)])
    assert bucketer.edges == pytest.approx((0.4,))
    assert bucketer.buckets([*keys, "a"]) == [0, 0, 0, 0, 0, 1, 1, 1, 1]


def test_bucketer_state_round_trips_and_refuses_bad_input() -> None:
    bucketer = DifficultyBucketer(3, mode="quantile", rate_alpha=0.25)
    bucketer.update(["a", 1, "b", 1], [1.0, 0.0, 0.5, 1.0])
    text = json.dumps(bucketer.state_dict())
    restored = DifficultyBucketer(3, mode="quantile", rate_alpha=0.25)
    restored.load_state_dict(json.loads(text))
    assert json.dumps(restored.state_dict()) == text
    assert restored.buckets([1, "a", "b", "c"]) == bucketer.buckets([1, "a", "b", "c"])
    with pytest.raises(ValueError, match="settings differ"):
        DifficultyBucketer(3).load_state_dict(json.loads(text))
    for kwargs, match in [
        ({"num_buckets": 1}, "num_buckets: expected an int >= 2"),
        ({"mode": "median"}, "mode: expected one of"),
        ({"edges": [0.5, 0.2]}, "edges: expected 2 strictly increasing edges"),
        ({"edges": [0.0, 0.5]}, "edges: expected 2 strictly increasing edges"),
        ({"rate_alpha": 0.0}, r"rate_alpha: expected a real number in \(0, 1\]"),
        ({"prior_rate": 1.5}, r"prior_rate: expected a real number in \[0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            DifficultyBucketer(**{"num_buckets": 3, **kwargs})
    before = json.dumps(restored.state_dict())
    for keys, passed, error, match in [
        (["a"], [1.5], ValueError, "passed: expected values in"),
        (["a", "b"], [1.0], ValueError, r"passed: expected shape \[N\] = \[2\]"),
        ([1.5], [1.0], TypeError, r"keys\[0\]: expected a str or int label"),
        (["a"], [np.nan], ValueError, "passed: expected values in"),
    ]:
        with pytest.raises(error, match=match):
            restored.update(keys, passed)
    assert json.dumps(restored.state_dict()) == before


def test_bucketer_labels_drive_the_contextual_policy() -> None:
    bucketer = DifficultyBucketer(2)
    policy = ContextualTempMetaPolicy(bucketer.labels, config=tc.TampoConfig(warmup_steps=0))
    prompts = ["solved", "unsolved"]
    bucketer.update(["solved"] * 2 + ["unsolved"] * 2, [1, 1, 0, 0])
    groups = bucketer.buckets(prompts)
    assert groups == [1, 0]
    temps = policy.sample(groups)
    assert len(temps) == 2
    rows = [b for b in groups for _ in range(2)]
    stats = policy.observe_loglik(_preferring(4, 4), [1.0, -1.0, 0.5, -0.5], buckets=rows)
    assert stats.buckets[0].num_trajectories == stats.buckets[1].num_trajectories == 2
