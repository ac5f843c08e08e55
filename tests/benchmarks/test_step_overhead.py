"""benchmarks/step_overhead.py runs its three arms end to end on CPU (``--tiny``)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import step_overhead


def test_tiny_run_times_every_arm_and_updates_the_meta_policy(tmp_path: Path) -> None:
    report = step_overhead.main(["--tiny", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "step_overhead.json").read_text()) == json.loads(
        json.dumps(report)
    )
    assert report["command"].endswith("-m benchmarks.step_overhead --tiny --out " + str(tmp_path))
    rounds = report["rounds"]
    assert all(len(v) == rounds and min(v) > 0 for v in report["step_seconds"].values())
    # warm-up round + timed rounds + one instrumented step, for each of the two TAMPO arms
    assert report["meta_policy_updates"] == 2 * (rounds + 2)
    assert report["likelihood_paths_max_abs_gap"] < 1e-4  # final hidden state is post-norm
    for arm in ("tampo_logits", "tampo_hidden"):
        entry = report["arms"][arm]
        assert entry["tampo_work_seconds"] > 0 and len(entry["paired_overhead_quartiles"]) == 2
        assert isinstance(entry["meets_goal"], bool)
