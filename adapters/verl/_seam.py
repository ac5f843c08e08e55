"""Every touch of verl's internals made by the TAMPO adapter, version-checked in one place.

The adapter relies on names of verl 0.9.x that are not a stable API:

- driver: ``RayPPOTrainer`` (``trainer/ppo/ray_trainer.py``, the synchronous trainer that
  ``main_ppo`` runs with ``trainer.use_v1=false``): ``fit`` writes
  ``batch.meta_info["temperature"]`` from ``config.actor_rollout_ref.rollout.temperature`` and
  calls, per step, ``_get_gen_batch``, ``_compute_old_log_prob``, ``_compute_ref_log_prob``,
  ``compute_advantage``, ``_update_actor`` (which writes the temperature again) and
  ``_save_checkpoint``; ``_load_checkpoint`` runs before the loop; ``init_workers`` builds the
  agent-loop manager named by ``rollout.agent.agent_loop_manager_class``;
- worker: ``ActorRolloutRefWorker.init_model`` / ``compute_log_prob`` (``self.actor`` is a
  ``TrainingWorker`` holding ``engine``), ``FSDPEngineWithLMHead.forward_step`` calling
  ``self.prepare_model_outputs(output, output_args, micro_batch, ...)`` on the raw model output
  (``output.logits`` unscaled; the division by ``micro_batch["temperature"]``, a float or a
  ``(bsz,)`` tensor, is out of place), and ``postprocess_batch_func`` gathering every
  ``model_output`` key as nested per-sample tensors;
- rollout: ``AgentLoopManager.agent_loop_workers_class`` and
  ``AgentLoopWorker._run_agent_loop(sampling_params, trajectory, *, agent_name, trace, **kw)``,
  which receives every ``non_tensor_batch`` entry of its sample as a keyword;
- launcher: ``main_ppo.main`` importing ``TaskRunner`` from ``main_ppo_v0`` at call time, whose
  ``run`` builds ``RayPPOTrainer`` (a module global) and registers the actor worker class in
  ``add_actor_rollout_worker``.

``check_contract`` verifies these against the installed verl (the trainer and the launcher run
it first); ``tests/adapters/verl/test_contract.py`` fails loudly when verl changes.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from packaging.version import Version

from tampo_core.adapters._contract import resolve, source_problems
from tampo_core.adapters._versions import require_version

SUPPORTED_VERL_PIN = ">=0.9,<0.10"
"""verl versions the adapter is tested against (the ``tampo-core[verl]`` pin)."""

ROLLOUT_TEMPERATURE_KEY = "tampo_temperature"
"""``non_tensor_batch`` key of each request's sampling temperature (float64 per sample)."""

TEMPERATURES_KEY = "tampo_temperatures"
"""``meta_info`` key that asks the policy engine for the K likelihoods (the candidate grid)."""

CHUNK_SIZE_KEY = "tampo_chunk_size"
"""``meta_info`` key of the likelihood kernel's chunk size (None: its default)."""

LOGLIK_KEY = "tampo_loglik"
"""``model_output`` key of each sample's ``[K]`` float32 mean likelihoods."""

NUM_TOKENS_KEY = "tampo_num_tokens"
"""``model_output`` key of each sample's ``[1]`` int64 count of scored response tokens."""

CHECKPOINT_FILE = "tampo_meta_policy.json"
"""File of the meta-policy state inside verl's ``global_step_<n>`` checkpoint folder."""

AGENT_LOOP_MANAGER = "tampo_core.adapters.verl.rollout.TampoAgentLoopManager"
"""What the trainer sets ``actor_rollout_ref.rollout.agent.agent_loop_manager_class`` to."""

SUPPORTED_ESTIMATORS = ("grpo", "rloo", "reinforce_plus_plus", "reinforce_plus_plus_baseline")
"""``algorithm.adv_estimator`` values whose advantages the adapter reads (Dr. GRPO is ``grpo``
with ``norm_adv_by_std_in_grpo=false``): outcome estimators that give every response token of a
trajectory the same advantage."""

