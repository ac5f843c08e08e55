"""The tiny local GRPO setup trains with plain TRL (the other TRL tests build on it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

trl = pytest.importorskip("trl")

from tests.adapters.trl.tiny_model import make_trainer  # noqa: E402


def test_tiny_setup_trains_with_plain_grpo(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(trl.GRPOTrainer, tiny_model_dir, tmp_path, {"max_steps": 2})
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert trainer.state.global_step == 2
    assert any(
        not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters(), strict=True)
    )
