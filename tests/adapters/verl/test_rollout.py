"""Per-request temperatures through verl's real ``AgentLoopWorker.generate_sequences``.

Real: ``AgentLoopWorker.generate_sequences`` (sampling parameters from the rollout config, the
validation override, per-sample keywords from ``non_tensor_batch``), the adapter's
``TampoAgentLoopWorker._run_agent_loop`` and verl's ``_run_agent_loop`` (agent-loop registry,
Hydra instantiation, ``agent_loop.run``), on a worker built from verl's Hydra config. Stand-ins:
the agent loop itself (``RecordingAgentLoop``, in place of the single-turn loop talking to a
vLLM/SGLang server) and the output padding (``_agent_loop_postprocess`` / ``_postprocess``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

pytest.importorskip("verl", reason="verl is not installed (scripts/ci/install-verl.sh installs it)")

from tampo_core.adapters.verl import _seam

AGENT = "tampo_test_recording_agent"


class RecordingAgentLoop:
    """Stands in for an agent loop: returns the sampling parameters it was run with."""

    def __init__(self, **components: Any) -> None:
        self.components = components

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        assert _seam.ROLLOUT_TEMPERATURE_KEY not in kwargs, "taken out before the agent loop"
        return {"sampling_params": sampling_params, "prompt": kwargs["prompt"]}


def _worker(config: Any) -> Any:
    from verl.experimental.agent_loop import agent_loop as agent_loop_module
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.rollout_trace import RolloutTraceConfig

    from tampo_core.adapters.verl.rollout import TampoAgentLoopWorker

    agent_loop_module._agent_loop_registry[AGENT] = {
        "_target_": f"{__name__}.RecordingAgentLoop",
        "name": AGENT,
    }
    RolloutTraceConfig.init("p", "e", None, False, None)
    worker = TampoAgentLoopWorker.__new__(TampoAgentLoopWorker)
    worker.config = config
    worker.rollout_config = omega_conf_to_dataclass(config.actor_rollout_ref.rollout)
    for name in ("llm_client", "tokenizer", "processor", "hf_model_type", "dataset_cls", "tools"):
        setattr(worker, name, None)

    async def keep_output(output, validate, **kwargs):  # stands in for padding/tokenising
        return output

    worker._agent_loop_postprocess = keep_output
    worker._postprocess = lambda outputs, input_non_tensor_batch=None, validate=False: outputs
    return worker


def _batch(count: int, temperatures: np.ndarray | None, validate: bool) -> Any:
    from verl.protocol import DataProto

    non_tensors = {
        "prompt": np.array([f"p{i}" for i in range(count)], dtype=object),
        "agent_name": np.array([AGENT] * count, dtype=object),
    }
    batch = DataProto.from_single_dict(non_tensors, meta_info={"validate": validate})
    if temperatures is not None:
        _seam.set_rollout_temperatures(batch, temperatures)
    return batch


def test_each_request_samples_at_its_own_temperature():
    from tests.adapters.verl.testkit import compose_config

    config = compose_config(
        [
            "actor_rollout_ref.rollout.name=vllm",
            "actor_rollout_ref.rollout.temperature=1.0",
            "actor_rollout_ref.rollout.val_kwargs.temperature=0.25",
        ]
    )
    worker = _worker(config)
    per_request = np.array([0.6, 0.6, 1.3, 0.8])
    outputs = asyncio.run(worker.generate_sequences(_batch(4, per_request, validate=False)))
    assert [o["sampling_params"]["temperature"] for o in outputs] == per_request.tolist()
    assert [o["prompt"] for o in outputs] == ["p0", "p1", "p2", "p3"]
    assert all(
        o["sampling_params"]["top_p"] == config.actor_rollout_ref.rollout.top_p for o in outputs
    )

    validation = asyncio.run(worker.generate_sequences(_batch(2, None, validate=True)))
    assert [o["sampling_params"]["temperature"] for o in validation] == [0.25, 0.25]
    plain = asyncio.run(worker.generate_sequences(_batch(2, None, validate=False)))
    assert [o["sampling_params"]["temperature"] for o in plain] == [1.0, 1.0]

    with pytest.raises(ValueError, match="one per request"):
        _seam.set_rollout_temperatures(_batch(3, None, validate=False), np.ones(2))


def test_manager_runs_tampo_workers():
    from tampo_core.adapters.verl.rollout import TampoAgentLoopManager, TampoAgentLoopWorker

    manager_class = _seam.agent_loop_base_classes()[0]
    assert issubclass(TampoAgentLoopManager, manager_class)
    assert (
        TampoAgentLoopManager.agent_loop_workers_class.__ray_actor_class__ is TampoAgentLoopWorker
    )
    module, _, name = _seam.AGENT_LOOP_MANAGER.rpartition(".")
    from verl.utils.import_utils import load_class_from_fqn

    assert (
        load_class_from_fqn(_seam.AGENT_LOOP_MANAGER, "AgentLoopManager") is TampoAgentLoopManager
    )
    assert (module, name) == ("tampo_core.adapters.verl.rollout", "TampoAgentLoopManager")
