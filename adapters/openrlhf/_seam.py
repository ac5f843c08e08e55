"""Every touch of OpenRLHF's internals made by the TAMPO adapter, version-checked in one place.

Importing this module checks the installed OpenRLHF version (``check_openrlhf_version``), so
nothing reaches an internal of an untested release. The adapter relies on private names of
OpenRLHF 0.11.x (the experience maker is not a public extension point, OpenRLHF issue #285):

- ``PPOTrainer`` (a Ray actor class; ``__ray_actor_class__`` is the plain class), its
  ``__init__(pretrain, strategy, ...)``, ``args`` (from ``strategy.args``), ``vllm_engines``,
  ``actor_model_group``, ``reference_model_group`` and the methods it calls on itself per step:
  ``samples_generator.generate_samples(**generate_kwargs)``, ``train_step``,
  ``experience_maker.make_experience_batch``, ``save_logs_and_checkpoints``,
  ``init_checkpoint_states``; ``WandbLogger`` logging ``args.__dict__`` as the run config;
- ``Actor.temperature`` (divides the fp32 logits in place inside ``Actor.forward`` since 0.11.1)
  and ``Actor.packing_samples``; the policy ``Actor`` is ``PolicyModelActor.actor``, the
  reference one ``ReferenceModelActor.model``;
- ``Experience`` fields ``sequences``, ``attention_mask``, ``action_mask``, ``advantages``,
  ``rewards``, ``index``, ``info``; the reward shaping of
  ``RemoteExperienceMaker.compute_advantages_and_returns``;
- the vLLM engine actor's ``executor.execute`` and ``generate`` (what multi-turn agents call
  once per turn, with ``sampling_params`` they may replace);
- ``cli.train_ppo_ray.train`` importing ``PPOTrainer`` from ``openrlhf.trainer.ppo_trainer``
  at call time, and ``DeepspeedStrategy.save_ckpt`` passing ``client_states`` to DeepSpeed.

``check_trainer_contract`` / ``check_launcher_contract`` verify these against the installed
OpenRLHF (the trainer runs the first at construction, the launcher the second before starting);
``tests/adapters/openrlhf/test_contract.py`` runs both and fails loudly when OpenRLHF changes.
"""

from __future__ import annotations

import contextvars
import copy
import inspect
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import torch
from packaging.version import Version

from tampo_core.adapters._contract import source_problems
from tampo_core.adapters._versions import require_version

SUPPORTED_OPENRLHF = ">=0.11.1,<0.12"
"""OpenRLHF versions the adapter is tested against (the ``tampo-core[openrlhf]`` pin)."""


def check_openrlhf_version(version: str | None = None) -> Version:
    """Raise ImportError unless the installed (or given) OpenRLHF version is supported."""
    return require_version("openrlhf", SUPPORTED_OPENRLHF, "openrlhf", version)


check_openrlhf_version()

logger = logging.getLogger(__name__)

ASYNC_REFUSAL = (
    "async PPO (PPOTrainerAsync) is not supported by the TAMPO adapter; run synchronous PPO/GRPO"
)
"""The one message for ``--train.async_enable``, wherever it is refused."""

TEMPERATURE_INFO_KEY = "tampo_temperature"
"""``Experience.info`` key of the per-sample sampling-temperature tag (logged by OpenRLHF)."""

CHECKPOINT_STATE_KEY = "tampo_meta_policy"
"""Key of the meta-policy state in OpenRLHF's checkpoint ``client_states``."""

ADAPTER_STATE_KEY = "tampo_adapter"
"""Key of the adapter's own state (pending draw, skip counters) in ``client_states``."""

ARGS_KEY = "tampo"
"""Attribute of OpenRLHF's argument namespace that records the TAMPO options (W&B config)."""

GROUP_ESTIMATORS = ("group_norm", "dr_grpo", "reinforce_baseline", "rloo", "flash_reinforce")
"""Estimators whose advantage starts from a baseline-subtracted outcome reward."""

