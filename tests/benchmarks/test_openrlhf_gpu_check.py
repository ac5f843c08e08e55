"""``benchmarks/openrlhf_gpu_check.py`` on CPU: the script the GPU run uses, end to end, with the
real ``Actor`` plain and wrapped in a DeepSpeed engine (DeepSpeed's CPU accelerator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.paths import REPO

pytest.importorskip(
    "openrlhf", reason="openrlhf is not installed (scripts/ci/install-openrlhf.sh installs it)"
)
pytest.importorskip("deepspeed", reason="deepspeed is not installed (installed with openrlhf)")


@pytest.mark.timeout(300)
def test_gpu_check_script_passes_on_cpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29517"}
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "openrlhf_gpu_check.py"),
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    report = json.loads((tmp_path / "openrlhf_gpu_check.json").read_text())
    assert result.returncode == 0, report["failures"]
    assert report["ok"] and len(report["checks"]) == 6
    assert {c["packed"] for c in report["checks"]} == {False, True}
    assert all(c["model_calls"] == 1 for c in report["checks"])
    assert all(c["counts_match_action_mask"] for c in report["checks"])
    assert report["deepspeed"]["used"], report["deepspeed"]
    assert len(report["deepspeed"]["checks"]) == 6