SUPPORTED_STRATEGIES = ("fsdp", "fsdp2")
"""Actor strategies whose engine (``FSDPEngineWithLMHead``) the likelihood hook wraps."""

_METHOD_PARAMS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("verl.trainer.ppo.ray_trainer", "RayPPOTrainer._get_gen_batch", ("self", "batch")),
    ("verl.trainer.ppo.ray_trainer", "RayPPOTrainer._compute_old_log_prob", ("self", "batch")),
    ("verl.trainer.ppo.ray_trainer", "RayPPOTrainer._compute_ref_log_prob", ("self", "batch")),
    ("verl.trainer.ppo.ray_trainer", "RayPPOTrainer._update_actor", ("self", "batch")),
    ("verl.trainer.ppo.ray_trainer", "RayPPOTrainer._save_checkpoint", ("self",)),
    ("verl.trainer.ppo.ray_trainer", "RayPPOTrainer._load_checkpoint", ("self",)),
    ("verl.trainer.ppo.ray_trainer", "RayPPOTrainer.init_workers", ("self",)),
    (
        "verl.workers.engine.fsdp.transformer_impl",
        "FSDPEngineWithLMHead.prepare_model_outputs",
        ("self", "output", "output_args", "micro_batch", "logits_processor_func"),
    ),
    (
        "verl.experimental.agent_loop.agent_loop",
        "AgentLoopWorker._run_agent_loop",
        ("self", "sampling_params", "trajectory", "agent_name", "trace", "kwargs"),
    ),
    ("verl.trainer.main_ppo_v0", "BaseTaskRunner.add_actor_rollout_worker", ("self", "config")),
)
"""(module, qualified name, leading parameters) of every method the adapter overrides or wraps."""

