"""Per-request sampling temperatures for verl's agent loop.

``AgentLoopWorker.generate_sequences`` builds one sampling-parameter dict from its own copy of the
rollout config and hands each request its sample's ``non_tensor_batch`` entries as keywords of
``_run_agent_loop``. ``TampoAgentLoopWorker`` takes the driver's per-request temperature
(``_seam.ROLLOUT_TEMPERATURE_KEY``) out of those keywords and puts it into that request's
sampling parameters, so every engine (vLLM, SGLang, ...) samples each request at its own T.
Requests without it (validation) are left alone. ``TampoAgentLoopManager`` is the manager the
trainer names in ``actor_rollout_ref.rollout.agent.agent_loop_manager_class``.
"""

from __future__ import annotations

from typing import Any

from tampo_core.adapters.verl import _seam

_seam.check_verl_version()  # before ray: without verl, name the extra to install

import ray  # noqa: E402

_Manager, _Worker = _seam.agent_loop_base_classes()


def request_sampling_params(sampling_params: dict[str, Any], kwargs: dict[str, Any]) -> dict:
    """The request's sampling parameters with its TAMPO temperature (taken out of ``kwargs``)."""
    temperature = kwargs.pop(_seam.ROLLOUT_TEMPERATURE_KEY, None)
    if temperature is None:
        return sampling_params
    return {**sampling_params, "temperature": float(temperature)}


class TampoAgentLoopWorker(_Worker):  # type: ignore[misc, valid-type]
    """``AgentLoopWorker`` that samples each request at the temperature the driver gave it."""

    async def _run_agent_loop(
        self,
        sampling_params: dict[str, Any],
        trajectory: dict[str, Any],
        *,
        agent_name: str,
        trace: bool = True,
        **kwargs: Any,
    ) -> Any:
        params = request_sampling_params(sampling_params, kwargs)
        return await super()._run_agent_loop(
            params, trajectory, agent_name=agent_name, trace=trace, **kwargs
        )


class TampoAgentLoopManager(_Manager):  # type: ignore[misc, valid-type]
    """``AgentLoopManager`` whose workers are ``TampoAgentLoopWorker``."""

    agent_loop_workers_class = ray.remote(TampoAgentLoopWorker)
