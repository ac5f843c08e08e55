"""Multi-turn agents replacing ``sampling_params`` mid-episode: the engine guard keeps every turn
at the episode's temperature.

Real: OpenRLHF's ``RolloutRayActor.generate_responses`` and ``generate`` and its
``MultiTurnAgentExecutor``. Test double: the vLLM ``AsyncLLMEngine`` under ``RolloutRayActor.llm``
(records the temperature of each request and answers with two fixed tokens).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip(
    "openrlhf", reason="openrlhf is not installed (scripts/ci/install-openrlhf.sh installs it)"
)

from openrlhf.trainer.ray.vllm_engine import RolloutRayActor
from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor
from transformers import AutoTokenizer
from vllm import SamplingParams

from tampo_core.adapters.openrlhf import _seam
from tests.adapters.openrlhf.testkit import write_tokenizer

TURNS = 3


class HotterEachTurnAgent(AgentInstanceBase):
    """An environment that asks for a hotter sampling temperature after every turn."""

    def __init__(self) -> None:
        self.turn = 0

    async def step(self, states: dict) -> dict:
        self.turn += 1
        previous = states["sampling_params"]
        return {
            "rewards": torch.tensor(1.0),
            "environment_feedback": " w5",
            "done": self.turn == TURNS,
            "sampling_params": SamplingParams(
                temperature=previous.temperature + 0.5, max_tokens=None, logprobs=None
            ),
        }


class RecordingLLM:
    """Stands in for vLLM's ``AsyncLLMEngine.generate``: records each request's temperature."""

    def __init__(self) -> None:
        self.temperatures: list[float] = []

    async def generate(self, prompt, sampling_params, request_id):
        self.temperatures.append(sampling_params.temperature)
        await asyncio.sleep(0)  # let concurrent episodes interleave
        completion = SimpleNamespace(token_ids=[7, 9], text=" w4 w6", finish_reason="stop")
        yield SimpleNamespace(outputs=[completion])


def _engine() -> object:
    engine = object.__new__(RolloutRayActor.__ray_actor_class__)
    engine.llm = RecordingLLM()
    engine._mm_pad_token_ids = None
    engine.executor = MultiTurnAgentExecutor(HotterEachTurnAgent)
    return engine


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return AutoTokenizer.from_pretrained(write_tokenizer(tmp_path_factory.mktemp("tokenizer")))


async def _episodes(engine, tokenizer, temperatures: list[float]) -> list[list[dict]]:
    return await asyncio.gather(
        *(
            engine.generate_responses(
                "w3 w8",
                "0",
                SamplingParams(temperature=t, max_tokens=None, logprobs=None),
                max_length=64,
                hf_tokenizer=tokenizer,
                num_samples=2,
            )
            for t in temperatures
        )
    )


def test_without_the_guard_an_agent_changes_the_temperature_mid_episode(tokenizer):
    engine = _engine()
    asyncio.run(_episodes(engine, tokenizer, [0.6]))
    assert sorted(engine.llm.temperatures) == [0.6, 0.6, 1.1, 1.1, 1.6, 1.6]


def test_the_guard_keeps_every_turn_at_the_episode_temperature(tokenizer):
    engine = _engine()
    assert _seam.guard_engine_temperature(engine) == 0
    assert _seam.guard_engine_temperature(engine) == 0, "idempotent"
    responses = asyncio.run(_episodes(engine, tokenizer, [0.6, 1.3]))
    assert sorted(engine.llm.temperatures) == [0.6] * 2 * TURNS + [1.3] * 2 * TURNS
    # every episode ran all its turns (the agent still got to change its other parameters)
    assert all(len(r["action_ranges"]) == TURNS for group in responses for r in group)
    assert _seam.engine_overrides(engine) == 2 * 2 * (TURNS - 1)
    assert _seam.engine_overrides(_engine()) == 0
