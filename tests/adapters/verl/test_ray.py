"""The TAMPO task runner and agent-loop manager as real Ray actors (one local Ray, CPU only).

Real: Ray; ``BoundTampoTaskRunner`` -> ``TampoTaskRunner`` actor (verl's ``TaskRunner`` subclass)
with the options pickled into it, verl's ``add_actor_rollout_worker`` and the adapter's worker
swap inside the actor process; ``TampoAgentLoopManager.create`` starting
``TampoAgentLoopWorker`` actors (verl's ``AgentLoopWorker.__init__`` with the model config and
tokenizer from a local model folder, the agent-loop registry read from a config file),
``generate_sequences`` (chunking, per-request sampling parameters, ``_run_agent_loop``,
``_agent_loop_postprocess`` padding, ``_postprocess``, concatenation). Stand-ins: the LLM
server client (``TinyModelServer``, sampling from the tiny model in the worker) and the agent
loop (``SamplingAgentLoop``: one generate call, as ``single_turn_agent`` does after its
chat-template tokenisation, which needs a chat model's tokenizer).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("verl", reason="verl is not installed (scripts/ci/install-verl.sh installs it)")
ray = pytest.importorskip("ray", reason="ray is not installed (installed with verl)")

from tampo_core import TampoConfig  # noqa: E402
from tampo_core.adapters.verl import TampoOptions, _seam  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
AGENT = "tampo_sampling_agent"
RESPONSE_LENGTH = 6

pytestmark = pytest.mark.timeout(300)


class TinyModelServer:
    """Stands in for verl's LLM server client: samples ``RESPONSE_LENGTH`` tokens from the tiny
    model at the request's temperature and reports that temperature."""

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None

    async def generate(
        self, request_id: str, prompt_ids: list[int], sampling_params: dict, **kwargs: Any
    ) -> Any:
        from verl.workers.rollout.replica import TokenOutput

        import tests.adapters.verl.testkit as kit

        if self.model is None:
            torch.set_num_threads(1)
            self.model = kit.tiny_model()
        temperature = float(sampling_params["temperature"])
        ids = list(prompt_ids)
        with torch.no_grad():
            for _ in range(RESPONSE_LENGTH):
                logits = self.model(torch.tensor([ids])).logits[0, -1]
                ids.append(int(torch.multinomial(torch.softmax(logits / temperature, -1), 1)))
        return TokenOutput(
            token_ids=ids[len(prompt_ids) :], extra_fields={"sampled_temperature": temperature}
        )


class SamplingAgentLoop:
    """Stands in for ``single_turn_agent``: one generate call on the prompt's token ids."""

    def __init__(self, server_manager: Any, **components: Any) -> None:
        self.server_manager = server_manager

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> Any:
        from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput

        assert _seam.ROLLOUT_TEMPERATURE_KEY not in kwargs, "taken out before the agent loop"
        prompt_ids = list(kwargs["raw_prompt_ids"])
        output = await self.server_manager.generate(
            request_id="r", prompt_ids=prompt_ids, sampling_params=sampling_params
        )
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=output.token_ids,
            response_mask=[1] * len(output.token_ids),
            # as a reward function would score it: the share of even token ids
            reward_score=sum(t % 2 == 0 for t in output.token_ids) / len(output.token_ids),
            num_turns=2,
            metrics=AgentLoopMetrics(),
            extra_fields=dict(output.extra_fields),
        )


@pytest.fixture(scope="module")
def local_ray():
    existing = os.environ.get("PYTHONPATH", "")
    pythonpath = os.pathsep.join([str(ROOT), existing] if existing else [str(ROOT)])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {
                "PYTHONPATH": pythonpath,
                "OMP_NUM_THREADS": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_OFFLINE": "1",
            }
        },
    )
    yield
    ray.shutdown()


def _register_workers(runner, config) -> dict:
    """Runs inside the task-runner actor."""
    import verl.trainer.main_ppo_v0 as runner_module

    from tampo_core.adapters.verl.trainer import BoundTampoTrainer

    worker_class, _ = runner.add_actor_rollout_worker(config)
    mapped = [remote.__ray_actor_class__.__name__ for remote in runner.role_worker_mapping.values()]
    _seam.install_trainer(BoundTampoTrainer(runner.tampo_options))
    return {
        "worker": worker_class.__name__,
        "mapped": mapped,
        "top_p": runner.tampo_options.config.top_p,
        "factory": type(runner_module.RayPPOTrainer).__name__,
        "pid": os.getpid(),
    }


