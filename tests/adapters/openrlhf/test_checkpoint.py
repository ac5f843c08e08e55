"""TAMPO state in a real OpenRLHF/DeepSpeed checkpoint on CPU: ``DeepspeedStrategy.save_ckpt``
writes the ``client_states`` with a real DeepSpeed engine, ``load_ckpt`` reads them back, and the
restored meta-policy and adapter state continue exactly (``checkpoint_worker``)."""

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
def test_tampo_state_round_trips_through_a_real_deepspeed_checkpoint(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.adapters.openrlhf.checkpoint_worker", str(tmp_path), "29533"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "result.json").read_text())
    assert any(f.endswith("mp_rank_00_model_states.pt") for f in report["files"]), report
    assert report["load_path"] and report["found"]
    assert {"tampo_meta_policy", "tampo_adapter", "global_step"} <= set(report["sent_keys"])
    assert report["loaded_entries_equal"], "client_states come back as they were sent"
    assert report["meta_policy_equal"] and report["draws_equal"]
    assert report["num_updates"] == 2, "3 batches, one skipped"
    assert report["adapter_state"] == report["sent_adapter_state"]
    assert report["adapter_state"]["skipped_updates"]["non_finite_advantages"] == 1
    assert len(report["adapter_state"]["pending_temperatures"]) == 1
