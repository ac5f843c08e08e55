"""The extra-forward fallback: row chunks within a logits budget, multimodal inputs passed on."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import pytest
import torch

pytest.importorskip("trl")

from tampo_core.adapters.trl import extra_forward
from tampo_core.loglik import multi_temperature_loglik

TEMPS = (0.5, 1.0, 1.7)
ACCELERATOR = SimpleNamespace(autocast=contextlib.nullcontext)


class Recording(torch.nn.Module):
    """Wraps a causal LM and records the keyword arguments of every forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[dict[str, Any]] = []

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.model.get_output_embeddings()

    def forward(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        text = {
            k: kwargs[k] for k in ("input_ids", "attention_mask", "use_cache", "logits_to_keep")
        }
        return self.model(**text)


@pytest.fixture
def model(tiny_model_dir: Path) -> Recording:
    from transformers import AutoModelForCausalLM

    return Recording(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval())


def _batch(rows: int = 5, prompt: int = 3, completion: int = 4) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    completion_mask = torch.ones(rows, completion, dtype=torch.long)
    completion_mask[1, 2:] = 0
    tool_mask = torch.ones(rows, completion, dtype=torch.long)
    tool_mask[2, 1] = 0
    return {
        "prompt_ids": torch.randint(3, 11, (rows, prompt), generator=generator),
        "prompt_mask": torch.ones(rows, prompt, dtype=torch.long),
        "completion_ids": torch.randint(3, 11, (rows, completion), generator=generator),
        "completion_mask": completion_mask,
        "tool_mask": tool_mask,
    }


def _expected(model: Recording, batch: dict[str, Any]) -> Any:
    """The kernel on the real logits of one plain forward, under completion x tool mask."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    completion = batch["completion_ids"].shape[1]
    with torch.no_grad():
        logits = model.model(input_ids=input_ids).logits[:, -completion - 1 : -1]
    mask = batch["completion_mask"] * batch["tool_mask"]
    return multi_temperature_loglik(logits, batch["completion_ids"], TEMPS, mask=mask)


def test_rows_per_pass_stays_within_the_logits_budget() -> None:
    # the audit's case: 8 rows of 4,097 positions over a 151,936-word vocabulary
    assert extra_forward.rows_per_pass(8, 4097, 151_936) == 1
    assert extra_forward.rows_per_pass(8, 100, 1000) == 8
    rows = extra_forward.rows_per_pass(64, 1025, 32_000)
    row_bytes = 1025 * 32_000 * 4
    assert rows * row_bytes <= extra_forward.LOGITS_BUDGET_BYTES < (rows + 1) * row_bytes


def test_chunked_passes_equal_one_pass_under_the_tool_mask(model: Recording) -> None:
    batch = _batch()
    whole = extra_forward.loglik_by_extra_forward(model, ACCELERATOR, batch, TEMPS, max_rows=5)
    assert len(model.calls) == 1
    model.calls.clear()
    one_row = 5 * 11 * 4  # [1, C + 1, V] fp32 logits
    with patch.object(extra_forward, "LOGITS_BUDGET_BYTES", one_row):
        chunked = extra_forward.loglik_by_extra_forward(model, ACCELERATOR, batch, TEMPS, 5)
    assert [call["input_ids"].shape[0] for call in model.calls] == [1] * 5
    reference = _expected(model, batch)
    for result in (whole, chunked):
        assert result.num_tokens.tolist() == [4, 2, 3, 4, 4]
        torch.testing.assert_close(result.num_tokens, reference.num_tokens)
        torch.testing.assert_close(result.loglik, reference.loglik, rtol=1e-5, atol=1e-5)


def test_multimodal_inputs_reach_the_model(model: Recording) -> None:
    batch = _batch()
    rows, width = 5, 7
    batch["token_type_ids"] = torch.arange(rows * width).view(rows, width)
    extra_forward.loglik_by_extra_forward(model, ACCELERATOR, batch, TEMPS, max_rows=2)
    assert [call["input_ids"].shape[0] for call in model.calls] == [2, 2, 1]  # row inputs split
    torch.testing.assert_close(
        torch.cat([call["token_type_ids"] for call in model.calls]), batch["token_type_ids"]
    )
    assert all("pixel_values" not in call for call in model.calls)

    model.calls.clear()
    batch["pixel_values"] = torch.randn(3, 6)  # per image, not per row
    batch["image_grid_thw"] = torch.ones(3, 3, dtype=torch.long)
    extra_forward.loglik_by_extra_forward(model, ACCELERATOR, batch, TEMPS, max_rows=2)
    (call,) = model.calls  # image inputs are indexed per image: one pass over all rows
    assert call["input_ids"].shape[0] == rows
    assert call["pixel_values"] is batch["pixel_values"]
    assert call["image_grid_thw"] is batch["image_grid_thw"]
    torch.testing.assert_close(call["token_type_ids"], batch["token_type_ids"])
