"""Shared pieces of the verl adapter tests: a tiny local model on verl's real CPU engine path.

Real verl code: ``FSDPEngineWithLMHead`` (``infer_batch``, ``forward_backward_batch``,
``prepare_micro_batches``, ``forward_step``, ``prepare_model_inputs/outputs``,
``postprocess_batch_func``), ``TrainingWorker.infer_batch`` / ``_postprocess_output``,
``ActorRolloutRefWorker.compute_log_prob`` / ``compute_ref_log_prob``, ``DataProto``,
``left_right_2_no_padding`` / ``no_padding_2_padding``, the Hydra ``ppo_trainer`` config and,
in the trainer test, ``RayPPOTrainer`` itself. What stands in for what cannot run here is marked
where it is defined: the engine objects are built without FSDP wrapping (``__new__`` plus the
attributes ``FSDPEngine.__init__`` would set), the device helpers answer "cpu", the rollout
manager samples from the same tiny model in-process instead of vLLM/SGLang servers, and the
PPO optimiser step, weight sync and checkpoint I/O of the worker group are recorded, not run.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

VOCAB = 64
PAD_ID, EOS_ID = 0, 1
MODEL_SEED = 1234
PROMPT_LEN, RESPONSE_LEN = 5, 6


def use_cpu_devices() -> None:
    """verl's device helpers report "cuda" on a CPU-only box (its platform falls back to
    NVIDIA); make the engine, worker and micro-batching modules place tensors on the CPU. Test
    process only."""
    import verl.utils.seqlen_balancing as balancing_module
    import verl.workers.engine.fsdp.transformer_impl as engine_module
    import verl.workers.engine_workers as worker_module

    for module in (engine_module, worker_module, balancing_module):
        for name in ("get_device_id", "get_device_name"):
            if hasattr(module, name):
                setattr(module, name, lambda: "cpu")


def single_process_group() -> None:
    """A gloo world of one (the engine all-reduces token counts over its data-parallel group)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)


