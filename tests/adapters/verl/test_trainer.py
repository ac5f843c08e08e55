"""TAMPO through verl's real ``RayPPOTrainer.fit`` loop on CPU, in-process.

Real: verl's Hydra ``ppo_trainer`` config, ``RayPPOTrainer.__init__`` (dataloaders, step
count), ``fit`` (batching, uid, ``_get_gen_batch``, union, response mask, reward extraction,
``_compute_old_log_prob``, ``_compute_ref_log_prob``, ``compute_advantage`` with verl's
estimators, ``_update_actor``, ``_save_checkpoint`` / ``_load_checkpoint`` with the dataloader
state, metrics, ``Tracking`` to TensorBoard), the adapter's ``TampoRayPPOTrainer`` overrides,
and, behind the worker group, the real ``ActorRolloutRefWorker.compute_log_prob`` /
``compute_ref_log_prob`` -> ``TrainingWorker`` -> ``FSDPEngineWithLMHead`` path with the hook.
Stand-ins (``testkit``): ``init_workers`` (Ray worker groups, placement, vLLM/SGLang servers),
the rollout manager (in-process sampling from the tiny model), the optimiser step, weight sync.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytest.importorskip("verl", reason="verl is not installed (scripts/ci/install-verl.sh installs it)")

import tests.adapters.verl.testkit as kit
from tampo_core import TampoConfig
from tampo_core.adapters.verl import TampoOptions, _seam

TEMPERATURES = (0.6, 0.8, 1.0, 1.3)
STEPS = 4

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", autouse=True)
def cpu_verl():
    torch.set_num_threads(1)
    kit.use_cpu_devices()
    kit.single_process_group()


def _scalars(directory) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    return {
        tag: [event.value for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def _check_step_temperatures(trainer, temperatures: list[float]) -> None:
    group, rollout = trainer.actor_rollout_wg, trainer.async_rollout_manager
    assert [set(step) for step in rollout.temperatures] == [{t} for t in temperatures]
    assert all(len(step) == 8 for step in rollout.temperatures), "2 prompts x 4 samples"
    assert group.seen["old"] == temperatures, "old-policy log-probs at the step's T"
    assert group.seen["ref"] == temperatures, "reference log-probs at the step's T"
    assert group.seen["update"] == temperatures, "PPO update at the step's T"


ESTIMATORS = {
    "grpo": ("grpo",),
    "dr_grpo": ("grpo", "algorithm.norm_adv_by_std_in_grpo=false"),
    "rloo": ("rloo",),
    "reinforce_plus_plus": ("reinforce_plus_plus",),
    "reinforce_plus_plus_baseline": ("reinforce_plus_plus_baseline",),
}


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_fit_draws_observes_logs_and_checkpoints(tmp_path, monkeypatch, estimator):
    monkeypatch.setenv("TENSORBOARD_DIR", str(tmp_path / "tb"))
    tampo = TampoConfig(temperatures=TEMPERATURES, warmup_steps=1, seed=5)
    options = TampoOptions(config=tampo, detailed_metrics=True)
    trainer = kit.build_trainer(
        monkeypatch, kit.trainer_config(tmp_path, *ESTIMATORS[estimator]), options
    )
    observed = []
    observe = trainer.meta_policy.observe_loglik

    def recording_observe(loglik, advantages, **kwargs):
        observed.append(advantages.clone())
        return observe(loglik, advantages, **kwargs)

    trainer.meta_policy.observe_loglik = recording_observe
    trainer.fit()

    state = trainer.tampo_state()
    assert state["num_updates"] == STEPS, "one observe_loglik per step"
    scalars = _scalars(tmp_path / "tb")
    temperatures = [step[0] for step in trainer.async_rollout_manager.temperatures]
    assert len(temperatures) == STEPS and set(temperatures) <= set(TEMPERATURES)
    _check_step_temperatures(trainer, temperatures)
    assert scalars["tampo/temperature"] == pytest.approx(temperatures), "logged per step"
    assert max(scalars["actor/test/max_ratio_gap"]) < 1e-5, "ratio at the rollout T"
    assert scalars["tampo/num_updates"] == [1.0, 2.0, 3.0, 4.0]
    assert scalars["tampo/num_trajectories"] == [8.0] * STEPS
    probs = np.array([scalars[f"tampo/prob/{t!r}"][-1] for t in TEMPERATURES])
    assert not np.allclose(probs, 1 / len(TEMPERATURES)), "the distribution moved"
    assert probs == pytest.approx(trainer.meta_policy.probs, abs=1e-6)
    assert scalars["tampo/entropy"][-1] < np.log(len(TEMPERATURES)) - 1e-3
    for step in range(1, STEPS + 1):
        saved = tmp_path / "ckpt" / f"global_step_{step}" / _seam.CHECKPOINT_FILE
        assert saved.exists()
    # verl's own advantages reach observe_loglik, one value per trajectory (constant over it)
    assert len(observed) == STEPS
    for fed, (advantages, response_mask) in zip(
        observed, trainer.actor_rollout_wg.seen["advantages"], strict=True
    ):
        mask = response_mask.bool()
        mean = (advantages * mask).sum(1) / mask.sum(1)
        spread = (advantages - mean[:, None]).abs().masked_fill(~mask, 0).max()
        assert spread < 1e-5, "outcome estimators give every response token the same advantage"
        torch.testing.assert_close(fed, mean.float(), atol=1e-6, rtol=0)
        assert fed.abs().sum() > 0


def test_resume_continues_the_temperature_sequence(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_DIR", str(tmp_path / "tb"))
    options = TampoOptions(config=TampoConfig(temperatures=TEMPERATURES, warmup_steps=1, seed=9))
    first = kit.build_trainer(monkeypatch, kit.trainer_config(tmp_path, "grpo"), options)
    first.fit()
    sequence = [step[0] for step in first.async_rollout_manager.temperatures]
    final_state = first.tampo_state()

    resume_from = tmp_path / "ckpt" / "global_step_2"
    os.remove(tmp_path / "ckpt" / "latest_checkpointed_iteration.txt")
    resumed = kit.build_trainer(
        monkeypatch,
        kit.trainer_config(
            tmp_path,
            "grpo",
            "trainer.resume_mode=resume_path",
            f"trainer.resume_from_path={resume_from}",
        ),
        options,
    )
    resumed.fit()
    resumed_sequence = [step[0] for step in resumed.async_rollout_manager.temperatures]
    assert resumed_sequence == sequence[2:], "steps 3 and 4 draw what the first run drew"
    assert resumed.tampo_state()["ema"] == pytest.approx(final_state["ema"], abs=1e-9)
    assert resumed.tampo_state()["num_updates"] == STEPS


def test_fit_passes_counts_and_rewards_for_the_options_that_need_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_DIR", str(tmp_path / "tb"))
    tampo = TampoConfig(
        temperatures=TEMPERATURES, warmup_steps=1, likelihood="sum", meta_advantage="batch_baseline"
    )
    trainer = kit.build_trainer(
        monkeypatch, kit.trainer_config(tmp_path, "grpo"), TampoOptions(config=tampo)
    )
    fed = []
    observe = trainer.meta_policy.observe_loglik

    def recording_observe(loglik, advantages, **kwargs):
        fed.append(kwargs)
        return observe(loglik, advantages, **kwargs)

    trainer.meta_policy.observe_loglik = recording_observe
    trainer.fit()
    assert trainer.tampo_state()["num_updates"] == STEPS
    for kwargs in fed:
        assert kwargs["num_tokens"].shape == (8,) and int(kwargs["num_tokens"].min()) >= 1
        rewards = kwargs["rewards"]
        assert rewards.shape == (8,) and 0.0 <= float(rewards.min()) <= float(rewards.max()) <= 1.0


def test_trainer_refuses_unsupported_settings(tmp_path, monkeypatch):
    options = TampoOptions(config=TampoConfig(temperatures=TEMPERATURES))
    for extra, reason in (
        (("algorithm.adv_estimator=gae",), "adv_estimator=gae"),
        (("actor_rollout_ref.model.use_fused_kernels=true",), "use_fused_kernels"),
        (("algorithm.rollout_correction.bypass_mode=true",), "bypass_mode"),
    ):
        with pytest.raises(ValueError, match=reason):
            kit.build_trainer(monkeypatch, kit.trainer_config(tmp_path, "grpo", *extra), options)