ACTOR_FORWARD_PARAMS = (
    "self",
    "sequences",
    "action_mask",
    "attention_mask",
    "return_output",
    "allgather_logits",
    "return_logprobs",
    "ring_attn_group",
    "packed_seq_lens",
    "return_entropy",
)
"""Leading parameters of ``Actor.forward``, which the policy hook wraps."""

TRAINER_METHODS: dict[str, tuple[str, ...]] = {
    "__init__": ("self", "pretrain", "strategy"),
    "fit": ("self", "global_step"),
    "train_step": ("self", "rollout_samples", "global_step"),
    "save_logs_and_checkpoints": ("self", "global_step", "logs_dict", "client_states"),
    "init_checkpoint_states": ("self",),
}
"""``PPOTrainer`` methods the adapter overrides, with their leading parameters."""

EXPERIENCE_FIELDS = (
    "sequences",
    "attention_mask",
    "action_mask",
    "advantages",
    "rewards",
    "index",
    "info",
)
"""``Experience`` fields the adapter reads (and ``info``, which it writes)."""

_SOURCE_CONTRACT: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "openrlhf.models.actor",
        "Actor.forward",
        ('output["logits"] = output["logits"].to(torch.float32)', "div_(self.temperature)"),
    ),
    (
        "openrlhf.trainer.ppo_trainer",
        "PPOTrainer.fit",
        (
            "self.init_checkpoint_states()",
            "self.samples_generator.generate_samples(**self.generate_kwargs)",
            "self.train_step(rollout_samples, global_step)",
            "self.save_logs_and_checkpoints(global_step, status, client_states)",
        ),
    ),
    (
        "openrlhf.trainer.ppo_trainer",
        "BasePPOTrainer.__init__",
        ("self.args = strategy.args", "WandbLogger(self.args)"),
    ),
    (
        "openrlhf.utils.logging_utils",
        "WandbLogger.__init__",
        ("config=args.__dict__",),
    ),
    (
        "openrlhf.trainer.ppo_trainer",
        "BasePPOTrainer.train_step",
        ("self.experience_maker.make_experience_batch(rollout_samples)",),
    ),
    (
        "openrlhf.trainer.ppo_trainer",
        "BasePPOTrainer.save_logs_and_checkpoints",
        ("client_states=client_states",),
    ),
    (
        "openrlhf.utils.deepspeed.deepspeed",
        "DeepspeedStrategy.save_ckpt",
        ("model.save_checkpoint(save_dir, tag=tag, client_state=client_state",),
    ),
    (
        "openrlhf.trainer.ppo_utils.experience_maker",
        "RemoteExperienceMaker.compute_advantages_and_returns",
        (
            "rewards[indices] = raw_rewards",
            "rewards = rewards.reshape(-1, args.rollout.n_samples_per_prompt)",
            "baseline = (rewards.sum(-1, keepdim=True) - rewards) / "
            "(args.rollout.n_samples_per_prompt - 1)",
            "rewards = rewards - rewards.mean(-1, keepdim=True)",
            "rewards = (rewards - rewards.mean(-1, keepdim=True)) / "
            "(rewards.std(-1, keepdim=True) + 1e-9)",
            "rewards = rewards - rewards.mean()",
            "reward_clip_range=args.reward.clip_range",
        ),
    ),
    (
        "openrlhf.models.utils",
        "compute_reward",
        ("r = r.clamp(min=reward_clip_range[0], max=reward_clip_range[1])",),
    ),
    (
        "openrlhf.trainer.ppo_utils.samples_generator",
        "SamplesGenerator._dispatch_prompts_to_vllm",
        ('temperature=generate_kwargs.get("temperature"',),
    ),
    (
        "openrlhf.trainer.ray.vllm_engine",
        "RolloutRayActor.generate_responses",
        ("self.executor.execute(", "llm_engine=self"),
    ),
    (
        "openrlhf.utils.agent",
        "MultiTurnAgentExecutor.execute",
        ("await llm_engine.generate(", 'sampling_params = step_result["sampling_params"]'),
    ),
    (
        "openrlhf.trainer.ray.ppo_actor",
        "PolicyModelActor.forward",
        ("with torch.no_grad():", "self.actor("),
    ),
    (
        "openrlhf.trainer.ray.ppo_actor",
        "PolicyModelActor.init_model_from_pretrained",
        ("temperature=strategy.args.rollout.temperature", "self.checkpoint_states = states"),
    ),
    (
        "openrlhf.trainer.ray.ppo_actor",
        "PolicyModelActor.save_checkpoint",
        ("self.strategy.save_ckpt(", "client_states,"),
    ),
    (
        "openrlhf.trainer.ray.launcher",
        "ReferenceModelActor.forward",
        ("self.model(",),
    ),
)
"""(module, qualified name, snippets its source must contain) for the trainer contract."""

