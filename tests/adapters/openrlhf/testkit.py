"""Shared pieces of the OpenRLHF adapter tests: a tiny local model, CPU Ray actors, a vLLM
engine stand-in.

Only the two CUDA-only packages (flash_attn, vllm) are replaced, by the import-level stand-ins
that ``scripts/ci/install-openrlhf.sh`` installs into the environment (``standins/README.md``).
Everything else is OpenRLHF's own code: ``Actor``, ``PolicyModelActor.forward`` / ``append`` /
``get_checkpoint_states``, ``ReferenceModelActor.forward``, ``RayActorGroup``,
``RemoteExperienceMaker``, ``NaiveReplayBuffer``, ``PPOTrainer`` with its ``fit`` loop,
``SamplesGenerator``, ``TensorboardLogger``, the agent executors and the CLI's parser and
validation. What the test actors add instead of DeepSpeed/CUDA/vLLM is marked where it is
defined. Ray workers import this module as ``tests.adapters.openrlhf.testkit``: Ray puts the
driver's working directory (the repository root) on their path.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

VOCAB = 64
PAD_ID, EOS_ID = 0, 1
MODEL_SEED = 1234
TEMPERATURES = (0.6, 0.8, 1.0, 1.3)
"""Candidate temperatures of the tests (a small grid containing the sources they use)."""


def ragged_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ragged batch of 4: a full row, two shorter rows, one without actions."""
    generator = torch.Generator().manual_seed(0)
    batch, seqlen, actions = 4, 12, 7
    lengths = [12, 9, 7, 10]
    sequences = torch.randint(3, 64, (batch, seqlen), generator=generator)
    attention_mask = torch.zeros(batch, seqlen, dtype=torch.long)
    action_mask = torch.zeros(batch, actions, dtype=torch.bool)
    for b, length in enumerate(lengths):
        attention_mask[b, :length] = 1
        sequences[b, length:] = 0
        # action column j scores token S - A + j, valid while that token is inside the row
        valid = max(0, length - (seqlen - actions))
        action_mask[b, :valid] = True
    action_mask[3] = False
    action_mask[0, 2] = False  # an environment-feedback token inside the response
    return sequences, attention_mask, action_mask


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


def tiny_actor(packing: bool = False, seed: int = MODEL_SEED) -> Any:
    """OpenRLHF's real ``Actor`` around ``tiny_model`` (``packing_samples`` is only set by the
    from-pretrained branch of ``Actor.__init__``, so it is set here by hand)."""
    from openrlhf.models.actor import Actor

    actor = Actor(tiny_model(seed))
    actor.packing_samples = packing
    return actor


def write_tokenizer(directory: Path) -> Path:
    """Save a word-level fast tokenizer over ``w0 .. w60`` (ids 3..63) to ``directory``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": PAD_ID, "<eos>": EOS_ID, "<bos>": 2}
    vocab.update({f"w{i}": i + 3 for i in range(VOCAB - 3)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>"
    )
    tokenizer.save_pretrained(directory)
    return directory


def write_prompts(path: Path, count: int, nan_reward: set[int] = frozenset()) -> Path:
    """A JSONL prompt set: ``{"prompt": "w3 w7 ...", "label": "0"}``; the prompts numbered in
    ``nan_reward`` get the label ``"nan"``, which ``EvenTokenExecutor`` rewards with NaN."""
    with path.open("w") as handle:
        for i in range(count):
            words = " ".join(f"w{(i * 7 + j * 3) % 50}" for j in range(2 + i % 3))
            label = "nan" if i in nan_reward else str(i % 2)
            handle.write(json.dumps({"prompt": words, "label": label}) + "\n")
    return path


class _CapturedArgs(Exception):
    def __init__(self, args: Any) -> None:
        super().__init__("captured")
        self.parsed = args


def _run_cli(argv: list[str]) -> None:
    sys.argv = ["train_ppo_ray", *argv]
    runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__")


def cli_args_through(entry: Callable[[list[str]], None], argv: list[str]) -> Any:
    """The hierarchical args that OpenRLHF's own ``train_ppo_ray`` parser and validation make
    of ``argv`` when ``entry(argv)`` runs the CLI: ``train`` is stopped at ``get_strategy``, its
    first step after ``ray.init`` (skipped: ``ray.is_initialized`` reads True meanwhile)."""
    import openrlhf.utils
    import ray

    def capture(args: Any) -> Any:
        raise _CapturedArgs(args)

    original, is_initialized, saved_argv = openrlhf.utils.get_strategy, ray.is_initialized, sys.argv
    openrlhf.utils.get_strategy = capture
    ray.is_initialized = lambda: True
    try:
        entry(argv)
    except _CapturedArgs as captured:
        return captured.parsed
    finally:
        openrlhf.utils.get_strategy, ray.is_initialized, sys.argv = (
            original,
            is_initialized,
            saved_argv,
        )
    raise AssertionError("train_ppo_ray never reached get_strategy")


def cli_args(argv: list[str]) -> Any:
    """``cli_args_through`` OpenRLHF's ``train_ppo_ray`` module itself."""
    return cli_args_through(_run_cli, argv)


