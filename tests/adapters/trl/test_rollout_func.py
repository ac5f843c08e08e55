"""A user ``rollout_func`` with an ``env_mask`` (TRL's tool mask): it samples at the round's T,
and the meta-policy learns from likelihoods of the weights that generated the round, under the
tool mask, even when the optimizer steps inside the round."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
import torch

trl = pytest.importorskip("trl")

from tampo_core import TampoConfig  # noqa: E402
from tampo_core.adapters.trl import TampoGRPOTrainer, _seam  # noqa: E402
from tampo_core.adapters.trl.extra_forward import loglik_by_extra_forward  # noqa: E402
from tests.adapters.trl.tiny_model import make_trainer  # noqa: E402

TEMPS = (0.5, 1.0, 1.7)
LEARNING = TampoConfig(temperatures=TEMPS, warmup_steps=0, top_p=1.0, ema_alpha=0.5)
NEW_TOKENS = 4
# two micro-batches per round with an optimizer step after each: TRL runs its old-log-prob pass
OLD_PASS = {"steps_per_generation": 2, "per_device_train_batch_size": 2, "max_steps": 4}


def make_rollout(seen: list[tuple[float, float]]) -> Any:
    """A rollout function sampling with ``model.generate`` at ``trainer.args.temperature``; its
    ``env_mask`` hides the second completion token (an "environment" token) from the loss."""

    def rollout(prompts: list[str], trainer: Any) -> dict[str, list[list[Any]]]:
        seen.append((trainer.args.temperature, trainer.temperature))
        tokenizer = trainer.processing_class
        prompt_ids, completion_ids, logprobs, env_mask = [], [], [], []
        for prompt in prompts:
            ids = tokenizer(prompt)["input_ids"]
            with torch.no_grad():
                out = trainer.model.generate(
                    torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    do_sample=True,
                    temperature=trainer.args.temperature,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=NEW_TOKENS,
                    min_new_tokens=NEW_TOKENS,
                    pad_token_id=0,
                    eos_token_id=1,
                )
            completion = out[0, len(ids) :].tolist()
            prompt_ids.append(ids)
            completion_ids.append(completion)
            logprobs.append([0.0] * len(completion))
            env_mask.append([1, 0] + [1] * (len(completion) - 2))
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            "logprobs": logprobs,
            "env_mask": env_mask,
        }

    return rollout


def test_rollout_func_samples_at_the_rounds_temperature_and_tool_mask_is_applied_in_the_old_pass(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    seen: list[tuple[float, float]] = []
    trainer = make_trainer(
        TampoGRPOTrainer,
        tiny_model_dir,
        tmp_path,
        OLD_PASS,
        tampo=LEARNING,
        rollout_func=make_rollout(seen),
    )
    assert _seam.old_logps_pass_runs(trainer)
    configured = trainer.args.temperature

    # reference: real-logit likelihoods of each round under its tool mask, computed right
    # after generation, i.e. with the weights that generated the round
    references: list[tuple[np.ndarray, np.ndarray]] = []
    original = trl.GRPOTrainer._generate_and_score_completions

    def generate(self: Any, inputs: Any) -> dict[str, Any]:
        output = original(self, inputs)
        assert "tool_mask" in output
        reference = loglik_by_extra_forward(
            self.model, self.accelerator, output, TEMPS, max_rows=len(output["advantages"])
        )
        references.append((reference.loglik.numpy(), reference.num_tokens.numpy()))
        return output

    observed: list[tuple[np.ndarray, np.ndarray]] = []
    observe = trainer.tampo_policy.observe_loglik

    def spy(loglik: Any, advantages: Any, **kwargs: Any) -> Any:
        observed.append((np.asarray(loglik), np.asarray(kwargs["num_tokens"])))
        return observe(loglik, advantages, **kwargs)

    trainer.tampo_policy.observe_loglik = spy
    drawn: list[float] = []
    sample = trainer.tampo_policy.sample

    def sample_spy() -> float:
        drawn.append(sample())
        return drawn[-1]

    trainer.tampo_policy.sample = sample_spy
    with patch.object(trl.GRPOTrainer, "_generate_and_score_completions", generate):
        trainer.train()

    rounds = OLD_PASS["max_steps"] // OLD_PASS["steps_per_generation"]
    assert len(drawn) == len(seen) == len(observed) == len(references) == rounds
    assert seen == [(t, t) for t in drawn]  # args.temperature and trainer.temperature
    assert trainer.args.temperature == configured  # restored after each round
    for (loglik, counts), (ref_loglik, ref_counts) in zip(observed, references, strict=True):
        np.testing.assert_array_equal(counts, ref_counts)
        assert (counts <= NEW_TOKENS - 1).all()  # the env token is out of every row
        np.testing.assert_allclose(loglik, ref_loglik, rtol=1e-5, atol=1e-5)