_LAUNCHER_SOURCE_CONTRACT = (
    (
        "openrlhf.cli.train_ppo_ray",
        "train",
        (
            "from openrlhf.trainer.ppo_trainer_async import PPOTrainerAsync as PPOTrainer",
            "from openrlhf.trainer.ppo_trainer import PPOTrainer",
            "PPOTrainer.remote(",
        ),
    ),
)
"""(module, qualified name, snippets) for the launcher contract."""


def _parameter_problems(function: Callable[..., Any], name: str, expected: tuple[str, ...]) -> str:
    got = tuple(inspect.signature(function).parameters)[: len(expected)]
    return "" if got == expected else f"{name}: expected parameters {expected}, got {got}"


def _raise_if(problems: list[str], what: str) -> None:
    problems = [p for p in problems if p]
    if problems:
        raise RuntimeError(
            f"OpenRLHF internals the TAMPO adapter relies on ({what}) changed; the adapter "
            f"supports openrlhf{SUPPORTED_OPENRLHF}:\n- " + "\n- ".join(problems)
        )


def check_trainer_contract() -> None:
    """Raise RuntimeError naming every internal of the trainer side that no longer matches."""
    from openrlhf.models.actor import Actor
    from openrlhf.trainer.ppo_utils.experience import Experience

    base = trainer_base_class()
    problems = source_problems(_SOURCE_CONTRACT)
    problems.append(_parameter_problems(Actor.forward, "Actor.forward", ACTOR_FORWARD_PARAMS))
    problems.append(
        ""
        if "temperature" in inspect.signature(Actor.__init__).parameters
        else "Actor.__init__ has no temperature parameter"
    )
    for method, params in TRAINER_METHODS.items():
        function = getattr(base, method, None)
        problems.append(
            f"PPOTrainer.{method} is missing"
            if function is None
            else _parameter_problems(function, f"PPOTrainer.{method}", params)
        )
    fields = set(Experience.__dataclass_fields__)
    problems.extend(f"Experience.{f} is missing" for f in EXPERIENCE_FIELDS if f not in fields)
    _raise_if(problems, "trainer side")


def check_launcher_contract() -> None:
    """Raise RuntimeError if ``openrlhf.cli.train_ppo_ray`` no longer builds ``PPOTrainer``
    from ``openrlhf.trainer.ppo_trainer`` at call time (what the launcher swaps)."""
    _raise_if(source_problems(_LAUNCHER_SOURCE_CONTRACT), "launcher")


# --- launcher -------------------------------------------------------------------------------


def trainer_base_class() -> type:
    """The plain class behind OpenRLHF's ``PPOTrainer`` Ray actor (Ray refuses subclassing the
    actor class itself)."""
    from openrlhf.trainer.ppo_trainer import PPOTrainer

    return PPOTrainer.__ray_actor_class__


def ray_actor_class(cls: type) -> Any:
    """``ray.remote(cls)``: the Ray actor class OpenRLHF's ``train`` builds with ``.remote``."""
    import ray

    return ray.remote(cls)


def install_trainer(trainer: Any) -> None:
    """Make ``openrlhf.cli.train_ppo_ray.train`` construct ``trainer`` (anything with the
    ``.remote(...)`` of a Ray actor class) in place of the stock ``PPOTrainer``."""
    import openrlhf.trainer.ppo_trainer as ppo_trainer_module

    ppo_trainer_module.PPOTrainer = trainer


class _RefusedAsyncTrainer:
    """Stands where ``train`` looks up ``PPOTrainerAsync``: async PPO is not supported."""

    @staticmethod
    def remote(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"--train.async_enable: {ASYNC_REFUSAL}")