_SOURCE_CONTRACT: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "verl.trainer.ppo.ray_trainer",
        "RayPPOTrainer.fit",
        (
            'batch.meta_info["temperature"] = self.config.actor_rollout_ref.rollout.temperature',
            "gen_batch = self._get_gen_batch(batch)",
            "self.async_rollout_manager.generate_sequences(combined_gen_batch)",
            "self._compute_old_log_prob(batch)",
            "self._compute_ref_log_prob(batch)",
            "batch = compute_advantage(",
            "actor_output = self._update_actor(batch)",
            "metrics.update(actor_output_metrics)",
            "self._save_checkpoint()",
            "self._load_checkpoint()",
        ),
    ),
    (
        "verl.trainer.ppo.ray_trainer",
        "RayPPOTrainer._update_actor",
        (
            'batch.meta_info["temperature"] = rollout_config.temperature',
            "self.actor_rollout_wg.update_actor(batch_td)",
        ),
    ),
    (
        "verl.trainer.ppo.ray_trainer",
        "RayPPOTrainer._compute_old_log_prob",
        ("batch_td = batch.to_tensordict()", "self.actor_rollout_wg.compute_log_prob(batch_td)"),
    ),
    (
        "verl.trainer.ppo.ray_trainer",
        "RayPPOTrainer._compute_ref_log_prob",
        ("batch_td = batch.to_tensordict()",),
    ),
    (
        "verl.trainer.ppo.ray_trainer",
        "RayPPOTrainer._validate",
        ("test_gen_batch.meta_info = {", '"validate": True'),
    ),
    (
        "verl.trainer.ppo.ray_trainer",
        "RayPPOTrainer.init_workers",
        (
            'get("agent_loop_manager_class")',
            "self.async_rollout_manager = AgentLoopManager.create(",
        ),
    ),
    (
        "verl.trainer.ppo.ray_trainer",
        "RayPPOTrainer._save_checkpoint",
        ('f"global_step_{self.global_steps}"',),
    ),
    (
        "verl.trainer.ppo.ray_trainer",
        "RayPPOTrainer._load_checkpoint",
        ("find_latest_ckpt_path(checkpoint_folder)", "self.config.trainer.resume_from_path"),
    ),
    (
        "verl.protocol",
        "DataProto.to_tensordict",
        ("non_tensor_dict=self.meta_info",),
    ),
    (
        "verl.workers.engine.fsdp.transformer_impl",
        "FSDPEngineWithLMHead.forward_step",
        ("raw_output = self.module(", "model_output = self.prepare_model_outputs("),
    ),
    (
        "verl.workers.engine.fsdp.transformer_impl",
        "FSDPEngineWithLMHead.prepare_model_inputs",
        ('temperature = micro_batch["temperature"]', 'output_args["input_ids_rmpad_rolled"]'),
    ),
    (
        "verl.workers.engine.fsdp.transformer_impl",
        "FSDPEngineWithLMHead.prepare_model_outputs",
        (
            "logits_rmpad = output.logits.squeeze(0)",
            "logits = output.logits",
            "_scale_logits_by_temperature(",
        ),
    ),
    (
        "verl.workers.engine.fsdp.transformer_impl",
        "_scale_logits_by_temperature",
        ("return logits / temperature",),
    ),
    (
        "verl.workers.engine.utils",
        "postprocess_batch_func",
        ('for key, val in o["model_output"].items():', "nt.unbind()"),
    ),
    (
        "verl.workers.utils.padding",
        "no_padding_2_padding",
        ("values[seq_offset - resp_len - 1 : seq_offset - 1]",),
    ),
    (
        "verl.workers.engine_workers",
        "ActorRolloutRefWorker.compute_log_prob",
        ("self.actor.infer_batch(data)",),
    ),
    (
        "verl.workers.engine_workers",
        "TrainingWorker.__init__",
        ("self.engine: BaseEngine = EngineRegistry.new(",),
    ),
    (
        "verl.experimental.agent_loop.agent_loop",
        "AgentLoopWorker.generate_sequences",
        (
            "temperature=config.temperature",
            "kwargs = {k: v[i] for k, v in batch.non_tensor_batch.items()",
            "self._run_agent_loop(sample_sampling_params",
        ),
    ),
    (
        "verl.experimental.agent_loop.agent_loop",
        "AgentLoopWorker._run_agent_loop",
        ("await agent_loop.run(sampling_params, **kwargs)",),
    ),
    (
        "verl.experimental.agent_loop.agent_loop",
        "AgentLoopManager.__init__",
        ('if not hasattr(self, "agent_loop_workers_class")',),
    ),
)
"""(module, qualified name, snippets its source must contain) for the trainer and worker side."""

_LAUNCHER_SOURCE_CONTRACT: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "verl.trainer.main_ppo",
        "main",
        (
            "from verl.trainer.main_ppo_v0 import TaskRunner",
            "run_ppo(config, task_runner_class=TaskRunner)",
        ),
    ),
    (
        "verl.trainer.main_ppo_v0",
        "TaskRunner.run",
        (
            "self.add_actor_rollout_worker(config)",
            "trainer = RayPPOTrainer(",
            "trainer.init_workers()",
            "trainer.fit()",
        ),
    ),
    (
        "verl.trainer.main_ppo_v0",
        "BaseTaskRunner.add_actor_rollout_worker",
        ("actor_rollout_cls = ActorRolloutRefWorker", "ray.remote(actor_rollout_cls)"),
    ),
)
"""(module, qualified name, snippets) for the launcher contract."""


def check_verl_version(version: str | None = None) -> Version:
    """Raise ImportError unless the installed (or given) verl version is supported."""
    return require_version("verl", SUPPORTED_VERL_PIN, "verl", version)


def _parameter_problems(contract: Iterable[tuple[str, str, tuple[str, ...]]]) -> list[str]:
    problems = []
    for module, qualname, expected in contract:
        try:
            function = resolve(module, qualname)
        except (AttributeError, ImportError) as error:
            problems.append(f"{module}.{qualname} is missing ({error})")
            continue
        got = tuple(inspect.signature(function).parameters)[: len(expected)]
        if got != expected:
            problems.append(f"{module}.{qualname}: expected parameters {expected}, got {got}")
    return problems


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        raise RuntimeError(
            f"verl internals the TAMPO adapter relies on ({what}) changed; the adapter supports "
            f"verl{SUPPORTED_VERL_PIN}:\n- " + "\n- ".join(problems)
        )


