"""benchmarks/kernel_contention.py runs end to end at a tiny size and writes its report."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from benchmarks import kernel_contention


def test_tiny_run_writes_csv_and_json_with_ratios_uptime_and_command(tmp_path: Path) -> None:
    argv = ["--vocab", "512", "--tokens", "16", "--repeats", "1", "--out", str(tmp_path)]
    kernel_contention.main(argv)
    report = json.loads((tmp_path / "kernel_contention.json").read_text())
    assert report["command"].endswith("-m benchmarks.kernel_contention " + " ".join(argv))
    assert set(report["uptime"]) == {"idle", "hog"}
    assert all("load average" in r["uptime_before"] for r in report["uptime"].values())
    assert set(report["ratios"]) == {"bf16", "fp32"}
    for entry in report["ratios"].values():
        assert entry["idle_naive_over_fused"] > 0 and entry["fused_hog_over_idle"] > 0
    with open(tmp_path / "kernel_contention.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["phase"], r["dtype"], r["method"]) for r in rows} == {
        (phase, dtype, method)
        for phase in ("idle", "hog")
        for dtype in ("bf16", "fp32")
        for method in ("fused", "fused_regions", "fused_workers", "naive_fp32_loop")
    }
    assert all(float(r["max_abs_err_vs_fp64"]) < 1e-4 for r in rows)


def test_the_hog_processes_are_stopped() -> None:
    with kernel_contention.cpu_hogs(2) as pids:
        assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize(
    ("threads", "hogs", "cores", "slowdown"),
    [(2, 1, 2, 1.5), (2, 0, 2, 1.0), (1, 1, 2, 1.0), (2, 2, 2, 2.0), (4, 4, 8, 1.0)],
)
def test_fair_share_slowdown(threads: int, hogs: int, cores: int, slowdown: float) -> None:
    assert kernel_contention.fair_share_slowdown(threads, hogs, cores) == pytest.approx(slowdown)
