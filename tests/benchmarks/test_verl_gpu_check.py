"""``benchmarks/verl_gpu_check.py`` on CPU: the script the GPU run uses, end to end, on verl's
real worker and engine path (engine without FSDP wrapping, as in the adapter tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.paths import REPO

pytest.importorskip("verl", reason="verl is not installed (scripts/ci/install-verl.sh installs it)")


@pytest.mark.timeout(300)
def test_gpu_check_script_passes_on_cpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.verl_gpu_check",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    report = json.loads((tmp_path / "verl_gpu_check_cpu.json").read_text())
    assert result.returncode == 0, report["failures"]
    assert report["ok"] and len(report["checks"]) == 6
    assert {c["packed"] for c in report["checks"]} == {False, True}
    assert all(c["model_calls"] == c["micro_batches"] for c in report["checks"])
    assert all(c["max_err_all_temperatures"] < 1e-4 for c in report["checks"])
    assert report["overhead"]["hooked_seconds"] > 0