def check_contract() -> None:
    """Raise RuntimeError naming every trainer, worker or rollout internal that no longer
    matches."""
    check_verl_version()
    from verl.workers.config.rollout import AgentLoopConfig

    problems = source_problems(_SOURCE_CONTRACT) + _parameter_problems(_METHOD_PARAMS)
    if "agent_loop_manager_class" not in AgentLoopConfig.__dataclass_fields__:
        problems.append("AgentLoopConfig has no agent_loop_manager_class field")
    _raise_if(problems, "trainer side")


def check_launcher_contract() -> None:
    """Raise RuntimeError if ``main_ppo.main`` no longer runs ``main_ppo_v0.TaskRunner`` (looked
    up at call time) or that no longer builds ``RayPPOTrainer`` (what the launcher swaps)."""
    check_verl_version()
    _raise_if(source_problems(_LAUNCHER_SOURCE_CONTRACT), "launcher")


# --- configuration -------------------------------------------------------------------------


def unsupported_features(config: Any) -> list[str]:
    """verl options (an OmegaConf ``ppo_trainer`` config) the adapter refuses, as reasons."""
    reasons = []
    trainer, algorithm = config.trainer, config.algorithm
    actor = config.actor_rollout_ref.actor
    rollout, model = config.actor_rollout_ref.rollout, config.actor_rollout_ref.model
    if trainer.get("use_v1", False):
        reasons.append(
            "trainer.use_v1=true: the TransferQueue trainer (verl.trainer.ppo.v1) is not "
            "supported; the TAMPO adapter runs RayPPOTrainer (trainer.use_v1=false)"
        )
    estimator = str(algorithm.adv_estimator)
    if estimator not in SUPPORTED_ESTIMATORS:
        reasons.append(
            f"algorithm.adv_estimator={estimator}: TAMPO reads one advantage per trajectory; "
            f"supported: {', '.join(SUPPORTED_ESTIMATORS)} (Dr. GRPO: grpo with "
            "algorithm.norm_adv_by_std_in_grpo=false)"
        )
    if model.get("use_fused_kernels", False):
        reasons.append(
            "actor_rollout_ref.model.use_fused_kernels=true: the fused kernels never build the "
            "logits the likelihoods come from (and forbid per-sample temperatures)"
        )
    if str(actor.strategy) not in SUPPORTED_STRATEGIES:
        reasons.append(
            f"actor_rollout_ref.actor.strategy={actor.strategy}: the likelihood hook wraps the "
            f"FSDP engine only ({', '.join(SUPPORTED_STRATEGIES)})"
        )
    if int(actor.get("ulysses_sequence_parallel_size", 1)) > 1:
        reasons.append(
            "actor_rollout_ref.actor.ulysses_sequence_parallel_size > 1: each rank then holds a "
            "slice of the logits; not supported"
        )
    correction = algorithm.get("rollout_correction", None)
    if correction is not None and correction.get("bypass_mode", False):
        reasons.append(
            "algorithm.rollout_correction.bypass_mode=true: no old-log-prob forward runs, so "
            "TAMPO would need an extra backbone pass; not supported"
        )
    if rollout.get("multi_turn", {}).get("enable", False):
        reasons.append("actor_rollout_ref.rollout.multi_turn.enable=true: not verified")
    manager = rollout.get("agent", {}).get("agent_loop_manager_class")
    if manager not in (None, AGENT_LOOP_MANAGER):
        reasons.append(
            f"actor_rollout_ref.rollout.agent.agent_loop_manager_class={manager}: TAMPO installs "
            f"its own ({AGENT_LOOP_MANAGER})"
        )
    return reasons