def ppo_argv(estimator: str = "group_norm", **overrides: str) -> list[str]:
    """A small synchronous GRPO-style command line for ``cli_args`` (2 policy actors, 1
    reference actor, 1 engine, 4 samples per prompt); ``overrides`` maps flag -> value."""
    flags = {
        "--actor.model_name_or_path": "unused",
        "--data.prompt_dataset": "unused.jsonl",
        "--data.input_key": "prompt",
        "--data.label_key": "label",
        "--algo.advantage.estimator": estimator,
        "--rollout.n_samples_per_prompt": "4",
        "--rollout.batch_size": "2",
        "--rollout.micro_batch_size": "2",
        "--rollout.max_new_tokens": "6",
        "--data.max_len": "32",
        "--train.batch_size": "8",
        "--train.micro_batch_size": "2",
        "--actor.num_gpus_per_node": "2",
        "--ref.num_gpus_per_node": "1",
        "--algo.kl.init_coef": "0.01",
        "--vllm.num_engines": "1",
        "--reward.remote_url": "unused",
        **overrides,
    }
    argv = []
    for flag, value in flags.items():
        argv.extend([flag] if value == "" else [flag, value])
    return argv


def _use_cpu_as_cuda_device() -> None:
    # The real PolicyModelActor/ReferenceModelActor.forward move tensors to
    # torch.cuda.current_device(); on CPU that device is "cpu". Only in this test process.
    torch.cuda.current_device = lambda: "cpu"
    torch.set_num_threads(1)


def _remote_base(module: str, name: str) -> type:
    return getattr(importlib.import_module(module), name).__ray_actor_class__


def cpu_policy_actor_class() -> Any:
    """Ray actor class: the real ``PolicyModelActor`` with a CPU init instead of DeepSpeed."""
    import ray
    from openrlhf.trainer.ppo_utils import NaiveReplayBuffer

    base = _remote_base("openrlhf.trainer.ray.ppo_actor", "PolicyModelActor")

    class CpuActorTrainer:
        """Replaces ``ActorPPOTrainer`` (DeepSpeed optimiser): holds the real replay buffer;
        its ``ppo_train`` runs the real ``Actor`` under grad on every replayed micro-batch and
        reports what the test checks."""

        def __init__(self, actor: Any, micro_batch: int, packing: bool) -> None:
            self.actor = actor
            # NaiveReplayBuffer formats current_device() into a "cuda:N" target it only uses in
            # .sample(), which the DataLoader path below never calls.
            cpu_device, torch.cuda.current_device = torch.cuda.current_device, lambda: 0
            try:
                self.replay_buffer = NaiveReplayBuffer(micro_batch, 0, True, packing, False)
            finally:
                torch.cuda.current_device = cpu_device
            self.broadcasts = 0

        def ppo_train(self, kl_ctl: float) -> dict:
            loader = torch.utils.data.DataLoader(
                self.replay_buffer,
                batch_size=self.replay_buffer.sample_batch_size,
                shuffle=True,
                collate_fn=self.replay_buffer.collate_fn,
            )
            temperatures, gaps, tags = [], [], []
            for experience in loader:
                log_probs = self.actor(
                    experience.sequences, experience.action_mask, experience.attention_mask
                )
                mask = experience.action_mask.bool()
                gaps.append((log_probs - experience.action_log_probs)[mask].abs().max().item())
                # make_experience_batch keeps per-sample 0-d tensors in info as a list
                tags.extend(float(t) for t in experience.info["tampo_temperature"])
                temperatures.append(self.actor.temperature)
            return {
                "test/max_ratio_gap": max(gaps),
                "test/train_temperature": sum(temperatures) / len(temperatures),
                "test/tag_mean": sum(tags) / len(tags),
                "test/num_replayed": float(len(tags)),
            }

        def broadcast_to_vllm(self) -> None:
            self.broadcasts += 1

    class CpuPolicyModelActor(base):  # type: ignore[misc, valid-type]
        def init_cpu(self, packing: bool, micro_batch: int, states: dict | None = None) -> None:
            _use_cpu_as_cuda_device()
            self.strategy = SimpleNamespace(ring_attn_group=None, is_rank_0=lambda: True)
            self.actor = tiny_actor(packing)
            self.trainer = CpuActorTrainer(self.actor, micro_batch, packing)
            self.checkpoint_states = states or {}
            self.saved_client_states: list[dict] = []

        def fit(self, kl_ctl: float = 0) -> dict:
            # PolicyModelActor.fit minus its torch.cuda.synchronize().
            status = self.trainer.ppo_train(kl_ctl)
            self.trainer.replay_buffer.clear()
            return status

        def save_checkpoint(self, tag, client_states=None, metric_value=None, metric_key=None):
            # Stands in for DeepSpeed's save_checkpoint(client_state=...): keeps the states.
            self.saved_client_states.append(copy.deepcopy(client_states))

        def saved_states(self) -> list[dict]:
            return self.saved_client_states

        def temperature(self) -> float:
            return float(self.actor.temperature)

    return ray.remote(CpuPolicyModelActor)