def refuse_async_trainer() -> None:
    """Make ``train`` raise a clear error instead of running ``PPOTrainerAsync`` without TAMPO."""
    import openrlhf.trainer.ppo_trainer_async as async_module

    async_module.PPOTrainerAsync = _RefusedAsyncTrainer


# --- trainer arguments ----------------------------------------------------------------------


def unsupported_features(args: Any) -> list[str]:
    """OpenRLHF options (hierarchical ``args``) the adapter refuses, as human-readable reasons
    (empty when fine)."""
    reasons = []
    if args.train.async_enable:
        reasons.append(f"--train.async_enable: {ASYNC_REFUSAL}")
    if args.ds.ring_attn_size > 1:
        reasons.append(
            f"--ds.ring_attn_size {args.ds.ring_attn_size}: with ring attention each policy rank "
            "holds a slice of the logits; not supported"
        )
    if args.ds.tensor_parallel_size > 1:
        reasons.append(
            f"--ds.tensor_parallel_size {args.ds.tensor_parallel_size}: the logits layout under "
            "DeepSpeed AutoTP is not verified; not supported"
        )
    return reasons


def record_options(init_args: tuple, init_kwargs: dict, values: dict[str, Any]) -> Any:
    """Store ``values`` as ``args.tampo`` on the argument namespace that ``PPOTrainer.__init__``
    (called with ``init_args``/``init_kwargs``) takes from its strategy, before the trainer
    builds its W&B logger from ``args.__dict__``. Returns that namespace."""
    bound = inspect.signature(trainer_base_class().__init__).bind(None, *init_args, **init_kwargs)
    args = bound.arguments["strategy"].args
    setattr(args, ARGS_KEY, SimpleNamespace(**values))
    return args


class AdvantageSettings(NamedTuple):
    """What decides the advantage OpenRLHF computes (hierarchical ``args``)."""

    estimator: str
    n_samples_per_prompt: int
    clip_range: tuple[float, float] | None
    kl_in_reward: bool
    gamma: float
    whitened: bool


def advantage_settings(args: Any) -> AdvantageSettings:
    """Read the advantage estimator, group size, reward clip, KL placement, gamma and token
    whitening from OpenRLHF's arguments."""
    advantage = args.algo.advantage
    clip = args.reward.clip_range
    return AdvantageSettings(
        estimator=advantage.estimator,
        n_samples_per_prompt=int(args.rollout.n_samples_per_prompt),
        clip_range=None if not clip else (float(clip[0]), float(clip[1])),
        kl_in_reward=args.algo.kl.init_coef > 0 and not args.algo.kl.use_loss,
        gamma=float(advantage.gamma),
        whitened=advantage.estimator in ("gae", "reinforce", "reinforce_baseline")
        and not advantage.no_std_norm,
    )


# --- per-step wrapping of the trainer -------------------------------------------------------


def wrap_generation(
    trainer: Any, draw_temperature: Callable[[], float], pending: list[float]
) -> None:
    """Make each training ``generate_samples`` call run at the next temperature and tag every
    returned sample with it (``info[TEMPERATURE_INFO_KEY]``, a float64 ``[B]`` tensor per
    sample, so the value survives concatenation, logging and the replay buffer exactly).

    The next temperature is ``pending.pop()`` if ``pending`` holds one, else
    ``draw_temperature()``. A call that returns no samples (the prompt loader ran out) puts its
    temperature into ``pending`` for the next call, so no draw is lost at an episode boundary;
    the caller owns ``pending`` (and saves it with checkpoints). Evaluation
    (``generate_eval_samples``) is left alone.
    """
    generator = trainer.samples_generator
    original = generator.generate_samples

    def generate_samples(**generate_kwargs: Any) -> tuple[list[Any], Any, int, bool]:
        temperature = pending.pop() if pending else draw_temperature()
        samples, pass_rate, prompts_consumed, exhausted = original(
            **{**generate_kwargs, "temperature": temperature}
        )
        if not samples:
            pending.append(temperature)
        for sample in samples:
            batch = len(sample.sequences)
            sample.info[TEMPERATURE_INFO_KEY] = torch.full(
                (batch,), float(temperature), dtype=torch.float64
            )
        return samples, pass_rate, prompts_consumed, exhausted

    generator.generate_samples = generate_samples