def use_tampo_agent_loop(config: Any) -> None:
    """Make ``init_workers`` build the TAMPO agent-loop manager."""
    from omegaconf import open_dict

    with open_dict(config):
        config.actor_rollout_ref.rollout.agent.agent_loop_manager_class = AGENT_LOOP_MANAGER


def set_config_temperature(config: Any, temperature: float) -> None:
    """Set ``actor_rollout_ref.rollout.temperature``, which ``_update_actor`` copies into the
    training batch."""
    config.actor_rollout_ref.rollout.temperature = float(temperature)


def training_batch(batch: Any) -> bool:
    """Whether ``_get_gen_batch`` got a training batch: ``fit`` has set its temperature, while
    ``_validate`` passes a fresh batch (and then sets ``validate`` in the generation batch)."""
    return "temperature" in batch.meta_info and not batch.meta_info.get("validate", False)


def set_batch_temperature(batch: Any, temperature: float) -> None:
    """The temperature ``compute_log_prob`` / ``compute_ref_log_prob`` apply to this batch."""
    batch.meta_info["temperature"] = float(temperature)


def set_rollout_temperatures(gen_batch: Any, temperatures: np.ndarray) -> None:
    """Give each request of a generation batch its sampling temperature (float64 ``[B]``)."""
    values = np.asarray(temperatures, dtype=np.float64)
    if values.shape != (len(gen_batch),):
        raise ValueError(
            f"temperatures: expected one per request, shape ({len(gen_batch)},), got {values.shape}"
        )
    gen_batch.non_tensor_batch[ROLLOUT_TEMPERATURE_KEY] = values


def request_loglik(batch: Any, temperatures: tuple[float, ...], chunk_size: int | None) -> None:
    """Ask the policy engine's next forward over ``batch`` for the K likelihoods."""
    batch.meta_info[TEMPERATURES_KEY] = tuple(float(t) for t in temperatures)
    batch.meta_info[CHUNK_SIZE_KEY] = chunk_size


def clear_loglik_request(batch: Any) -> None:
    """Undo ``request_loglik`` (the update and reference passes must not compute them)."""
    batch.meta_info.pop(TEMPERATURES_KEY, None)
    batch.meta_info.pop(CHUNK_SIZE_KEY, None)


def batch_input_ids(batch: Any) -> torch.Tensor:
    """``input_ids`` int ``[B, S]`` (prompt and response, padded) of a ``DataProto`` batch."""
    return batch.batch["input_ids"]


def batch_tensors(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids [B, S], response_mask [B, R], advantages [B, R])`` of a training batch."""
    tensors = batch.batch
    return tensors["input_ids"], tensors["response_mask"], tensors["advantages"]


def trajectory_rewards(batch: Any) -> torch.Tensor:
    """float32 ``[B]``: each trajectory's reward, the sum of verl's ``token_level_scores`` (the
    reward function's / reward model's scores, before any KL penalty in the reward)."""
    return batch.batch["token_level_scores"].sum(dim=-1).float()


def add_step_metrics(actor_output: Any, metrics: dict[str, float]) -> None:
    """Add ``metrics`` to what ``_update_actor`` returns; ``fit`` reduces and logs them with the
    step's metrics through ``Tracking``."""
    actor_output.meta_info["metrics"].update(metrics)


def row_keys(input_ids: torch.Tensor) -> list[str]:
    """Content key of each row of an int ``[B, S]`` token batch (blake2b of its bytes), to check
    that likelihoods and advantages refer to the same samples in the same order."""
    array = input_ids.detach().to("cpu", torch.int64).contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in array]


# --- worker group and checkpoints (driver) --------------------------------------------------


def wrap_compute_log_prob(trainer: Any, consume: Callable[[Any], None]) -> None:
    """Call ``consume(output)`` on each ``actor_rollout_wg.compute_log_prob`` result (a
    TensorDict) before ``_compute_old_log_prob`` reads it."""
    group = trainer.actor_rollout_wg
    original = group.compute_log_prob

    def compute_log_prob(*args: Any, **kwargs: Any) -> Any:
        output = original(*args, **kwargs)
        consume(output)
        return output

    group.compute_log_prob = compute_log_prob


