"""Fixtures of the TRL adapter tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2 of ``tests.adapters.trl.tiny_model``, saved once per session."""
    pytest.importorskip("trl")
    from tests.adapters.trl.tiny_model import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny_qwen2"))