def wrap_experience_making(trainer: Any, consume: Callable[[list[Any]], None]) -> None:
    """Call ``consume(experiences)`` after ``make_experience_batch`` computed the advantages
    (before they are pushed to the policy shards)."""
    maker = trainer.experience_maker
    original = maker.make_experience_batch

    def make_experience_batch(rollout_samples: list[Any]) -> list[Any]:
        experiences = original(rollout_samples)
        consume(experiences)
        return experiences

    maker.make_experience_batch = make_experience_batch


def batch_temperature(samples: list[Any]) -> float:
    """The single sampling temperature tagged on a rollout batch.

    Raises:
        ValueError: a sample carries no tag, or the batch mixes temperatures.
    """
    values: set[float] = set()
    for index, sample in enumerate(samples):
        tag = sample.info.get(TEMPERATURE_INFO_KEY)
        if tag is None:
            raise ValueError(
                f"rollout sample {index} has no info[{TEMPERATURE_INFO_KEY!r}] tag: expected "
                "samples from the TAMPO-wrapped generate_samples"
            )
        values.update(float(v) for v in tag.flatten().tolist())
    if len(values) != 1:
        raise ValueError(
            f"expected one sampling temperature per rollout batch, got {sorted(values)}"
        )
    return values.pop()


def experience_tensors(experience: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(sequences [B, S], action_mask [B, A], advantages [B, A])`` of an ``Experience``."""
    return experience.sequences, experience.action_mask, experience.advantages


def experience_outcomes(experience: Any) -> tuple[torch.Tensor, list[int]]:
    """``(rewards [B], index)``: the outcome rewards (after OpenRLHF's length penalties) and
    each sample's position in the rollout batch, prompt-major (``index // n`` is its group)."""
    return experience.rewards, list(experience.index)


# --- model actors and vLLM engines ----------------------------------------------------------


def model_groups(trainer: Any) -> tuple[Any, Any | None]:
    """``(policy group, reference group or None)`` of a ``PPOTrainer``."""
    return trainer.actor_model_group, trainer.reference_model_group


def run_on_group(group: Any, function: Callable[..., Any], *args: Any) -> list[Any]:
    """Run ``function(model_actor, *args)`` inside every Ray actor of a ``RayActorGroup``.

    Uses Ray's built-in ``__ray_call__`` so no OpenRLHF actor class has to be subclassed.
    """
    import ray

    return ray.get(group.async_run_method("__ray_call__", function, *args))


def run_on_engines(trainer: Any, function: Callable[..., Any], *args: Any) -> list[Any]:
    """Run ``function(engine_actor, *args)`` inside every vLLM engine actor of a ``PPOTrainer``
    (none without engines)."""
    import ray

    engines = trainer.vllm_engines or []
    return ray.get([engine.__ray_call__.remote(function, *args) for engine in engines])


def _set_temperature(process: Any, attribute: str, temperature: float) -> float:
    actor = getattr(process, attribute)
    actor.temperature = temperature
    return float(actor.temperature)


def set_model_temperature(policy_group: Any, reference_group: Any | None, t: float) -> None:
    """Set ``Actor.temperature`` on every policy (``.actor``) and reference (``.model``) actor.

    Raises:
        RuntimeError: an actor did not take the value.
    """
    read_back = run_on_group(policy_group, _set_temperature, "actor", t)
    if reference_group is not None:
        read_back += run_on_group(reference_group, _set_temperature, "model", t)
    if any(value != t for value in read_back):
        raise RuntimeError(f"Actor.temperature should read {t} on every actor, got {read_back}")


def policy_actor(process: Any) -> Any:
    """The policy ``Actor`` held by a ``PolicyModelActor`` process."""
    return process.actor


def actor_layout(actor: Any) -> tuple[float, bool]:
    """``(Actor.temperature, Actor.packing_samples)``: the divisor of the logits inside
    ``Actor.forward`` and whether it works on packed ``[1, nnz]`` rows."""
    return float(actor.temperature), bool(actor.packing_samples)


def swap_actor_forward(actor: Any, forward: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``actor(...)`` call ``forward`` (an instance attribute shadows the method); return
    the bound original."""
    original = actor.forward
    actor.forward = forward
    return original


def forward_with_logits(
    forward: Callable[..., Any], *args: Any, **kwargs: Any
) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """Call an ``Actor.forward`` asking for its output too: ``(action_log_probs [B, A],
    output, tempered fp32 logits [B, S, V] or packed [1, nnz, V])``."""
    action_log_probs, output = forward(*args, **{**kwargs, "return_output": True})
    return action_log_probs, output, output["logits"]


_EPISODE_TEMPERATURE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "tampo_episode_temperature", default=None
)
ENGINE_GUARD_ATTRIBUTE = "_tampo_turn_overrides"
"""Attribute of a guarded vLLM engine actor counting the turns whose temperature it restored."""


def guard_engine_temperature(engine: Any) -> int:
    """Keep every turn of an agent episode at the episode's sampling temperature.

    Runs inside a vLLM engine actor. Multi-turn agents (``MultiTurnAgentExecutor``) may return
    new ``sampling_params`` from a step, so later turns would be generated at another T while
    the log-probs stay at the drawn T. The guard records the temperature each episode starts
    with (``executor.execute``) and, on each turn (``engine.generate``), generates with a copy
    of the turn's ``sampling_params`` at that temperature, counting and logging (once) every
    turn it corrected. Idempotent. Returns the number of corrected turns so far.
    """
    if hasattr(engine, ENGINE_GUARD_ATTRIBUTE):
        return getattr(engine, ENGINE_GUARD_ATTRIBUTE)
    setattr(engine, ENGINE_GUARD_ATTRIBUTE, 0)
    executor, generate = engine.executor, engine.generate
    execute = executor.execute

    async def guarded_execute(*args: Any, **kwargs: Any) -> Any:
        params = inspect.signature(execute).bind(*args, **kwargs).arguments["sampling_params"]
        token = _EPISODE_TEMPERATURE.set(float(params.temperature))
        try:
            return await execute(*args, **kwargs)
        finally:
            _EPISODE_TEMPERATURE.reset(token)

    async def guarded_generate(prompt_token_ids: Any, sampling_params: Any, **kwargs: Any) -> Any:
        temperature = _EPISODE_TEMPERATURE.get()
        if temperature is not None and float(sampling_params.temperature) != temperature:
            count = getattr(engine, ENGINE_GUARD_ATTRIBUTE) + 1
            setattr(engine, ENGINE_GUARD_ATTRIBUTE, count)
            if count == 1:
                logger.warning(
                    "TAMPO: an agent step set sampling temperature %s mid-episode; generating "
                    "at the episode's %s (the log-probs use it); further corrections are "
                    "counted in tampo/agent_temperature_overrides",
                    sampling_params.temperature,
                    temperature,
                )
            sampling_params = copy.deepcopy(sampling_params)
            sampling_params.temperature = temperature
        return await generate(prompt_token_ids, sampling_params, **kwargs)

    executor.execute = guarded_execute
    engine.generate = guarded_generate
    return 0


def engine_overrides(engine: Any) -> int:
    """Turns whose temperature a guarded engine restored (0 before the guard)."""
    return int(getattr(engine, ENGINE_GUARD_ATTRIBUTE, 0))


def pad_packed(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scatter packed ``[1, nnz, ...]`` values back to ``[B, S, ...]`` (zeros on padding) with
    OpenRLHF's own ``gather_and_pad_tensor`` (no ring attention)."""
    from openrlhf.models.ring_attn_utils import gather_and_pad_tensor

    batch, seqlen = attention_mask.shape
    indices = attention_mask.flatten().nonzero().squeeze(1).to(values.device)
    padded = gather_and_pad_tensor(values.unsqueeze(-1), None, 0, indices, batch, seqlen)
    return padded.squeeze(2)