def pop_loglik(output: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(loglik [B, K] float32, num_tokens [B] int64)`` taken out of a ``compute_log_prob``
    output, or None when it carries none."""
    loglik = output.get(LOGLIK_KEY, None)
    if loglik is None:
        return None
    counts = output.pop(NUM_TOKENS_KEY)
    del output[LOGLIK_KEY]
    return (
        torch.stack(list(loglik.unbind())).float(),
        torch.cat(list(counts.unbind())).long(),
    )


def checkpoint_folder(config: Any, global_steps: int, *, saving: bool) -> str:
    """The ``global_step_<n>`` folder ``_save_checkpoint`` writes (``saving``) or
    ``_load_checkpoint`` resumed from (local paths only, as verl's loader)."""
    trainer = config.trainer
    if not saving and trainer.resume_mode == "resume_path":
        folder = str(trainer.resume_from_path)
    else:
        folder = os.path.join(str(trainer.default_local_dir), f"global_step_{global_steps}")
    return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)


# --- worker side ----------------------------------------------------------------------------


def worker_base_class() -> type:
    """verl's actor/rollout/reference worker class (``ActorRolloutRefWorker``)."""
    from verl.workers.engine_workers import ActorRolloutRefWorker

    return ActorRolloutRefWorker


def register_one_to_all() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """verl's ``@register(dispatch_mode=Dispatch.ONE_TO_ALL)``, for an overridden worker method."""
    from verl.single_controller.base.decorator import Dispatch, register

    return register(dispatch_mode=Dispatch.ONE_TO_ALL)


def policy_engine(worker: Any) -> Any | None:
    """The policy engine of an ``ActorRolloutRefWorker`` (None for a reference-only worker)."""
    actor = getattr(worker, "actor", None)
    return None if actor is None else actor.engine


def engine_prepare_outputs(engine: Any) -> Callable[..., Any]:
    """The bound ``prepare_model_outputs`` of an engine (what ``forward_step`` calls)."""
    return engine.prepare_model_outputs


def replace_prepare_outputs(engine: Any, function: Callable[..., Any]) -> None:
    """Make ``engine.forward_step`` call ``function`` (an instance attribute shadows the
    method)."""
    engine.prepare_model_outputs = function


def loglik_request(micro_batch: Any) -> tuple[tuple[float, ...], int | None] | None:
    """``(temperatures, chunk_size)`` requested by the driver for this micro-batch, or None."""
    from verl.utils import tensordict_utils as tu

    temperatures = tu.get_non_tensor_data(data=micro_batch, key=TEMPERATURES_KEY, default=None)
    if temperatures is None:
        return None
    chunk = tu.get_non_tensor_data(data=micro_batch, key=CHUNK_SIZE_KEY, default=None)
    return tuple(float(t) for t in temperatures), chunk


def engine_refusals(engine: Any, micro_batch: Any) -> list[str]:
    """Engine settings under which the logits are not whole on this rank."""
    from verl.utils import tensordict_utils as tu

    reasons = []
    if tu.get_non_tensor_data(data=micro_batch, key="use_fused_kernels", default=False):
        reasons.append("use_fused_kernels (no logits are built)")
    if getattr(engine, "use_ulysses_sp", False):
        reasons.append("Ulysses sequence parallelism (each rank holds a slice of the logits)")
    return reasons


def uses_remove_padding(micro_batch: Any) -> bool:
    """Whether the engine ran the packed (``use_remove_padding``) layout."""
    from verl.utils import tensordict_utils as tu

    return bool(tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True))


