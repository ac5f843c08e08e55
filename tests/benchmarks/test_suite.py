"""The benchmark suite end to end in its smoke configuration, and its resume logic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks import suite


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()  # the in-process runner pins one thread
    yield
    torch.set_num_threads(threads)


def test_smoke_suite_runs_reports_and_resumes(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["--smoke", "--workers", "1", "--out", str(out), "--cache-dir", str(cache)]
    paths = suite.main([*args, "--tasks", "countdown"])
    for key in ("csv", "json", "md", "learning_curves", "tampo_temperature_heatmap"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    runs = sorted((out / "runs").glob("*/*/seed*.json"))
    assert len(runs) == len(suite.PROFILES["smoke"]["methods"])
    tampo = json.loads((out / "runs/countdown/tampo/seed0.json").read_text())
    assert len(tampo["log"]["probs"]) == tampo["spec"]["steps"]
    assert set(tampo["final"]) == {"greedy_pass@1", "sampled_pass@1", "pass@4"}
    summary = json.loads(paths["json"].read_text())
    assert {r["method"] for r in summary["summary"]} == set(suite.PROFILES["smoke"]["methods"])
    assert "| tampo |" in paths["md"].read_text()

    stamps = {p: p.stat().st_mtime_ns for p in runs}
    suite.main([*args, "--tasks", "countdown"])
    assert {p: p.stat().st_mtime_ns for p in runs} == stamps  # nothing re-run

    record = json.loads(runs[0].read_text())
    record["key"] = "stale"
    runs[0].write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="different configuration"):
        suite.main([*args, "--tasks", "countdown"])