def tiny_model(seed: int = MODEL_SEED) -> torch.nn.Module:
    """A 2-layer Llama of vocabulary 64, built locally (no hub), fp32, eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        bos_token_id=2,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).eval()


def write_model_dir(directory: Any) -> str:
    """Save ``tiny_model`` and a word-level tokenizer over ``w0 .. w60`` (ids 3..63) to
    ``directory``: what ``actor_rollout_ref.model.path`` points verl's config checks at."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tiny_model().save_pretrained(directory)
    vocab = {"<pad>": PAD_ID, "<eos>": EOS_ID, "<bos>": 2}
    vocab.update({f"w{i}": i + 3 for i in range(VOCAB - 3)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>"
    )
    tokenizer.save_pretrained(directory)
    return str(directory)


class CallCounter:
    """Counts forward calls of a module (``calls``) through a forward pre-hook."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        module.register_forward_pre_hook(self._count)

    def _count(self, module: torch.nn.Module, args: Any) -> None:
        self.calls += 1


class _NoFlops:
    """Stands in for verl's ``FlopsCounter`` (its peak-FLOPS table has no CPU entry)."""

    @staticmethod
    def estimate_flops(tokens: Any, delta: float, images_seqlens: Any = None) -> tuple:
        return 0.0, 1.0


def local_engine(
    model: torch.nn.Module,
    micro_batch: int,
    remove_padding: bool,
    autocast_dtype: torch.dtype = torch.float32,
    max_token_len: int | None = None,
) -> Any:
    """verl's real ``FSDPEngineWithLMHead`` around ``model``, without FSDP wrapping: the
    attributes ``FSDPEngine.__init__`` and ``_build_fsdp_module`` would set, for one rank
    (``autocast_dtype``: the mixed-precision dtype ``forward_step`` autocasts to, fp32 = off;
    ``max_token_len``: use verl's dynamic batch sizing with this token budget per micro-batch)."""
    import verl.utils.torch_functional as verl_functional
    from verl.workers.config import FSDPEngineConfig
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    engine = FSDPEngineWithLMHead.__new__(FSDPEngineWithLMHead)
    engine.module = model
    engine.engine_config = FSDPEngineConfig(
        use_dynamic_bsz=max_token_len is not None,
        micro_batch_size_per_gpu=micro_batch,
        infer_micro_batch_size_per_gpu=micro_batch,
        max_token_len_per_gpu=max_token_len or 4096,
        infer_max_token_len_per_gpu=max_token_len or 4096,
    )
    engine.model_config = SimpleNamespace(use_remove_padding=remove_padding)
    engine._autocast_dtype = autocast_dtype
    engine.use_ulysses_sp = False
    engine.ulysses_sequence_parallel_size = 1
    engine.ulysses_device_mesh = None
    engine.ulysses_parallel_group = None
    engine.pad_to_length = False
    engine._is_offload_param = False
    engine._is_offload_optimizer = False
    engine.compute_entropy_from_logits = verl_functional.entropy_from_logits
    return engine


def local_training_worker(engine: Any, remove_padding: bool) -> Any:
    """verl's real ``TrainingWorker`` (its ``infer_batch`` / ``_postprocess_output``) holding
    ``engine``; built without ``Worker.__init__`` (no Ray, no process-group setup)."""
    from verl.workers.engine_workers import TrainingWorker

    worker = TrainingWorker.__new__(TrainingWorker)
    worker.engine = engine
    worker.engine_config = engine.engine_config
    worker.model_config = {"use_remove_padding": remove_padding}
    worker.flops_counter = _NoFlops()
    worker.device_name = "cpu"
    worker.loss_fn = None
    return worker


def local_actor_worker(
    policy: torch.nn.Module,
    reference: torch.nn.Module,
    micro_batch: int,
    remove_padding: bool,
    autocast_dtype: torch.dtype = torch.float32,
) -> Any:
    """The adapter's ``TampoActorRolloutRefWorker`` with local policy and reference engines and the
    hook installed as its ``init_model`` installs it (``init_model``'s verl part builds FSDP
    engines and is not run)."""
    from tampo_core.adapters.verl.engine_hook import install_engine_hook
    from tampo_core.adapters.verl.worker import TampoActorRolloutRefWorker

    worker = TampoActorRolloutRefWorker.__new__(TampoActorRolloutRefWorker)
    policy_engine = local_engine(policy, micro_batch, remove_padding, autocast_dtype)
    reference_engine = local_engine(reference, micro_batch, remove_padding, autocast_dtype)
    worker.actor = local_training_worker(policy_engine, remove_padding)
    worker.ref = local_training_worker(reference_engine, remove_padding)
    worker.enable_routing_replay = False
    assert install_engine_hook(worker)
    return worker


def pad_batch(
    prompts: list[list[int]],
    responses: list[list[int]],
    prompt_len: int = PROMPT_LEN,
    response_len: int = RESPONSE_LEN,
) -> dict[str, torch.Tensor]:
    """verl's rollout layout: left-padded prompts, right-padded responses, both fixed width."""
    count = len(prompts)
    prompt_ids = torch.full((count, prompt_len), PAD_ID)
    response_ids = torch.full((count, response_len), PAD_ID)
    prompt_mask = torch.zeros(count, prompt_len, dtype=torch.long)
    response_mask = torch.zeros(count, response_len, dtype=torch.long)
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        prompt_ids[i, prompt_len - len(prompt) :] = torch.tensor(prompt)
        prompt_mask[i, prompt_len - len(prompt) :] = 1
        response_ids[i, : len(response)] = torch.tensor(response)
        response_mask[i, : len(response)] = 1
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
    return {
        "prompts": prompt_ids,
        "responses": response_ids,
        "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
        "attention_mask": attention_mask,
        "position_ids": (attention_mask.cumsum(dim=1) - 1).clamp(min=0),
        "response_mask": response_mask,
    }


def random_batch(count: int, seed: int = 3) -> dict[str, torch.Tensor]:
    """Ragged prompts (1-5 tokens) and responses (1-6 tokens) of random ids in [3, 64)."""
    generator = torch.Generator().manual_seed(seed)
    prompts, responses = [], []
    for i in range(count):
        prompts.append(torch.randint(3, VOCAB, (1 + (i * 2) % PROMPT_LEN,), generator=generator))
        responses.append(
            torch.randint(3, VOCAB, (1 + (i * 5) % RESPONSE_LEN,), generator=generator)
        )
    return pad_batch([p.tolist() for p in prompts], [r.tolist() for r in responses])


def reference_loglik(
    model: torch.nn.Module, tensors: dict[str, torch.Tensor], temperatures: tuple[float, ...]
) -> torch.Tensor:
    """float64 ``[B, K]``: masked mean of ``log_softmax(z / T_k)`` at the response tokens, by the
    definition, from a padded forward of ``model`` (not verl's packed one)."""
    from tampo_core.loglik import reference_multi_temperature_loglik

    with torch.no_grad():
        logits = model(
            input_ids=tensors["input_ids"],
            attention_mask=tensors["attention_mask"],
            position_ids=tensors["position_ids"],
        ).logits
    scoring = logits[:, PROMPT_LEN - 1 : PROMPT_LEN - 1 + RESPONSE_LEN]
    return reference_multi_temperature_loglik(
        scoring, tensors["responses"], temperatures, mask=tensors["response_mask"].bool()
    )


def verl_response_mean(log_probs: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over the response of verl's padded ``[B, R]`` log-probs."""
    mask = response_mask.float()
    return (log_probs * mask).sum(dim=1) / mask.sum(dim=1)


def compose_config(overrides: list[str]) -> Any:
    """verl's own ``ppo_trainer`` Hydra config with ``overrides``."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("verl.trainer.config", version_base=None):
        return compose("ppo_trainer", overrides=overrides)


class PromptDataset(torch.utils.data.Dataset):
    """Prompts of 2-4 token ids, with the keys verl's reward path expects."""

    def __init__(self, count: int) -> None:
        self.prompts = [[3 + (i * 7 + j * 3) % 50 for j in range(2 + i % 3)] for i in range(count)]

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> dict:
        return {
            "prompt_index": torch.tensor(index),
            "raw_prompt_ids": self.prompts[index],
            "raw_prompt": [
                {"role": "user", "content": " ".join(f"w{i - 3}" for i in self.prompts[index])}
            ],
            "data_source": "toy",
        }


class CpuRolloutManager:
    """Stands in for the agent-loop manager and its vLLM/SGLang servers: for each request it
    builds the sampling parameters as ``AgentLoopWorker`` does (from the rollout config, then the
    adapter's ``request_sampling_params`` with the request's non-tensor entries), samples from the
    tiny model at that temperature and scores the completion (share of even token ids) as the
    reward loop would (``rm_scores`` at the last response token)."""

    def __init__(self, config: Any, seed: int) -> None:
        torch.set_num_threads(1)
        self.config = config
        self.model = tiny_model()
        self.seed = seed
        self.temperatures: list[list[float]] = []

    @torch.no_grad()
    def generate_sequences(self, gen_batch: Any) -> Any:
        from verl.protocol import DataProto

        from tampo_core.adapters.verl.rollout import request_sampling_params

        step = int(gen_batch.meta_info["global_steps"])
        generator = torch.Generator().manual_seed(self.seed * 1000 + step)
        rollout = self.config.actor_rollout_ref.rollout
        base = {"temperature": rollout.temperature, "top_p": rollout.top_p}
        prompts, responses, temperatures = [], [], []
        for i in range(len(gen_batch)):
            kwargs = {k: v[i] for k, v in gen_batch.non_tensor_batch.items()}
            params = request_sampling_params(dict(base), kwargs)
            temperatures.append(params["temperature"])
            ids = list(kwargs["raw_prompt_ids"])
            response: list[int] = []
            while len(response) < RESPONSE_LEN:
                logits = self.model(torch.tensor([ids + response])).logits[0, -1]
                probs = torch.softmax(logits / params["temperature"], dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
                response.append(token)
                if token == EOS_ID:
                    break
            prompts.append(ids)
            responses.append(response)
        self.temperatures.append(temperatures)
        tensors = pad_batch(prompts, responses)
        scores = torch.zeros(len(prompts), RESPONSE_LEN)
        for i, response in enumerate(responses):
            scores[i, len(response) - 1] = sum(t % 2 == 0 for t in response) / len(response)
        # the agent loop's output always carries (possibly empty) multi-modal inputs
        empty_inputs = np.array([{} for _ in prompts], dtype=object)
        output = DataProto.from_single_dict(
            {**tensors, "rm_scores": scores, "multi_modal_inputs": empty_inputs}
        )
        output.meta_info = {"timing": {}}
        return output


class CpuWorkerGroup:
    """Stands in for the ``RayWorkerGroup`` of ``ActorRolloutRefWorker``s: forwards
    ``compute_log_prob`` / ``compute_ref_log_prob`` to one real (CPU) worker, records what the
    PPO update receives and checks its ratio at the update's temperature with the real policy
    engine (no optimiser step), keeps checkpoints as the model state in the folder."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.seen: dict[str, list[Any]] = {
            "old": [],
            "ref": [],
            "update": [],
            "advantages": [],
            "sampled": [],
        }
        self.saved: list[str] = []

    def compute_log_prob(self, data: Any) -> Any:
        from verl.utils import tensordict_utils as tu

        self.seen["old"].append(tu.get(data, "temperature"))
        sampled = tu.get(data, "sampled_temperature", default=None)
        if sampled is not None:
            self.seen["sampled"].append([float(t) for t in sampled])
        return self.worker.compute_log_prob(data)

    def compute_ref_log_prob(self, data: Any) -> Any:
        from verl.utils import tensordict_utils as tu

        self.seen["ref"].append(tu.get(data, "temperature"))
        return self.worker.compute_ref_log_prob(data)

    def update_actor(self, data: Any) -> Any:
        from verl.utils import tensordict_utils as tu
        from verl.workers.utils.padding import no_padding_2_padding

        temperature = tu.get(data, "temperature")
        self.seen["update"].append(temperature)
        self.seen["advantages"].append((data["advantages"].clone(), data["response_mask"].clone()))
        probe = data.clone()
        tu.assign_non_tensor(probe, calculate_entropy=False, compute_loss=False)
        output = self.worker.actor.infer_batch(probe)
        log_probs = no_padding_2_padding(tu.get(output, "log_probs"), data)
        mask = data["response_mask"].bool()
        gap = (log_probs - data["old_log_probs"])[mask].abs().max().item()
        metrics = {"mfu": 0.0, "test/max_ratio_gap": gap, "test/train_temperature": temperature}
        return tu.get_tensordict(tensor_dict={}, non_tensor_dict={"metrics": metrics})

    def save_checkpoint(self, local_path: str, *args: Any, **kwargs: Any) -> None:
        os.makedirs(local_path, exist_ok=True)
        torch.save(self.worker.actor.engine.module.state_dict(), os.path.join(local_path, "m.pt"))
        self.saved.append(local_path)

    def load_checkpoint(self, local_path: str, *args: Any, **kwargs: Any) -> None:
        state = torch.load(os.path.join(local_path, "m.pt"))
        self.worker.actor.engine.module.load_state_dict(state)


class _ReplicaStandIn:
    """Stands in for verl's ``CheckpointEngineManager`` (weight sync to the rollout servers)."""

    def __init__(self) -> None:
        self.updates = 0

    def update_weights(self, global_steps: int) -> None:
        self.updates += 1

    def sleep_replicas(self) -> None:
        return None


def cpu_workers(rollout: Callable[[Any], Any]) -> Callable[[Any], None]:
    """A replacement for ``RayPPOTrainer.init_workers`` that gives the trainer CPU stand-ins
    for its worker group and weight sync, and ``rollout(config)`` as its rollout manager (the
    adapter's ``init_workers`` then wraps the group as it would wrap the Ray one)."""

    def init_workers(trainer: Any) -> None:
        worker = local_actor_worker(tiny_model(), tiny_model(), micro_batch=2, remove_padding=True)
        trainer.actor_rollout_wg = CpuWorkerGroup(worker)
        trainer.ref_policy_wg = trainer.actor_rollout_wg
        trainer.async_rollout_manager = rollout(trainer.config)
        trainer.checkpoint_manager = _ReplicaStandIn()

    return init_workers


def trainer_config(tmp_path: Any, estimator: str, *extra: str) -> Any:
    """verl's ``ppo_trainer`` config for a 4-step CPU run: 2 prompts x 4 samples per step, KL
    loss (so the reference pass runs), a checkpoint every step, TensorBoard logging."""
    return compose_config(
        [
            "trainer.use_v1=false",
            f"algorithm.adv_estimator={estimator}",
            "data.train_batch_size=2",
            "data.val_batch_size=2",
            "data.dataloader_num_workers=0",
            "actor_rollout_ref.rollout.n=4",
            "actor_rollout_ref.actor.ppo_mini_batch_size=2",
            "actor_rollout_ref.actor.use_kl_loss=true",
            "trainer.total_epochs=1",
            "trainer.val_before_train=false",
            "trainer.test_freq=-1",
            "trainer.balance_batch=false",
            "trainer.save_freq=1",
            "trainer.n_gpus_per_node=1",
            "trainer.logger=[tensorboard]",
            f"trainer.default_local_dir={tmp_path / 'ckpt'}",
            *extra,
        ]
    )


def build_trainer(
    monkeypatch: Any, config: Any, options: Any, rollout: Callable[[Any], Any] | None = None
) -> Any:
    """The adapter's ``TampoRayPPOTrainer`` through verl's real ``RayPPOTrainer.__init__`` (8
    prompts, verl's collate function), its workers set up by ``cpu_workers(rollout)`` (default:
    ``CpuRolloutManager``)."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer, Role
    from verl.utils.dataset.rl_dataset import collate_fn

    from tampo_core.adapters.verl.trainer import TampoRayPPOTrainer

    trainer = TampoRayPPOTrainer(
        config=config,
        tokenizer=tokenizer_standin(),
        role_worker_mapping={Role.ActorRolloutRef: object},
        resource_pool_manager=PoolStandIn(),
        train_dataset=PromptDataset(8),
        val_dataset=PromptDataset(2),
        collate_fn=collate_fn,
        tampo=options,
    )
    # only around the call: construction checks the contract against verl's own init_workers
    with monkeypatch.context() as patch:
        patch.setattr(
            RayPPOTrainer,
            "init_workers",
            cpu_workers(rollout or (lambda config: CpuRolloutManager(config, seed=0))),
        )
        trainer.init_workers()
    return trainer


class PoolStandIn:
    """Stands in for ``ResourcePoolManager`` (Ray placement groups) in the throughput metric."""

    @staticmethod
    def get_n_gpus() -> int:
        return 1


def tokenizer_standin() -> Any:
    """What ``RayPPOTrainer`` reads of a tokenizer outside validation."""
    return SimpleNamespace(eos_token_id=EOS_ID, pad_token_id=PAD_ID)