def test_task_runner_actor_registers_the_tampo_worker(local_ray):
    from tampo_core.adapters.verl.task_runner import BoundTampoTaskRunner
    from tests.adapters.verl.testkit import compose_config

    config = compose_config(["actor_rollout_ref.actor.use_kl_loss=true"])
    options = TampoOptions(config=TampoConfig(top_p=0.3))
    runner = BoundTampoTaskRunner(options).options(num_cpus=0).remote()
    seen = ray.get(runner.__ray_call__.remote(_register_workers, config))
    ray.kill(runner)
    assert seen["pid"] != os.getpid()
    assert seen["worker"] == "TampoActorRolloutRefWorker"
    assert seen["mapped"] == ["TampoActorRolloutRefWorker"]
    assert seen["top_p"] == 0.3 and seen["factory"] == "BoundTampoTrainer"


def _objects(items: list) -> np.ndarray:
    """A 1-D object array of ``items`` (lists stay whole, as in verl's ``non_tensor_batch``)."""
    array = np.empty(len(items), dtype=object)
    for index, item in enumerate(items):
        array[index] = item
    return array


def _prompts(count: int, validate: bool) -> Any:
    from verl.protocol import DataProto

    prompts = [[3 + (i * 5 + j) % 50 for j in range(2 + i % 3)] for i in range(count)]
    non_tensors = {
        "raw_prompt_ids": _objects(prompts),
        "raw_prompt": _objects([[{"role": "user", "content": "x"}]] * count),
    }
    meta = {"global_steps": 1, "validate": validate}
    return DataProto.from_single_dict(non_tensors, meta_info=meta)


def _rollout_overrides(tmp_path) -> list[str]:
    from tests.adapters.verl.testkit import write_model_dir

    agents = tmp_path / "agents.yaml"
    agents.write_text(f"- name: {AGENT}\n  _target_: {__name__}.SamplingAgentLoop\n")
    return [
        f"actor_rollout_ref.model.path={write_model_dir(tmp_path / 'model')}",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.temperature=1.0",
        "actor_rollout_ref.rollout.val_kwargs.temperature=0.25",
        "actor_rollout_ref.rollout.prompt_length=8",
        f"actor_rollout_ref.rollout.response_length={RESPONSE_LENGTH}",
        "actor_rollout_ref.rollout.agent.num_workers=2",
        f"actor_rollout_ref.rollout.agent.default_agent_loop={AGENT}",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={agents}",
    ]


def _manager_from_config(config: Any) -> Any:
    """What ``RayPPOTrainer.init_workers`` does with ``agent_loop_manager_class``, with the LLM
    server client stood in for."""
    from verl.utils.import_utils import load_class_from_fqn

    manager_class = load_class_from_fqn(
        config.actor_rollout_ref.rollout.agent.agent_loop_manager_class, "AgentLoopManager"
    )
    return manager_class.create(config=config, llm_client=TinyModelServer(), teacher_client=None)


def test_agent_loop_manager_samples_each_request_at_its_temperature(local_ray, tmp_path):
    from tests.adapters.verl.testkit import compose_config

    config = compose_config(_rollout_overrides(tmp_path))
    _seam.use_tampo_agent_loop(config)
    manager = _manager_from_config(config)
    batch = _prompts(8, validate=False)
    temperatures = np.array([0.6, 0.6, 0.8, 0.8, 1.3, 1.3, 1.0, 0.6])
    _seam.set_rollout_temperatures(batch, temperatures)
    output = manager.generate_sequences(batch)
    assert output.non_tensor_batch["sampled_temperature"].tolist() == temperatures.tolist()
    assert tuple(output.batch["responses"].shape) == (8, RESPONSE_LENGTH)
    assert output.non_tensor_batch[_seam.ROLLOUT_TEMPERATURE_KEY].tolist() == temperatures.tolist()

    validation = manager.generate_sequences(_prompts(4, validate=True))
    assert validation.non_tensor_batch["sampled_temperature"].tolist() == [0.25] * 4
    for worker in manager.agent_loop_workers:
        ray.kill(worker)


def test_fit_with_the_real_agent_loop_manager(local_ray, tmp_path, monkeypatch):
    import tests.adapters.verl.testkit as kit

    kit.use_cpu_devices()
    kit.single_process_group()
    monkeypatch.setenv("TENSORBOARD_DIR", str(tmp_path / "tb"))
    temperatures = (0.6, 0.8, 1.0, 1.3)
    options = TampoOptions(config=TampoConfig(temperatures=temperatures, warmup_steps=1, seed=3))
    config = kit.trainer_config(tmp_path, "grpo", *_rollout_overrides(tmp_path))
    trainer = kit.build_trainer(monkeypatch, config, options, rollout=_manager_from_config)
    trainer.fit()
    group = trainer.actor_rollout_wg
    drawn = group.seen["old"]
    assert len(drawn) == 4 and set(drawn) <= set(temperatures)
    assert group.seen["sampled"] == [[t] * 8 for t in drawn], "every request sampled at T"
    assert group.seen["ref"] == drawn and group.seen["update"] == drawn
    assert trainer.tampo_state()["num_updates"] == 4
    for worker in trainer.async_rollout_manager.agent_loop_workers:
        ray.kill(worker)
