"""benchmarks/gpu_run_issue15.sh, the prepared GPU run, works end to end as a CPU smoke run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.paths import REPO


def test_tiny_run_writes_every_part(tmp_path: Path) -> None:
    env = {**os.environ, "TINY": "1", "OUT": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", "benchmarks/gpu_run_issue15.sh"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for part in ("kernel_gpu", "step_0.5b", "step_1.5b"):
        assert f"== {part}: exit 0" in (tmp_path / f"{part}.log").read_text()
    kernel = json.loads((tmp_path / "kernel_gpu/kernel_gpu.json").read_text())
    assert kernel["correctness"]["failures"] == []
    assert any(r["method"] == "compiled_chunks" and r["status"] == "ok" for r in kernel["results"])
    step = json.loads((tmp_path / "step_0.5b/step_overhead.json").read_text())
    assert set(step["arms"]) == {"tampo_logits", "tampo_hidden"}
