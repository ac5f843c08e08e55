"""TAMPO through OpenRLHF's real Ray machinery on CPU: one local Ray for the whole module.

Real: ``RayActorGroup``, ``PolicyModelActor.forward``/``append``/``execute_batch``,
``ReferenceModelActor.forward``, ``RemoteExperienceMaker``, ``NaiveReplayBuffer``, ``PPOTrainer``
(``fit``, ``train_step``, ``SamplesGenerator``, checkpoint and resume logic,
``TensorboardLogger``), the CLI's argument parsing, and the adapter's ``TampoPPOTrainer``.
Test doubles (``testkit``): CPU model init instead of DeepSpeed, a vLLM engine actor that samples
from the same tiny model, the PPO optimiser step and the checkpoint file write (the checkpoint's
``client_states`` go through DeepSpeed's real save and load in ``test_checkpoint.py``).
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip(
    "openrlhf", reason="openrlhf is not installed (scripts/ci/install-openrlhf.sh installs it)"
)
ray = pytest.importorskip("ray", reason="ray is not installed (installed with openrlhf)")

from openrlhf.trainer.ppo_utils.experience import Experience  # noqa: E402
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker  # noqa: E402
from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController  # noqa: E402
from openrlhf.utils import get_strategy  # noqa: E402

import tests.adapters.openrlhf.testkit as kit  # noqa: E402
from tampo_core import TampoConfig, TempMetaPolicy  # noqa: E402
from tampo_core.adapters.openrlhf import TampoOptions, _seam  # noqa: E402
from tampo_core.adapters.openrlhf.advantages import advantage_signal, meta_advantages  # noqa: E402
from tampo_core.adapters.openrlhf.join import join_loglik  # noqa: E402
from tampo_core.adapters.openrlhf.policy_hook import (  # noqa: E402
    install_policy_hook,
    pop_policy_loglik,
)
from tampo_core.metrics import temperature_label  # noqa: E402
from tests.adapters.openrlhf.testkit import TEMPERATURES  # noqa: E402

MICRO_BATCH = 2
META = _seam.CHECKPOINT_STATE_KEY
ADAPTER = _seam.ADAPTER_STATE_KEY

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env=kit.ray_runtime_env(),
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def groups(local_ray):
    policy = kit.cpu_group(kit.cpu_policy_actor_class(), 2)
    reference = kit.cpu_group(kit.cpu_reference_actor_class(), 1)
    return policy, reference


def _init_groups(groups, packing: bool, states: dict | None = None) -> None:
    policy, reference = groups
    ray.get(policy.async_run_method("init_cpu", packing, MICRO_BATCH, states))
    ray.get(reference.async_run_method("init_cpu", packing))


def _rollout_samples(count: int) -> list[Experience]:
    """Single-sample experiences as ``SamplesGenerator`` makes them (ragged lengths)."""
    generator = torch.Generator().manual_seed(3)
    samples = []
    for i in range(count):
        prompt, actions = 3 + i % 2, 1 + (i * 3) % 5
        length = prompt + actions
        reward = float(i % 3) / 2
        samples.append(
            Experience(
                sequences=torch.randint(3, 64, (1, length), generator=generator),
                attention_mask=torch.ones(1, length, dtype=torch.long),
                action_mask=(torch.arange(length - 1) >= prompt - 1).long().unsqueeze(0),
                rewards=torch.tensor([reward]),
                response_length=torch.tensor([actions]),
                total_length=torch.tensor([float(length)]),
                truncated=torch.tensor([False]),
                prompts=[f"p{i // 4}"],
                labels=["0"],
                info={"reward": torch.tensor([reward])},
            )
        )
    return samples


def _tagged(samples: list[Experience], temperature: float) -> list[Experience]:
    calls = []

    def generate_samples(**kwargs):
        calls.append(kwargs)
        return samples, None, 2, False

    holder = SimpleNamespace(samples_generator=SimpleNamespace(generate_samples=generate_samples))
    _seam.wrap_generation(holder, lambda: temperature, [])
    tagged, _, _, _ = holder.samples_generator.generate_samples(temperature=1.0, top_p=1.0)
    assert calls == [{"temperature": temperature, "top_p": 1.0}]
    return tagged


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_experience_maker_brings_the_likelihoods_back(groups, packing):
    _init_groups(groups, packing)
    policy, reference = groups
    args = kit.cli_args(kit.ppo_argv(**{"--rollout.micro_batch_size": str(MICRO_BATCH)}))
    maker = RemoteExperienceMaker(
        policy,
        None,
        None,
        reference,
        FixedKLController(0.01),
        SimpleNamespace(args=args),
        SimpleNamespace(pad_token_id=0),
    )
    temperature = 0.8
    samples = _tagged(_rollout_samples(8), temperature)
    assert _seam.batch_temperature(samples) == temperature
    assert _seam.run_on_group(policy, install_policy_hook, TEMPERATURES, 3) == [TEMPERATURES] * 2
    _seam.set_model_temperature(policy, reference, temperature)
    assert ray.get(policy.async_run_method("temperature")) == [temperature] * 2
    assert ray.get(reference.async_run_method("temperature")) == [temperature]

    joined = []
    settings = _seam.advantage_settings(args)

    def consume(experiences):
        stash = {}
        for part in _seam.run_on_group(policy, pop_policy_loglik):
            stash.update(part)
        joined.append(join_loglik(experiences, stash, len(TEMPERATURES)))
        joined.append(meta_advantages(experiences, advantage_signal(settings), settings))

    _seam.wrap_experience_making(SimpleNamespace(experience_maker=maker), consume)
    experiences = maker.make_experience_batch(samples)
    (loglik, num_tokens), advantages = joined
    assert loglik.shape == (8, len(TEMPERATURES)) and advantages.shape == (8,)
    expected_counts = torch.cat([e.action_mask.sum(1) for e in experiences])
    assert num_tokens.tolist() == expected_counts.tolist() and num_tokens.min() > 0
    at_t = []
    for experience in experiences:
        mask = experience.action_mask.float()
        at_t.append((experience.action_log_probs * mask).sum(1) / mask.sum(1))
        assert torch.all(experience.info["kl"].abs() < 1e-6), "policy and reference agree at T"
        assert experience.info[_seam.TEMPERATURE_INFO_KEY].tolist() == [temperature] * 2
    column = loglik[:, TEMPERATURES.index(temperature)]
    torch.testing.assert_close(column, torch.cat(at_t), atol=2e-5, rtol=1e-5)
    assert torch.isfinite(advantages).all() and advantages.abs().sum() > 0

    meta_policy = TempMetaPolicy(temperatures=TEMPERATURES)
    stats = meta_policy.observe_loglik(loglik, advantages, num_tokens=num_tokens, sync=False)
    assert stats.num_trajectories == 8 and meta_policy.num_updates == 1

    # Setting T on the policy only leaves the reference at the old T: KL is no longer zero.
    _seam.set_model_temperature(policy, None, 1.3)
    experiences = maker.make_experience_batch(_tagged(_rollout_samples(8), 1.3))
    assert max(float(e.info["kl"].abs().max()) for e in experiences) > 1e-3


def _trainer_argv(tmp_path, **extra: str) -> list[str]:
    return kit.ppo_argv(
        **{
            "--actor.model_name_or_path": str(tmp_path / "tokenizer"),
            "--data.prompt_dataset": str(tmp_path / "prompts.jsonl"),
            "--rollout.micro_batch_size": str(MICRO_BATCH),
            "--logger.tensorboard_dir": str(tmp_path / "tb"),
            "--ckpt.path": str(tmp_path / "ckpt"),
            "--ckpt.save_steps": "1",
            **extra,
        }
    )


def _run_trainer(groups, args, options: TampoOptions, engine_seed: int):
    from tampo_core.adapters.openrlhf.trainer import TampoPPOTrainer

    policy, reference = groups
    engine = kit.fake_vllm_engine_class().remote(engine_seed)
    trainer = TampoPPOTrainer.remote(
        args.actor.model_name_or_path,
        get_strategy(args),
        policy,
        None,
        None,
        reference,
        [engine],
        tampo=options,
        do_sample=True,
        max_len=args.data.max_len,
        max_new_tokens=args.rollout.max_new_tokens,
        temperature=args.rollout.temperature,
        top_p=args.rollout.top_p,
    )
    ray.get(trainer.fit.remote())
    seen = ray.get(engine.seen_temperatures.remote())
    state = ray.get(trainer.tampo_state.remote())
    recorded = ray.get(trainer.__ray_call__.remote(lambda self: vars(self.args.tampo)))
    assert recorded == options.flat(), "the TAMPO options are in OpenRLHF's args (W&B config)"
    guarded = ray.get(
        engine.__ray_call__.remote(lambda e: hasattr(e, _seam.ENGINE_GUARD_ATTRIBUTE))
    )
    assert guarded, "fit installed the multi-turn temperature guard in the engine actor"
    ray.kill(trainer)
    ray.kill(engine)
    # one generate call per sample: 4 samples for each of the 2 prompts of a step
    per_step = args.rollout.n_samples_per_prompt * args.rollout.batch_size
    steps = [seen[i : i + per_step] for i in range(0, len(seen), per_step)]
    assert all(len(set(step)) == 1 and len(step) == per_step for step in steps)
    return [step[0] for step in steps], state


def _scalars(directory) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = [p for p in directory.iterdir() if p.is_dir()]
    accumulator = EventAccumulator(str(run))
    accumulator.Reload()
    return {
        tag: [event.value for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def test_tampo_trainer_fit_logs_checkpoints_and_resumes(groups, tmp_path):
    kit.write_tokenizer(tmp_path / "tokenizer")
    # one prompt's reward is NaN: the step that draws it skips its meta-update, training goes on
    kit.write_prompts(tmp_path / "prompts.jsonl", 8, nan_reward={5})
    config = TampoConfig(temperatures=TEMPERATURES, warmup_steps=1, seed=5)
    options = TampoOptions(config=config, detailed_metrics=True)
    _init_groups(groups, packing=False)
    policy, reference = groups
    args = kit.cli_args(_trainer_argv(tmp_path))
    temperatures, state = _run_trainer(groups, args, options, engine_seed=0)

    assert len(temperatures) == 4 and set(temperatures) <= set(TEMPERATURES)
    assert state[META]["num_updates"] == 3, "4 steps, one skipped"
    assert state[ADAPTER]["skipped_updates"] == {
        "no_valid_trajectory": 0,
        "non_finite_advantages": 1,
    }
    assert ray.get(policy.async_run_method("temperature")) == [temperatures[-1]] * 2
    assert ray.get(reference.async_run_method("temperature")) == [temperatures[-1]]

    scalars = _scalars(tmp_path / "tb")
    assert scalars["train/tampo/temperature"] == pytest.approx(temperatures)
    assert scalars["train/test/train_temperature"] == pytest.approx(temperatures)
    assert scalars["train/test/tag_mean"] == pytest.approx(temperatures)
    assert max(scalars["train/test/max_ratio_gap"]) < 1e-5, "PPO forward at the rollout T"
    assert scalars["train/test/num_replayed"] == [4.0] * 4  # 8 samples over 2 policy ranks
    skipped = scalars["train/tampo/skipped_update"]
    assert sorted(skipped) == [0.0, 0.0, 0.0, 1.0]
    updates = [float(sum(1 - x for x in skipped[: i + 1])) for i in range(4)]
    assert scalars["train/tampo/num_updates"] == updates
    for t in TEMPERATURES:
        assert len(scalars[f"train/tampo/prob/{temperature_label(t)}"]) == 4
        # batch statistics exist from the first update on
        assert len(scalars[f"train/tampo/adv/{temperature_label(t)}"]) == sum(
            u > 0 for u in updates
        )
    assert scalars["train/tampo/skipped_updates/non_finite_advantages"][-1] == 1.0
    assert scalars["train/tampo/agent_temperature_overrides"] == [0.0] * 4

    saved = ray.get(policy.async_run_method("saved_states"))[0]
    assert [s["global_step"] for s in saved] == [1, 2, 3, 4]
    last_saved = saved[-1][META]
    assert last_saved["ema"] == state[META]["ema"] and last_saved["num_updates"] == 3
    assert saved[-1][ADAPTER] == {**state[ADAPTER], "pending_temperatures": []}
    # the empty call that ends the episode drew once more: held for the next call, saved with
    # the adapter state from then on
    (pending,) = state[ADAPTER]["pending_temperatures"]
    assert pending in TEMPERATURES and state[META]["last_temperature"] == pending
    json.dumps(saved[-1][META])
    json.dumps(saved[-1][ADAPTER])

    # Resume from the step-2 checkpoint: the meta-policy continues where it was.
    (tmp_path / "ckpt" / "_actor").mkdir(parents=True)
    _init_groups(groups, packing=False, states=copy.deepcopy(saved[1]))
    resumed_args = kit.cli_args(_trainer_argv(tmp_path, **{"--ckpt.load_enable": ""}))
    resumed_temperatures, resumed_state = _run_trainer(groups, resumed_args, options, engine_seed=1)
    assert len(resumed_temperatures) == 2, "steps 3 and 4 only"
    assert resumed_temperatures[0] == temperatures[2], "same draw from the restored state"
    assert resumed_state[META]["num_updates"] == 3
    assert resumed_state[ADAPTER]["skipped_updates"] == state[ADAPTER]["skipped_updates"]


def test_trainer_refuses_async_mode(groups, tmp_path):
    from tampo_core.adapters.openrlhf.trainer import TampoPPOTrainer

    kit.write_tokenizer(tmp_path / "tokenizer")
    kit.write_prompts(tmp_path / "prompts.jsonl", 4)
    args = kit.cli_args(_trainer_argv(tmp_path, **{"--train.async_enable": ""}))
    policy, reference = groups
    trainer = TampoPPOTrainer.remote(
        args.actor.model_name_or_path,
        get_strategy(args),
        policy,
        None,
        None,
        reference,
        None,
        tampo=TampoOptions(),
    )
    with pytest.raises(ray.exceptions.RayActorError, match="async PPO"):
        ray.get(trainer.tampo_state.remote())