def raw_logits(output: Any) -> torch.Tensor:
    """The unscaled logits of the engine's model output: ``[total_nnz (+pad), V]`` packed, or
    ``[B, S_max, V]`` padded.

    Raises:
        RuntimeError: they are a sharded DTensor (tensor parallelism: not supported).
    """
    logits = output.logits
    if type(logits).__name__ == "DTensor":
        raise RuntimeError("the TAMPO likelihood hook does not support vocabulary-sharded logits")
    return logits


def micro_batch_layout(micro_batch: Any) -> dict[str, torch.Tensor]:
    """The token layout of a no-padding micro-batch.

    Returns:
        ``offsets`` int64 ``[B + 1]`` (sequence starts in the packed token stream), ``tokens``
        int64 ``[total_nnz]`` (packed ids), ``response_lens`` int64 ``[B]`` (valid response
        tokens, as ``no_padding_2_padding`` counts them), ``response_mask`` ``[B, R]`` and
        ``temperature`` (a float or a ``(B,)`` tensor: what the engine divided the logits by).
    """
    input_ids = micro_batch["input_ids"]
    prompts, attention_mask = micro_batch["prompts"], micro_batch["attention_mask"]
    if prompts.is_nested or attention_mask.is_nested:
        raise RuntimeError("the TAMPO likelihood hook expects padded prompts and attention_mask")
    response_lens = attention_mask[:, prompts.shape[1] :].sum(dim=1)
    return {
        "offsets": input_ids.offsets().long(),
        "tokens": input_ids.values().long(),
        "response_lens": response_lens.long(),
        "response_mask": micro_batch["response_mask"],
        "temperature": micro_batch["temperature"],
    }


def nested_rows(rows: torch.Tensor) -> torch.Tensor:
    """A ``[B, D]`` tensor as a jagged nested tensor of B rows (how ``postprocess_batch_func``
    gathers per-sample outputs across micro-batches and ranks)."""
    return torch.nested.as_nested_tensor(list(rows.unbind(0)), layout=torch.jagged)


def per_token_log_probs(model_output: dict[str, Any]) -> torch.Tensor:
    """verl's own log-probs at the engine's temperature, nested ``[B, seq_len_i]``."""
    return model_output["log_probs"]


# --- rollout and launcher -------------------------------------------------------------------


def agent_loop_base_classes() -> tuple[type, type]:
    """``(AgentLoopManager, AgentLoopWorker)`` of verl's agent loop."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopManager, AgentLoopWorker

    return AgentLoopManager, AgentLoopWorker


def task_runner_base_class() -> type:
    """The plain class behind ``main_ppo_v0.TaskRunner`` (a Ray actor class)."""
    from verl.trainer.main_ppo_v0 import TaskRunner

    return TaskRunner.__ray_actor_class__


def trainer_base_class() -> type:
    """verl's ``RayPPOTrainer``."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    return RayPPOTrainer


def install_trainer(factory: Callable[..., Any]) -> None:
    """Make ``TaskRunner.run`` (in this process) construct its trainer with ``factory``."""
    import verl.trainer.main_ppo_v0 as runner_module

    runner_module.RayPPOTrainer = factory


def install_task_runner(runner: Any) -> None:
    """Make ``main_ppo.main`` (in this process) run ``runner`` (anything with ``.remote()`` and
    ``.options(...)`` of a Ray actor class) in place of ``TaskRunner``."""
    import verl.trainer.main_ppo_v0 as runner_module

    runner_module.TaskRunner = runner


def replace_actor_worker(runner: Any, worker_class: type) -> None:
    """Register ``worker_class`` (a subclass of ``ActorRolloutRefWorker``) for the role
    ``add_actor_rollout_worker`` just registered."""
    import ray

    base = worker_base_class()
    roles = [
        role
        for role, remote in runner.role_worker_mapping.items()
        if getattr(remote, "__ray_actor_class__", None) is base
    ]
    if len(roles) != 1:
        raise RuntimeError(
            f"expected one role mapped to ActorRolloutRefWorker, got {roles} in "
            f"{list(runner.role_worker_mapping)}"
        )
    runner.role_worker_mapping[roles[0]] = ray.remote(worker_class)
