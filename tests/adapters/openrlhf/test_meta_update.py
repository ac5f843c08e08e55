"""The trainer's meta-update: batches that cannot update the meta-policy are skipped, logged and
counted; the adapter state round-trips (no OpenRLHF needed)."""

from __future__ import annotations

import logging

import pytest
import torch

from tampo_core import TempMetaPolicy
from tampo_core.adapters.openrlhf.meta_update import MetaUpdater
from tampo_core.loglik import TemperatureLoglik

TEMPERATURES = (0.6, 0.8, 1.0, 1.3)


def _batch(counts: list[int]) -> TemperatureLoglik:
    generator = torch.Generator().manual_seed(0)
    loglik = -torch.rand(len(counts), len(TEMPERATURES), generator=generator)
    count_tensor = torch.tensor(counts, dtype=torch.int64)
    loglik[count_tensor == 0] = float("nan")  # the kernel's 0 / 0 rows
    return TemperatureLoglik(loglik, count_tensor)


def test_a_batch_without_valid_trajectories_is_skipped_logged_and_counted(caplog):
    policy = TempMetaPolicy(temperatures=TEMPERATURES)
    updater = MetaUpdater(policy)
    before = policy.state_dict()
    with caplog.at_level(logging.WARNING):
        assert updater.update(_batch([0, 0, 0]), torch.tensor([1.0, -1.0, 0.0])) is None
    assert policy.state_dict() == before
    assert "none of its 3 trajectories has an action token" in caplog.text
    metrics = updater.metrics()
    assert metrics["tampo/skipped_updates/no_valid_trajectory"] == 1.0
    assert metrics["tampo/skipped_updates/non_finite_advantages"] == 0.0
    assert metrics["tampo/skipped_update"] == 1.0


def test_non_finite_advantages_skip_the_update_and_training_goes_on(caplog):
    policy = TempMetaPolicy(temperatures=TEMPERATURES)
    updater = MetaUpdater(policy)
    before = policy.state_dict()
    with caplog.at_level(logging.WARNING):
        skipped = updater.update(_batch([3, 2, 4]), torch.tensor([1.0, float("nan"), 0.5]))
    assert skipped is None and policy.state_dict() == before
    assert "1 of its 3 trajectories with tokens have a non-finite advantage" in caplog.text
    assert "tampo/num_updates" not in updater.metrics(), "compact by default"
    assert "trajectory 1" in caplog.text
    assert updater.metrics()["tampo/skipped_updates/non_finite_advantages"] == 1.0

    # the next batch updates; a NaN advantage on a row without tokens is no reason to skip
    stats = updater.update(_batch([3, 0, 4]), torch.tensor([1.0, float("nan"), -0.5]))
    assert stats is not None and (stats.num_trajectories, stats.num_skipped) == (2, 1)
    assert policy.num_updates == 1
    metrics = updater.metrics(detail=True)
    assert metrics["tampo/skipped_update"] == 0.0
    assert metrics["tampo/skipped_updates/non_finite_advantages"] == 1.0, "cumulative"
    assert metrics["tampo/num_updates"] == 1.0


def test_batch_baseline_gets_the_rewards_and_a_nan_reward_skips():
    from tampo_core import TampoConfig

    config = TampoConfig(temperatures=TEMPERATURES, meta_advantage="batch_baseline")
    policy, twin = TempMetaPolicy(config=config), TempMetaPolicy(config=config)
    updater = MetaUpdater(policy)
    batch, advantages = _batch([3, 2, 0]), torch.zeros(3)
    skipped = updater.update(batch, advantages, rewards=torch.tensor([1.0, float("nan"), 0.0]))
    assert skipped is None and policy.num_updates == 0
    rewards = torch.tensor([1.0, 0.0, float("nan")])  # NaN on the row without tokens
    stats = updater.update(batch, advantages, rewards=rewards)
    expected = twin.observe_loglik(
        batch, advantages, sync=False, rewards=torch.tensor([1.0, 0.0, 0.0])
    )
    assert stats.batch_advantage.tolist() == expected.batch_advantage.tolist()
    assert abs(stats.batch_advantage).sum() > 0, "zero given advantages, so the rewards counted"


def test_a_non_finite_likelihood_with_tokens_is_still_an_error():
    policy = TempMetaPolicy(temperatures=TEMPERATURES)
    updater = MetaUpdater(policy)
    batch = _batch([3, 2])
    batch.loglik[1, 2] = float("nan")
    before = policy.state_dict()
    with pytest.raises(ValueError, match=r"loglik\[1\]: expected finite likelihoods"):
        updater.update(batch, torch.tensor([1.0, -1.0]))
    assert policy.state_dict() == before
    assert updater.metrics()["tampo/skipped_update"] == 0.0


def test_adapter_state_round_trips_and_bad_states_change_nothing():
    updater = MetaUpdater(TempMetaPolicy(temperatures=TEMPERATURES))
    updater.update(_batch([0]), torch.tensor([0.0]))
    updater.pending.append(1.3)
    state = updater.state_dict()
    assert state == {
        "pending_temperatures": [1.3],
        "skipped_updates": {"no_valid_trajectory": 1, "non_finite_advantages": 0},
    }
    restored = MetaUpdater(TempMetaPolicy(temperatures=TEMPERATURES))
    pending = restored.pending
    restored.load_state_dict(state)
    assert restored.state_dict() == state and restored.pending is pending, "same list object"
    for bad, message in (
        ({**state, "pending_temperatures": [0.7]}, "candidate temperatures"),
        ({**state, "pending_temperatures": [float("nan")]}, "finite"),
        (
            {**state, "skipped_updates": {"no_valid_trajectory": -1, "non_finite_advantages": 0}},
            "int >= 0",
        ),
        ({"pending_temperatures": []}, "keys"),
    ):
        with pytest.raises((ValueError, TypeError), match=message):
            restored.load_state_dict(bad)
        assert restored.state_dict() == state
