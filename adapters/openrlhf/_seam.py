"""Every touch of OpenRLHF's internals made by the TAMPO adapter, version-checked in one place.

The adapter relies on private names of OpenRLHF 0.11.x (the experience maker is not a public
extension point, OpenRLHF issue #285):

- ``PPOTrainer`` (a Ray actor class; ``__ray_actor_class__`` is the plain class) and the
  methods it calls on itself per step: ``samples_generator.generate_samples(**generate_kwargs)``,
  ``train_step``, ``experience_maker.make_experience_batch``, ``save_logs_and_checkpoints``,
  ``init_checkpoint_states``;
- ``Actor.temperature`` (divides the fp32 logits in place inside ``Actor.forward`` since 0.11.1)
  and ``Actor.packing_samples``; the policy ``Actor`` is ``PolicyModelActor.actor``, the
  reference one ``ReferenceModelActor.model``;
- ``Experience`` fields ``sequences``, ``attention_mask``, ``action_mask``, ``advantages``,
  ``info``;
- ``cli.train_ppo_ray.train`` importing ``PPOTrainer`` from ``openrlhf.trainer.ppo_trainer``
  at call time.

``check_trainer_contract`` / ``check_launcher_contract`` verify these against the installed
OpenRLHF (the trainer runs the first at construction, the launcher the second before starting);
``tests/adapters/openrlhf/test_contract.py`` runs both and fails loudly when OpenRLHF changes.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tampo_core.adapters._versions import require_version

SUPPORTED_OPENRLHF_PIN = ">=0.11.1,<0.12"
SUPPORTED_OPENRLHF = SpecifierSet(SUPPORTED_OPENRLHF_PIN)
"""OpenRLHF versions the adapter is tested against (the ``tampo-core[openrlhf]`` pin)."""

TEMPERATURE_INFO_KEY = "tampo_temperature"
"""``Experience.info`` key of the per-sample sampling-temperature tag (logged by OpenRLHF)."""

CHECKPOINT_STATE_KEY = "tampo_meta_policy"
"""Key of the meta-policy state in OpenRLHF's checkpoint ``client_states``."""

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
    "fit": ("self", "global_step"),
    "train_step": ("self", "rollout_samples", "global_step"),
    "save_logs_and_checkpoints": ("self", "global_step", "logs_dict", "client_states"),
    "init_checkpoint_states": ("self",),
}
"""``PPOTrainer`` methods the adapter overrides, with their parameters."""

