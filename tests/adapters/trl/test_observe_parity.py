"""The adapter's observe path treats bad and empty rows exactly as ``TempMetaPolicy.observe``.

A NaN logit in a valid completion position is a ValueError (the same message) with the state
unchanged; a completion whose mask is all zero is skipped and counted (``num_skipped``). The
reference runs ``observe`` on the logits of the very scoring pass the adapter's likelihoods
came from (the hidden states recorded by a backbone hook, projected through the LM head).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
import torch

trl = pytest.importorskip("trl")

from tampo_core import TampoConfig, TempMetaPolicy  # noqa: E402
from tampo_core.adapters.trl import TampoGRPOTrainer  # noqa: E402
from tests.adapters.trl.tiny_model import make_trainer  # noqa: E402

LEARNING = TampoConfig(temperatures=(0.5, 1.0, 1.7), warmup_steps=0, top_p=1.0, ema_alpha=0.5)
SOURCES = ("hidden_states", "extra_forward")
POISONED_ROW = 1
EMPTY_ROW = 2


@dataclass
class Recorder:
    """What the first scoring pass saw and what the meta-policy was handed."""

    poison: bool
    hidden: torch.Tensor | None = None
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    completion_length: int = 0
    state_before: dict[str, Any] | None = None
    advantages: np.ndarray | None = None
    calls: list[str] = field(default_factory=list)


@contextmanager
def _instrumented(trainer: Any, recorder: Recorder, empty_row: int | None) -> Iterator[None]:
    """Record (and optionally poison) the first backbone pass without KV cache, record the
    completion length, optionally mask one completion out, and spy on ``observe_loglik``."""

    def hook(module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> Any:
        if kwargs.get("use_cache") is not False or recorder.hidden is not None:
            return None
        if recorder.poison:
            hidden = output.last_hidden_state.clone()
            hidden[POISONED_ROW] = math.nan
            output.last_hidden_state = hidden
        recorder.hidden = output.last_hidden_state.detach().clone()
        recorder.input_ids = kwargs["input_ids"].clone()
        recorder.attention_mask = kwargs["attention_mask"].clone()
        return output

    trainer.model.base_model.register_forward_hook(hook, with_kwargs=True)

    original_generate = trl.GRPOTrainer._generate_and_score_completions

    def generate(self: Any, inputs: Any) -> dict[str, Any]:
        output = original_generate(self, inputs)
        recorder.completion_length = output["completion_ids"].shape[1]
        if empty_row is not None:
            output["completion_mask"] = output["completion_mask"].clone()
            output["completion_mask"][empty_row] = 0
        return output

    policy = trainer.tampo_policy
    original_observe = policy.observe_loglik

    def observe_loglik(loglik: Any, advantages: Any, **kwargs: Any) -> Any:
        recorder.calls.append("observe_loglik")
        recorder.state_before = policy.state_dict()
        recorder.advantages = np.asarray(advantages).copy()
        return original_observe(loglik, advantages, **kwargs)

    policy.observe_loglik = observe_loglik
    with patch.object(trl.GRPOTrainer, "_generate_and_score_completions", generate):
        yield


def _reference_inputs(trainer: Any, recorder: Recorder) -> dict[str, torch.Tensor]:
    """Logits, tokens and mask of the recorded pass's completion positions."""
    length = recorder.completion_length
    assert recorder.hidden is not None and recorder.input_ids is not None
    with torch.no_grad():
        logits = trainer.model.lm_head(recorder.hidden[:, -length - 1 : -1])
    return {
        "logits": logits,
        "tokens": recorder.input_ids[:, -length:],
        "mask": recorder.attention_mask[:, -length:],  # type: ignore[index]
    }


@pytest.mark.parametrize("source", SOURCES)
def test_nan_logit_in_a_valid_position_is_refused_like_observe(
    tiny_model_dir: Path, tmp_path: Path, source: str
) -> None:
    trainer = make_trainer(
        TampoGRPOTrainer,
        tiny_model_dir,
        tmp_path,
        {"max_steps": 1, "learning_rate": 0.0},
        tampo=LEARNING,
        likelihood_source=source,
    )
    recorder = Recorder(poison=True)
    with (
        _instrumented(trainer, recorder, empty_row=None),
        pytest.raises(ValueError, match=rf"^loglik\[{POISONED_ROW}\]: expected finite") as error,
    ):
        trainer.train()
    assert recorder.calls == ["observe_loglik"]
    assert trainer.tampo_policy.state_dict() == recorder.state_before

    reference = _reference_inputs(trainer, recorder)
    assert bool(reference["mask"][POISONED_ROW].any())  # the poisoned row has valid tokens
    policy = TempMetaPolicy(config=LEARNING)
    policy.load_state_dict(recorder.state_before)
    with pytest.raises(ValueError) as observe_error:
        policy.observe(
            reference["logits"],
            recorder.advantages,
            tokens=reference["tokens"],
            mask=reference["mask"],
        )
    assert str(error.value) == str(observe_error.value)
    assert policy.state_dict() == recorder.state_before


@pytest.mark.parametrize("source", SOURCES)
def test_fully_masked_completion_is_skipped_and_counted_like_observe(
    tiny_model_dir: Path, tmp_path: Path, source: str
) -> None:
    trainer = make_trainer(
        TampoGRPOTrainer,
        tiny_model_dir,
        tmp_path,
        {"max_steps": 1, "learning_rate": 0.0},
        tampo=LEARNING,
        likelihood_source=source,
    )
    recorder = Recorder(poison=False)
    with _instrumented(trainer, recorder, empty_row=EMPTY_ROW):
        trainer.train()
    assert recorder.calls == ["observe_loglik"]
    adapter = trainer.tampo_policy.last_stats
    assert adapter is not None and adapter.num_skipped == 1 and adapter.num_trajectories == 3

    reference = _reference_inputs(trainer, recorder)
    assert not bool(reference["mask"][EMPTY_ROW].any())
    policy = TempMetaPolicy(config=LEARNING)
    policy.load_state_dict(recorder.state_before)
    expected = policy.observe(
        reference["logits"],
        recorder.advantages,
        tokens=reference["tokens"],
        mask=reference["mask"],
    )
    assert (adapter.num_skipped, adapter.num_trajectories) == (
        expected.num_skipped,
        expected.num_trajectories,
    )
    np.testing.assert_array_equal(adapter.argmax_histogram, expected.argmax_histogram)
    np.testing.assert_allclose(adapter.batch_advantage, expected.batch_advantage, atol=1e-6)
    np.testing.assert_allclose(trainer.tampo_policy.ema, policy.ema, atol=1e-6)
