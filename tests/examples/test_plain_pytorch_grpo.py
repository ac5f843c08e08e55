"""The single-file example runs end to end, with TAMPO and at a fixed temperature."""

from __future__ import annotations

import runpy
import sys

import pytest

from tests.paths import EXAMPLES

EXAMPLE = EXAMPLES / "plain_pytorch_grpo.py"


@pytest.mark.parametrize("extra", [[], ["--fixed-temperature", "1.0"]])
def test_example_trains_a_few_steps(
    extra: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--steps", "3", "--prompts", "4", *extra])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "step    2" in out and "greedy accuracy on all 10 prompts" in out
    assert ("pi(T)" in out) == (not extra)