EXPERIENCE_FIELDS = ("sequences", "attention_mask", "action_mask", "advantages", "info")
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
        "BasePPOTrainer.train_step",
        ("self.experience_maker.make_experience_batch(rollout_samples)",),
    ),
    (
        "openrlhf.trainer.ppo_trainer",
        "BasePPOTrainer.save_logs_and_checkpoints",
        ("client_states=client_states",),
    ),
    (
        "openrlhf.trainer.ppo_utils.samples_generator",
        "SamplesGenerator._dispatch_prompts_to_vllm",
        ('temperature=generate_kwargs.get("temperature"',),
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


def check_openrlhf_version(version: str | None = None) -> Version:
    """Raise ImportError unless the installed (or given) OpenRLHF version is supported."""
    return require_version("openrlhf", SUPPORTED_OPENRLHF_PIN, "openrlhf", version)


def _resolve(module: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return getattr(target, "__ray_actor_class__", target)


def _source_problems(contract: Iterable[tuple[str, str, tuple[str, ...]]]) -> list[str]:
    problems = []
    for module, qualname, snippets in contract:
        try:
            source = inspect.getsource(_resolve(module, qualname))
        except (AttributeError, ImportError, OSError, TypeError) as error:
            problems.append(f"{module}.{qualname}: cannot read it ({error})")
            continue
        problems.extend(
            f"{module}.{qualname} no longer contains {snippet!r}"
            for snippet in snippets
            if snippet not in source
        )
    return problems


def _parameter_problems(function: Callable[..., Any], name: str, expected: tuple[str, ...]) -> str:
    got = tuple(inspect.signature(function).parameters)[: len(expected)]
    return "" if got == expected else f"{name}: expected parameters {expected}, got {got}"


def _raise_if(problems: list[str], what: str) -> None:
    problems = [p for p in problems if p]
    if problems:
        raise RuntimeError(
            f"OpenRLHF internals the TAMPO adapter relies on ({what}) changed; the adapter "
            f"supports openrlhf {SUPPORTED_OPENRLHF}:\n- " + "\n- ".join(problems)
        )


def check_trainer_contract() -> None:
    """Raise RuntimeError naming every internal of the trainer side that no longer matches."""
    check_openrlhf_version()
    from openrlhf.models.actor import Actor
    from openrlhf.trainer.ppo_utils.experience import Experience

    base = trainer_base_class()
    problems = _source_problems(_SOURCE_CONTRACT)
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
    check_openrlhf_version()
    _raise_if(_source_problems(_LAUNCHER_SOURCE_CONTRACT), "launcher")


def trainer_base_class() -> type:
    """The plain class behind OpenRLHF's ``PPOTrainer`` Ray actor (Ray refuses subclassing the
    actor class itself)."""
    from openrlhf.trainer.ppo_trainer import PPOTrainer

    return PPOTrainer.__ray_actor_class__


def install_trainer(trainer: Any) -> None:
    """Make ``openrlhf.cli.train_ppo_ray.train`` construct ``trainer`` (anything with the
    ``.remote(...)`` of a Ray actor class) in place of the stock ``PPOTrainer``."""
    import openrlhf.trainer.ppo_trainer as ppo_trainer_module

    ppo_trainer_module.PPOTrainer = trainer


def unsupported_features(args: Any) -> list[str]:
    """OpenRLHF options the adapter refuses, as human-readable reasons (empty when fine)."""
    reasons = []
    if args.train.async_enable:
        reasons.append(
            "--train.async_enable: async PPO (PPOTrainerAsync) is not supported by the TAMPO "
            "adapter; run synchronous PPO/GRPO"
        )
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


def trainer_args(trainer: Any) -> Any:
    """The hierarchical OpenRLHF argument namespace a ``PPOTrainer`` holds."""
    return trainer.args


def wrap_generation(trainer: Any, draw_temperature: Callable[[], float]) -> None:
    """Make each training ``generate_samples`` call run at ``draw_temperature()`` and tag every
    returned sample with it (``info[TEMPERATURE_INFO_KEY]``, a float64 ``[1]`` tensor per
    sample, so the value survives concatenation, logging and the replay buffer exactly).

    A call that returns no samples (the prompt loader ran out) keeps its temperature for the next
    call, so no draw is lost at an episode boundary. Evaluation (``generate_eval_samples``) is
    left alone.
    """
    generator = trainer.samples_generator
    original = generator.generate_samples
    unused: list[float] = []

    def generate_samples(**generate_kwargs: Any) -> tuple[list[Any], Any, int, bool]:
        temperature = unused.pop() if unused else draw_temperature()
        samples, pass_rate, prompts_consumed, exhausted = original(
            **{**generate_kwargs, "temperature": temperature}
        )
        if not samples:
            unused.append(temperature)
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


def model_groups(trainer: Any) -> tuple[Any, Any | None]:
    """``(policy group, reference group or None)`` of a ``PPOTrainer``."""
    return trainer.actor_model_group, trainer.reference_model_group


def _policy_actor(process: Any) -> Any:
    return process.actor


def _reference_actor(process: Any) -> Any:
    return process.model


def _set_policy_temperature(process: Any, temperature: float) -> float:
    actor = _policy_actor(process)
    actor.temperature = temperature
    return float(actor.temperature)


def _set_reference_temperature(process: Any, temperature: float) -> float:
    actor = _reference_actor(process)
    actor.temperature = temperature
    return float(actor.temperature)


def run_on_group(group: Any, function: Callable[..., Any], *args: Any) -> list[Any]:
    """Run ``function(model_actor, *args)`` inside every Ray actor of a ``RayActorGroup``.

    Uses Ray's built-in ``__ray_call__`` so no OpenRLHF actor class has to be subclassed.
    """
    import ray

    return ray.get(group.async_run_method("__ray_call__", function, *args))


def set_model_temperature(policy_group: Any, reference_group: Any | None, t: float) -> None:
    """Set ``Actor.temperature`` on every policy and reference model actor.

    Raises:
        RuntimeError: an actor did not take the value.
    """
    read_back = run_on_group(policy_group, _set_policy_temperature, t)
    if reference_group is not None:
        read_back += run_on_group(reference_group, _set_reference_temperature, t)
    if any(value != t for value in read_back):
        raise RuntimeError(f"Actor.temperature should read {t} on every actor, got {read_back}")


def actor_temperature(actor: Any) -> float:
    """``Actor.temperature``: the divisor of the logits inside ``Actor.forward``."""
    return float(actor.temperature)


def actor_packs_samples(actor: Any) -> bool:
    """``Actor.packing_samples``: whether ``Actor.forward`` works on packed ``[1, nnz]`` rows."""
    return bool(actor.packing_samples)


def actor_forward(actor: Any) -> Callable[..., Any]:
    """The bound ``forward`` of an ``Actor`` (what ``Actor.__call__`` dispatches to)."""
    return actor.forward


def replace_actor_forward(actor: Any, forward: Callable[..., Any]) -> None:
    """Make ``actor(...)`` call ``forward`` (an instance attribute shadows the method)."""
    actor.forward = forward


def output_logits(output: Any) -> torch.Tensor:
    """The tempered fp32 logits of an ``Actor.forward(..., return_output=True)`` output."""
    return output["logits"]


def policy_actor(process: Any) -> Any:
    """The policy ``Actor`` held by a ``PolicyModelActor`` process."""
    return _policy_actor(process)


class _RefusedAsyncTrainer:
    """Stands where ``train`` looks up ``PPOTrainerAsync``: async PPO is not supported."""

    @staticmethod
    def remote(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(
            "--train.async_enable: async PPO (PPOTrainerAsync) is not supported by the TAMPO "
            "adapter; run synchronous PPO/GRPO"
        )


def refuse_async_trainer() -> None:
    """Make ``train`` raise a clear error instead of running ``PPOTrainerAsync`` without TAMPO."""
    import openrlhf.trainer.ppo_trainer_async as async_module

    async_module.PPOTrainerAsync = _RefusedAsyncTrainer