def cpu_reference_actor_class() -> Any:
    """Ray actor class: the real ``ReferenceModelActor`` with a CPU init instead of DeepSpeed."""
    import ray

    base = _remote_base("openrlhf.trainer.ray.launcher", "ReferenceModelActor")

    class CpuReferenceModelActor(base):  # type: ignore[misc, valid-type]
        def init_cpu(self, packing: bool) -> None:
            _use_cpu_as_cuda_device()
            self.strategy = SimpleNamespace(ring_attn_group=None, is_rank_0=lambda: True)
            self.model = tiny_actor(packing)

        def temperature(self) -> float:
            return float(self.model.temperature)

    return ray.remote(CpuReferenceModelActor)


def cpu_group(actor_class: Any, num_actors: int) -> Any:
    """A real ``RayActorGroup`` of ``num_actors`` CPU actors (no GPU, no CPU reservation)."""
    from openrlhf.trainer.ray.launcher import RayActorGroup

    # one actor per "node": with several per node RayActorGroup reserves GPU bundles
    return RayActorGroup(num_actors, 1, actor_class, num_gpus_per_actor=0)


class TinySampler:
    """Stands in for vLLM's sampling inside the engine actor: ancestral sampling from
    ``tiny_model`` at ``sampling_params.temperature`` for up to ``max_tokens`` tokens."""

    def __init__(self, seed: int) -> None:
        self.model = tiny_model()
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def sample(self, prompt_ids: list[int], temperature: float, max_tokens: int) -> list[int]:
        ids = list(prompt_ids)
        for _ in range(max_tokens):
            logits = self.model(torch.tensor([ids])).logits[0, -1]
            probs = torch.softmax(logits / temperature, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=self.generator))
            ids.append(token)
            if token == EOS_ID:
                break
        return ids[len(prompt_ids) :]


class EvenTokenExecutor:
    """An agent executor (``AgentExecutorBase.execute``'s signature) for the engine stand-in:
    one turn through ``llm_engine.generate``, rewarded by the completion's share of even token
    ids (instead of a reward model or function), or NaN for the label ``"nan"``."""

    async def execute(
        self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None
    ) -> dict:
        prompt_ids = hf_tokenizer(prompt, add_special_tokens=False)["input_ids"]
        actions = await llm_engine.generate(prompt_ids, sampling_params)
        return {
            "prompt": prompt,
            "label": label,
            "images": None,
            "mm_train_inputs": None,
            "observation_tokens": prompt_ids + actions,
            "action_ranges": [(len(prompt_ids), len(prompt_ids) + len(actions))],
            "rollout_log_probs": None,
            "truncated": actions[-1] != EOS_ID,
            "reward": float("nan")
            if label == "nan"
            else sum(t % 2 == 0 for t in actions) / len(actions),
            "scores": None,
            "extra_logs": {},
        }


class FakeVLLMEngine:
    """Stands in for vLLM's ``RolloutRayActor`` with its layout: ``generate_responses`` runs
    ``self.executor.execute(..., llm_engine=self)`` per sample, and the executor calls
    ``self.generate`` per turn (which the TAMPO engine guard wraps). Records every temperature
    it generated at."""

    def __init__(self, seed: int) -> None:
        torch.set_num_threads(1)
        self.sampler = TinySampler(seed)
        self.executor = EvenTokenExecutor()
        self.temperatures: list[float] = []

    def get_num_unfinished_requests(self) -> int:
        return 0

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        self.temperatures.append(float(sampling_params.temperature))
        return self.sampler.sample(
            prompt_token_ids, sampling_params.temperature, sampling_params.max_tokens
        )

    async def generate_responses(
        self, prompt, label, sampling_params, max_length, hf_tokenizer, num_samples=1, images=None
    ) -> list[dict]:
        tasks = [
            self.executor.execute(
                prompt=prompt,
                label=label,
                sampling_params=sampling_params,
                max_length=max_length,
                hf_tokenizer=hf_tokenizer,
                llm_engine=self,
                images=images,
            )
            for _ in range(num_samples)
        ]
        return await asyncio.gather(*tasks)

    def seen_temperatures(self) -> list[float]:
        return self.temperatures


def fake_vllm_engine_class() -> Any:
    """Ray actor class of ``FakeVLLMEngine`` (no CPU reservation)."""
    import ray

    return ray.remote(num_cpus=0)(FakeVLLMEngine)


def ray_runtime_env() -> dict:
    """Ray ``runtime_env`` for the test workers: one thread each, offline hub."""
    return {
        "env_vars": {
            "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": "1",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1",
        }
    }
